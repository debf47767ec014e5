"""LiveCandleService: a client that stops reading gets the latest state when it reads again, never a backlog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import make_trades
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.errors import ResourceExhaustedError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.services.ingest import IngestService
from wadm_grpc.services.live_candles import CandleMessage, LiveCandleService, LiveEvent
from wadm_grpc.services.read_cache import ReadCache
from wadm_grpc.stores.duckdb import DuckDBTradeStore

T0 = 1_723_161_600_000_000
BATCHES = 20


@dataclass
class Parts:
    store: DuckDBTradeStore
    bus: InProcessTradeBus
    ingest: IngestService
    clock: ManualClock


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    store = DuckDBTradeStore(tmp_path / "trades.duckdb")
    bus = InProcessTradeBus()
    clock = ManualClock(T0 + 59_000_000)  # inside the bucket for the whole test
    ingest = IngestService(store, bus, ReadCache(None, clock), clock=clock, max_future_seconds=60)
    try:
        yield Parts(store, bus, ingest, clock)
    finally:
        await bus.close()
        await store.close()


async def test_a_client_that_stops_reading_gets_the_latest_state_not_a_backlog(
    parts: Parts,
) -> None:
    service, ingest = LiveCandleService(parts.store, parts.bus, parts.clock, stall_seconds=60), parts.ingest
    request = service.check("BTCUSDT", [], Timeframe.M1, 0.1, None)
    trades = make_trades(seed=5, count=BATCHES * 3, start_us=T0, spacing_us=100_000)
    slow: list[int] = []
    fast: list[int] = []
    reading = asyncio.Event()
    caught_up = asyncio.Event()
    slow_got = [asyncio.Event(), asyncio.Event()]
    fast_got_first = asyncio.Event()

    async def slow_client(event: LiveEvent) -> None:  # takes one message, then stops reading for a while
        if isinstance(event, CandleMessage):
            slow.append(event.candle.ohlcv.trade_count)
            slow_got[min(len(slow), 2) - 1].set()
            if len(slow) == 1:
                await reading.wait()

    async def fast_client(event: LiveEvent) -> None:
        if isinstance(event, CandleMessage):
            fast.append(event.candle.ohlcv.trade_count)
            fast_got_first.set()
            if event.candle.ohlcv.trade_count == len(trades):
                caught_up.set()

    streams = [
        asyncio.ensure_future(service.stream_candles(request, slow_client)),
        asyncio.ensure_future(service.stream_candles(request, fast_client)),
    ]
    try:
        for start in range(0, len(trades), 3):
            await ingest.store_trades(trades[start : start + 3])
            if start == 0:
                async with asyncio.timeout(30):  # both hold the first state before more arrives
                    await slow_got[0].wait()
                    await fast_got_first.wait()
        async with asyncio.timeout(30):
            await caught_up.wait()
        reading.set()  # the slow client reads again
        async with asyncio.timeout(30):
            await slow_got[1].wait()
        assert slow == [3, len(trades)]  # the latest state straight away, nothing in between
        assert fast[-1] == len(trades)
    finally:
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    assert service.feeds == 0  # the last stream gone, the computation stopped


async def test_a_client_whose_transport_takes_nothing_is_cut_off(
    parts: Parts,
) -> None:
    service, ingest = LiveCandleService(parts.store, parts.bus, parts.clock, stall_seconds=0.2), parts.ingest
    stuck = asyncio.Event()

    async def never_takes(event: LiveEvent) -> None:
        await stuck.wait()

    stream = asyncio.ensure_future(
        service.stream_candles(service.check("BTCUSDT", [], Timeframe.M1, 0.1, 1), never_takes)
    )
    await ingest.store_trades(make_trades(seed=1, count=3, start_us=T0, spacing_us=1000))
    with pytest.raises(ResourceExhaustedError):
        async with asyncio.timeout(30):
            await stream
    assert service.feeds == 0
