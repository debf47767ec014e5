"""The demo feed: seeded and deterministic, several symbols on two exchanges, bursty, resumable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.support import MINUTE_US
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.feeds.demo import DemoFeed
from wadm_grpc.services.ingest import IngestService
from wadm_grpc.services.read_cache import ReadCache
from wadm_grpc.stores.duckdb import DuckDBTradeStore

NOW = 1_764_000_000_000_000


async def generate(path: Path, seed: int) -> tuple[DemoFeed, DuckDBTradeStore, ManualClock, int]:
    store = DuckDBTradeStore(path)
    clock = ManualClock(NOW)
    ingest = IngestService(store, InProcessTradeBus(), ReadCache(None, clock), clock=clock, max_future_seconds=60)
    feed = DemoFeed(ingest=ingest, store=store, clock=clock, seed=seed, backfill_seconds=1800)
    await feed.resume()
    return feed, store, clock, await feed.step()


async def test_same_seed_same_trades(tmp_path: Path) -> None:
    feed_a, store_a, _, _ = await generate(tmp_path / "a.duckdb", seed=7)
    feed_b, store_b, _, _ = await generate(tmp_path / "b.duckdb", seed=7)
    try:
        assert await store_a.symbols(()) == await store_b.symbols(())
        assert feed_a.generate(NOW + MINUTE_US) == feed_b.generate(NOW + MINUTE_US)
    finally:
        await store_a.close()
        await store_b.close()


async def test_realistic_shape(tmp_path: Path) -> None:
    feed, store, _, accepted = await generate(tmp_path / "demo.duckdb", seed=7)
    try:
        summaries = await store.symbols(())
        assert [s.symbol for s in summaries] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
        assert all(s.exchanges == ("binance", "bybit") for s in summaries)
        assert accepted == sum(s.trade_count for s in summaries) > 10_000
        trades = feed.generate(NOW + 30 * MINUTE_US)
        per_second = Counter(t.time_us // 1_000_000 for t in trades if t.symbol == "BTCUSDT")
        counts = [per_second.get(second, 0) for second in range(NOW // 1_000_000, NOW // 1_000_000 + 1800)]
        mean = sum(counts) / len(counts)
        variance = sum((c - mean) ** 2 for c in counts) / len(counts)
        assert variance > 2 * mean  # bursty: over-dispersed compared with a plain Poisson process
        binance = [t.price for t in trades if t.symbol == "BTCUSDT" and t.exchange == "binance"]
        bybit = [t.price for t in trades if t.symbol == "BTCUSDT" and t.exchange == "bybit"]
        assert abs(binance[-1] - bybit[-1]) / binance[-1] < 0.005  # the exchanges quote the same market
    finally:
        await store.close()


async def test_resumes_after_a_restart_without_duplicates(tmp_path: Path) -> None:
    _, store, _, _ = await generate(tmp_path / "demo.duckdb", seed=7)
    before = {s.symbol: s.trade_count for s in await store.symbols(())}
    await store.close()

    again = DuckDBTradeStore(tmp_path / "demo.duckdb")
    ingest = IngestService(
        again, InProcessTradeBus(), ReadCache(None, ManualClock(NOW)), clock=ManualClock(NOW), max_future_seconds=60
    )
    resumed = DemoFeed(ingest=ingest, store=again, clock=ManualClock(NOW + MINUTE_US), seed=8)
    try:
        await resumed.resume()
        trades = resumed.generate(NOW + MINUTE_US)
        result = await ingest.store_trades(trades)
        after = {s.symbol: s.trade_count for s in await again.symbols(())}
        assert result.accepted == len(trades) > 0  # ids and times continue after the stored ones
        assert min(t.time_us for t in trades) > NOW - MINUTE_US
        assert sum(after.values()) == sum(before.values()) + len(trades)
    finally:
        await again.close()
