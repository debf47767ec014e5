"""The embedded DuckDB trade store."""

from wadm_grpc.stores.duckdb.store import DuckDBTradeStore

__all__ = ["DuckDBTradeStore"]
