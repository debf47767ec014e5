"""The read cache behind the API: single flight, TTLs, late-trade invalidation, statistics."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Running
from tests.support import MINUTE_US, make_trades
from wadm_client import RawWadmClient
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.cache.memory import MemoryCache
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.services.read_cache import CacheTtls, ReadCache
from wadm_grpc.stores.duckdb import DuckDBTradeStore

NOW = 1_723_161_600_000_000  # 2024-08-09T00:00:00Z
TTLS = CacheTtls(candles_seconds=60, closed_candles_seconds=3600, stats_seconds=30, orderbook_seconds=10)


@pytest.fixture
async def cached(tmp_path: Path) -> AsyncIterator[tuple[Running, ManualClock, dict[str, int]]]:
    """A server whose memory cache runs on the test's clock, and counters of store reads by method."""
    clock = ManualClock(NOW)
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    reads: dict[str, int] = {}
    for name in ("candles", "window_stats", "trades"):
        original = getattr(store, name)

        async def counted(*args: Any, _original: Any = original, _name: str = name) -> Any:
            reads[_name] = reads.get(_name, 0) + 1
            return await _original(*args)

        setattr(store, name, counted)
    bus = InProcessTradeBus()
    cache = ReadCache(MemoryCache(clock=clock), clock, TTLS)
    app = await bootstrap(Settings(page_token_key=b"k"), store=store, bus=bus, clock=clock, cache=cache)
    server = await start_grpc(app, "127.0.0.1:0")
    client = RawWadmClient.connect(f"127.0.0.1:{server.port}")
    try:
        yield Running(app=app, server=server, client=client, bus=bus), clock, reads
    finally:
        await client.close()
        await server.stop(0)
        await store.close()


async def test_concurrent_identical_misses_read_the_store_once(
    cached: tuple[Running, ManualClock, dict[str, int]],
) -> None:
    served, _, reads = cached
    await served.app.ingest.store_trades(
        make_trades(seed=61, count=100, start_us=NOW - 100_000_000, spacing_us=1_000_000)
    )
    aside = served.app.cache._aside
    assert aside is not None
    arrived, everyone = 0, threading.Event()  # set on the server's loop, awaited on the loads thread's
    original_get_or_load = aside.get_or_load

    async def arrive(key: str, **kwargs: Any) -> bytes:
        nonlocal arrived
        arrived += 1
        if arrived == 20:
            everyone.set()
        return await original_get_or_load(key, **kwargs)

    aside.get_or_load = arrive  # type: ignore[method-assign]
    original_candles = served.app.store.candles

    async def slow_candles(*args: Any) -> Any:
        assert await asyncio.to_thread(everyone.wait, 30)  # hold the one store read until all 20 callers missed
        return await original_candles(*args)

    served.app.store.candles = slow_candles  # type: ignore[method-assign]

    answers = await asyncio.gather(*(served.client.get_candles("BTCUSDT", "1m", limit=50) for _ in range(20)))

    assert reads["candles"] == 1
    stats = served.app.cache.stats()
    assert stats is not None
    assert (stats.loads, stats.coalesced) == (1, 19)
    assert all(answer == answers[0] for answer in answers)
    assert len(answers[0].candles) == 2


async def test_answers_are_served_until_their_ttl_then_reloaded(
    cached: tuple[Running, ManualClock, dict[str, int]],
) -> None:
    served, clock, reads = cached
    await served.app.ingest.store_trades(
        make_trades(seed=62, count=100, start_us=NOW - 100_000_000, spacing_us=1_000_000)
    )
    stats_request = md.GetMarketStatsRequest(symbol="BTCUSDT")

    first = await served.client.market.GetMarketStats(stats_request)
    # A trade in the minute in progress: not late, so the cached stats may lag it for at most their TTL.
    fresh = dataclasses.replace(make_trades(seed=63, count=1, start_us=NOW, spacing_us=1)[0], trade_id="fresh")
    await served.app.ingest.store_trades([fresh])
    clock.advance(29_000_000)
    within_ttl = await served.client.market.GetMarketStats(stats_request)
    clock.advance(2_000_000)
    after_ttl = await served.client.market.GetMarketStats(stats_request)

    assert within_ttl == first
    assert after_ttl.stats.trade_count == first.stats.trade_count + 1
    assert reads["window_stats"] == 2
    await served.client.get_candles("btcusdt", "1m")
    await served.client.get_candles("BTCUSDT", "1m")  # the same question, normalised: a hit
    assert reads["candles"] == 1


async def test_a_late_trade_invalidates_cached_closed_candles_at_once(
    cached: tuple[Running, ManualClock, dict[str, int]],
) -> None:
    served, _, reads = cached
    trades = make_trades(seed=64, count=60, start_us=NOW - 60 * MINUTE_US, spacing_us=MINUTE_US)
    await served.app.ingest.store_trades(trades)
    closed_range = {"start": NOW - 60 * MINUTE_US, "end": NOW - 30 * MINUTE_US}

    before = await served.client.get_candles("BTCUSDT", "1m", **closed_range)  # type: ignore[arg-type]
    invalidations = served.app.cache.invalidations
    again = await served.client.get_candles("BTCUSDT", "1m", **closed_range)  # type: ignore[arg-type]
    late = dataclasses.replace(trades[10], trade_id="late", price=trades[10].price * 2)
    await served.app.ingest.store_trades([late])
    after = await served.client.get_candles("BTCUSDT", "1m", **closed_range)  # type: ignore[arg-type]

    assert again == before
    assert reads["candles"] == 2
    assert after.candles[10].high == str(late.price)
    assert after.candles[10].trade_count == before.candles[10].trade_count + 1
    assert served.app.cache.invalidations == invalidations + 1


async def test_cache_statistics_are_exposed(cached: tuple[Running, ManualClock, dict[str, int]]) -> None:
    served, _, _ = cached
    await served.app.ingest.store_trades(
        make_trades(seed=65, count=10, start_us=NOW - 10_000_000, spacing_us=1_000_000)
    )
    for _ in range(3):
        await served.client.get_candles("BTCUSDT", "1h")

    stats = await admin_grpc.AdminServiceStub(served.client.channel).GetCacheStats(admin_pb.GetCacheStatsRequest())

    assert stats.enabled
    assert stats.loads == 1
    memory = next(tier for tier in stats.tiers if tier.name == "memory")
    assert memory.hits >= 2
    assert stats.process_id > 0
