"""TimedTradeStore: any TradeStore, with its calls timed and its inserts counted (accepted/duplicate)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.trade import Trade
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.ports import CandleQuery, TradeQuery, TradeStore


class TimedTradeStore:
    """A TradeStore that records each call's duration in wadm_store_query_seconds{operation}."""

    def __init__(self, store: TradeStore, metrics: Metrics) -> None:
        self._store = store
        self._seconds = metrics.store_seconds
        self._accepted = metrics.ingest_trades.labels("accepted")
        self._duplicate = metrics.ingest_trades.labels("duplicate")

    def prepare_batch(self, trades: Sequence[Trade]) -> None:
        self._store.prepare_batch(trades)

    async def insert_trades(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        start = time.perf_counter()
        try:
            new = await self._store.insert_trades(trades)
        finally:
            self._seconds.labels("insert_trades").observe(time.perf_counter() - start)
        self._accepted.inc(len(new))
        self._duplicate.inc(len(trades) - len(new))
        return new

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        start = time.perf_counter()
        try:
            return await self._store.candles(query)
        finally:
            self._seconds.labels("candles").observe(time.perf_counter() - start)

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        start = time.perf_counter()
        try:
            return await self._store.symbols(exchanges)
        finally:
            self._seconds.labels("symbols").observe(time.perf_counter() - start)

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        start = time.perf_counter()
        try:
            return await self._store.window_stats(symbols, exchanges, start_us, end_us)
        finally:
            self._seconds.labels("window_stats").observe(time.perf_counter() - start)

    async def trades(self, query: TradeQuery) -> list[Trade]:
        start = time.perf_counter()
        try:
            return await self._store.trades(query)
        finally:
            self._seconds.labels("trades").observe(time.perf_counter() - start)

    async def close(self) -> None:
        await self._store.close()
