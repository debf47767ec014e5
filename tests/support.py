"""Test support: store factories, seeded trade generation, the real Binance data."""

from __future__ import annotations

import csv
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tests.mongo_support import REAL_SERVER, mongodb_store, mongomock_store
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import TradeStore
from wadm_grpc.stores.duckdb import DuckDBTradeStore

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "binance"
UM_TRADES = DATA / "BTCUSDT-um-trades-2024-08-08T2354.csv"
UM_KLINES = DATA / "BTCUSDT-um-1m-2024-08-08T2354.csv"
# 2024-08-09T00:10:00Z: after every trade of the shared data.
AFTER_DATA_US = 1723162200 * 1_000_000
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class StoreKind:
    """How to make one kind of store for a test."""

    name: str
    open: Callable[[Path], AsyncIterator[TradeStore]]


@asynccontextmanager
async def _duckdb(path: Path) -> AsyncIterator[TradeStore]:
    store = DuckDBTradeStore(path / "trades.duckdb")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _mongomock(path: Path) -> AsyncIterator[TradeStore]:
    async with mongomock_store() as harness:
        yield harness.store


@asynccontextmanager
async def _mongodb(path: Path) -> AsyncIterator[TradeStore]:
    async with mongodb_store() as harness:
        yield harness.store


STORE_KINDS = [
    pytest.param(StoreKind("duckdb", _duckdb), id="duckdb"),
    pytest.param(StoreKind("mongomock", _mongomock), id="mongomock"),
    pytest.param(StoreKind("mongodb", _mongodb), id="mongodb", marks=REAL_SERVER),
]


def read_kline_rows() -> list[dict[str, str]]:
    """Binance's official 1m klines for the shared trades."""
    with UM_KLINES.open() as stream:
        return list(csv.DictReader(stream))


def binance_trades(path: Path = UM_TRADES, *, symbol: str = "BTCUSDT") -> list[Trade]:
    """The shared Binance trades as domain trades."""
    with path.open() as stream:
        return [
            Trade(
                exchange="binance",
                symbol=symbol,
                trade_id=row["id"],
                price=Decimal(row["price"]),
                quantity=Decimal(row["qty"]),
                side=Side.SELL if row["is_buyer_maker"] == "true" else Side.BUY,
                time_us=int(row["time"]) * 1000,
            )
            for row in csv.DictReader(stream)
        ]


def make_trades(
    *,
    seed: int,
    count: int,
    start_us: int,
    spacing_us: int,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    exchanges: tuple[str, ...] = ("binance",),
    price: str = "100.00",
) -> list[Trade]:
    """Seeded synthetic trades, time-ordered, ids increasing per (exchange, symbol)."""
    rng = random.Random(seed)
    base = Decimal(price)
    scale = base.as_tuple().exponent
    assert isinstance(scale, int)
    ids: dict[tuple[str, str], int] = {}
    trades = []
    for index in range(count):
        symbol = rng.choice(symbols)
        exchange = rng.choice(exchanges)
        key = (exchange, symbol)
        ids[key] = ids.get(key, 0) + 1
        move = Decimal(rng.randint(-50, 50)).scaleb(scale)
        trades.append(
            Trade(
                exchange=exchange,
                symbol=symbol,
                trade_id=str(ids[key]),
                price=max(base + move, Decimal(1).scaleb(scale)),
                quantity=Decimal(rng.randint(1, 5000)).scaleb(-3),
                side=rng.choice((Side.BUY, Side.SELL)),
                time_us=start_us + index * spacing_us,
            )
        )
    return trades
