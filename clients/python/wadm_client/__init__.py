"""Typed Python client of WADM gRPC: `WadmClient` (asyncio) and `WadmSyncClient` (blocking), same methods and names."""

from wadm_client.client import WadmClient
from wadm_client.errors import (
    DeadlineExceededError,
    ErrorDetails,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ResumeExpiredError,
    UnauthenticatedError,
    UnavailableError,
    WadmError,
    error_details,
)
from wadm_client.models import Candle, Candles, MarketStats, Orderbook, OrderbookLevel, PublishResult, SymbolInfo, Trade
from wadm_client.options import ConnectOptions
from wadm_client.raw import RawWadmClient
from wadm_client.reconnect import Backoff
from wadm_client.requests import duration, make_trade, timestamp
from wadm_client.sync import WadmSyncClient

__all__ = [
    "Backoff",
    "Candle",
    "Candles",
    "ConnectOptions",
    "DeadlineExceededError",
    "ErrorDetails",
    "InternalError",
    "InvalidArgumentError",
    "MarketStats",
    "NotFoundError",
    "Orderbook",
    "OrderbookLevel",
    "PermissionDeniedError",
    "PublishResult",
    "RawWadmClient",
    "ResourceExhaustedError",
    "ResumeExpiredError",
    "SymbolInfo",
    "Trade",
    "UnauthenticatedError",
    "UnavailableError",
    "WadmClient",
    "WadmError",
    "WadmSyncClient",
    "duration",
    "error_details",
    "make_trade",
    "timestamp",
]
