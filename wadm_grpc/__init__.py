"""WADM gRPC: market data (candles, stats, simulated order books, trades) served over gRPC."""

__version__ = "0.1.0"
