"""Adapters of the TradeBus port: in-process fan-out (default) and Redis (several processes)."""
