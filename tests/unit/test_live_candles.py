"""LiveCandleService: a client that stops reading gets the latest state when it reads again, never a backlog."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_trades
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.domain.aggregate import Aggregate
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.errors import ResourceExhaustedError, UnavailableError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import CandleQuery
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


class FailingBucket:
    """The store, except that the single-bucket query of `bucket` fails while `failing` is set."""

    def __init__(self, store: DuckDBTradeStore, bucket: int) -> None:
        self._store = store
        self.bucket = bucket
        self.failing = False
        self.failed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        if self.failing and query.start_us == query.end_us == self.bucket:
            self.failed.set()
            raise UnavailableError("store down for this test")
        return await self._store.candles(query)


async def test_a_resume_while_a_correction_is_pending_still_gets_the_later_finals(parts: Parts) -> None:
    """A late trade's correction of bucket 0 waits (its query fails) after the finals of buckets 0 and 1
    went out; a stream resuming from before bucket 0 gets both finals from the store, once each, not
    only the correction."""
    minute = Timeframe.M1.micros
    store = FailingBucket(parts.store, T0)
    service, ingest, clock = LiveCandleService(store, parts.bus, parts.clock), parts.ingest, parts.clock  # type: ignore[arg-type]
    clock.set(T0)
    request = service.check("BTCUSDT", [], Timeframe.M1, 0.1, None)
    kept: list[CandleMessage] = []
    got_kept = asyncio.Event()

    async def keeper(event: LiveEvent) -> None:
        if isinstance(event, CandleMessage):
            kept.append(event)
            got_kept.set()

    async def kept_until(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(30):
            while not done():
                got_kept.clear()
                await got_kept.wait()

    first = asyncio.ensure_future(service.stream_candles(request, keeper))
    resumed: asyncio.Future[None] | None = None
    try:
        trades = make_trades(seed=1, count=6, start_us=T0 + 1_000_000, spacing_us=minute // 3)  # 3 in bucket 0, 3 in 1
        late, trades = [trades[0]], trades[1:]
        clock.set(T0 + 1_000_000)
        await ingest.store_trades(trades[:2])  # bucket 0
        await kept_until(lambda: bool(kept))
        token = kept[0].resume_token  # "nothing delivered yet"
        clock.set(T0 + minute + 30_000_000)
        await ingest.store_trades(trades[2:])  # bucket 1
        clock.set(T0 + 2 * minute + 2_000_000)  # both closed
        await kept_until(lambda: [m.candle.open_time_us for m in kept if m.candle.closed] == [T0, T0 + minute])
        store.failing = True
        await ingest.store_trades(late)  # a late trade for bucket 0: its correction cannot be computed yet
        async with asyncio.timeout(30):
            await store.failed.wait()

        got: list[CandleMessage] = []
        got_more = asyncio.Event()

        async def client(event: LiveEvent) -> None:
            if isinstance(event, CandleMessage):
                got.append(event)
                got_more.set()

        resumed = asyncio.ensure_future(
            service.stream_candles(service.check("BTCUSDT", [], Timeframe.M1, 0.1, None, resume_token=token), client)
        )
        async with asyncio.timeout(30):
            while len(got) < 2:
                got_more.clear()
                await got_more.wait()
        store.failing = False  # the correction goes out now: equal to what was replayed, so not again
        await kept_until(lambda: sum(m.candle.closed for m in kept) == 3)
        (fresh,) = make_trades(seed=2, count=1, start_us=T0 + 2 * minute + 3_000_000, spacing_us=1)
        await ingest.store_trades([dataclasses.replace(fresh, trade_id="open-bucket")])
        async with asyncio.timeout(30):
            while not got or got[-1].candle.closed:
                got_more.clear()
                await got_more.wait()
    finally:
        for stream in (first, resumed):
            if stream is not None:
                stream.cancel()
        await asyncio.gather(first, *(s for s in (resumed,) if s is not None), return_exceptions=True)

    finals = [m.candle for m in got if m.candle.closed]
    assert [c.open_time_us for c in finals] == [T0, T0 + minute]
    assert finals[0].ohlcv.trade_count == 3  # with the late trade
    correction = [m.candle for m in kept if m.candle.closed][-1]  # the one the other stream had
    assert correction.open_time_us == T0 and correction.ohlcv == finals[0].ohlcv
