"""Adapters of the TradeStore port: DuckDB (embedded default) and MongoDB."""
