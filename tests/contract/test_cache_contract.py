"""The Cache contract: memory, Redis and tiered (Redis + memory fallback) caches pass the same suite.

Plus cache-aside with single-flight over each, the LRU bound, and the fault test: Redis killed mid-run
costs no failed call, and the breaker returns to Redis after its probe (driven by a manual clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from wadm_grpc.cache.memory import MemoryCache
from wadm_grpc.cache.redis import RedisCache
from wadm_grpc.cache.tiered import TieredCache
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.ports import Cache
from wadm_grpc.redis_connection import redis_client
from wadm_grpc.services.cache_aside import CacheAside

if TYPE_CHECKING:
    from tests.redis_support import RedisServer


SECOND_US = 1_000_000
PROBE_SECONDS = 5.0
DEADLINE_SECONDS = 10.0


@dataclass
class CacheCase:
    """A cache under test, the tier that serves it while healthy, and a way to make time pass for a key."""

    cache: Cache
    serving_tier: str
    elapse: Callable[[str, float], Awaitable[None]]


async def _elapse_in_redis(raw: Redis, redis_key: str, seconds: float) -> None:
    """Let `seconds` pass for one key, using Redis' own expiry: shorten its remaining TTL (0 deletes it)."""
    remaining_ms = await raw.pttl(redis_key)
    assert remaining_ms > 0, f"{redis_key} has no TTL in Redis (PTTL {remaining_ms})"
    await raw.pexpire(redis_key, max(0, remaining_ms - round(seconds * 1000)))


@pytest.fixture(params=["memory", "redis", "tiered"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheCase]:
    """Each cache kind, empty, with a manual clock where time is ours to move."""
    clock = ManualClock(1_000 * SECOND_US)
    memory = MemoryCache(max_entries=100, clock=clock)

    async def advance(key: str, seconds: float) -> None:
        clock.advance(round(seconds * SECOND_US))

    if request.param == "memory":
        yield CacheCase(memory, "memory", advance)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    raw = redis_client(server.url)
    redis = RedisCache(redis_client(server.url))

    async def expire(key: str, seconds: float) -> None:
        await _elapse_in_redis(raw, redis.redis_key(key), seconds)
        await advance(key, seconds)

    cache: Cache = redis if request.param == "redis" else TieredCache(redis, memory, clock=clock)
    try:
        yield CacheCase(cache, "redis", expire)
    finally:
        await redis.aclose()
        await raw.aclose()


async def test_get_returns_exactly_what_was_set(case: CacheCase) -> None:
    value = bytes(range(256)) * 3

    assert await case.cache.get("k") is None
    await case.cache.set("k", value, ttl_seconds=30)
    await case.cache.set("other", b"x", ttl_seconds=30)

    assert await case.cache.get("k") == value
    assert await case.cache.get("other") == b"x"


async def test_set_replaces_and_delete_forgets(case: CacheCase) -> None:
    await case.cache.set("k", b"old", ttl_seconds=30)
    await case.cache.set("k", b"new", ttl_seconds=30)
    assert await case.cache.get("k") == b"new"

    await case.cache.delete("k")
    await case.cache.delete("never-set")

    assert await case.cache.get("k") is None


async def test_entries_expire_after_their_ttl(case: CacheCase) -> None:
    await case.cache.set("short", b"s", ttl_seconds=10)
    await case.cache.set("long", b"l", ttl_seconds=60)

    await case.elapse("short", 9)
    assert await case.cache.get("short") == b"s"
    await case.elapse("short", 1)

    assert await case.cache.get("short") is None
    assert await case.cache.get("long") == b"l"


async def test_a_non_positive_ttl_is_refused(case: CacheCase) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await case.cache.set("k", b"v", ttl_seconds=0)


async def test_stats_count_hits_and_misses_of_the_serving_tier(case: CacheCase) -> None:
    await case.cache.get("k")
    await case.cache.set("k", b"v", ttl_seconds=30)
    await case.cache.get("k")
    await case.cache.get("k")

    stats = case.cache.stats()

    tier = stats.tier(case.serving_tier)
    assert (tier.hits, tier.misses, tier.errors) == (2, 1, 0)
    assert (stats.fallbacks, stats.breaker_open) == (0, False)


async def test_concurrent_identical_misses_cause_one_load(case: CacheCase) -> None:
    aside = CacheAside(case.cache)
    release = asyncio.Event()
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        await release.wait()
        return b"candles"

    callers = [asyncio.create_task(aside.get_or_load("c", ttl_seconds=60, load=load)) for _ in range(25)]
    await _until(lambda: aside.stats().coalesced == 24)
    release.set()

    assert await asyncio.gather(*callers) == [b"candles"] * 25
    assert await aside.get_or_load("c", ttl_seconds=60, load=load) == b"candles"
    assert loads == 1
    assert (aside.stats().loads, aside.stats().coalesced, aside.in_flight) == (1, 24, 0)
    assert await case.cache.get("c") == b"candles"


async def test_a_failed_load_reaches_every_waiter_and_stores_nothing(case: CacheCase) -> None:
    aside = CacheAside(case.cache)
    release = asyncio.Event()

    async def failing() -> bytes:
        await release.wait()
        raise LookupError("store down")

    callers = [asyncio.create_task(aside.get_or_load("c", ttl_seconds=60, load=failing)) for _ in range(5)]
    await _until(lambda: aside.stats().coalesced == 4)
    release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert [type(o) for o in outcomes] == [LookupError] * 5
    assert aside.in_flight == 0
    assert await case.cache.get("c") is None

    async def ok() -> bytes:
        return b"fine"

    assert await aside.get_or_load("c", ttl_seconds=60, load=ok) == b"fine"


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(case: CacheCase) -> None:
    aside = CacheAside(case.cache)
    release = asyncio.Event()

    async def load() -> bytes:
        await release.wait()
        return b"v"

    first = asyncio.create_task(aside.get_or_load("c", ttl_seconds=60, load=load))
    second = asyncio.create_task(aside.get_or_load("c", ttl_seconds=60, load=load))
    await _until(lambda: aside.stats().coalesced == 1)
    first.cancel()
    release.set()

    assert await second == b"v"
    assert first.cancelled()
    assert aside.in_flight == 0


async def test_an_invalidation_during_a_load_is_not_undone_by_it(case: CacheCase) -> None:
    aside = CacheAside(case.cache)
    release = asyncio.Event()

    async def stale() -> bytes:
        await release.wait()
        return b"before ingest"

    async def fresh() -> bytes:
        return b"after ingest"

    slow = asyncio.create_task(aside.get_or_load("c", ttl_seconds=60, load=stale))
    await _until(lambda: aside.in_flight == 1)
    await aside.invalidate("c")
    release.set()

    assert await slow == b"before ingest"
    assert await case.cache.get("c") is None
    assert await aside.get_or_load("c", ttl_seconds=60, load=fresh) == b"after ingest"


async def test_memory_cache_evicts_the_least_recently_used_beyond_its_bound() -> None:
    cache = MemoryCache(max_entries=3, clock=ManualClock(0))
    for key in "abc":
        await cache.set(key, key.encode(), ttl_seconds=60)
    await cache.get("a")  # now b is the least recently used

    await cache.set("d", b"d", ttl_seconds=60)

    assert [await cache.get(k) for k in "abcd"] == [b"a", None, b"c", b"d"]
    assert len(cache) == 3
    assert cache.stats().tier("memory").evictions == 1


async def test_redis_killed_mid_run_costs_no_failed_call_and_redis_is_used_again(redis_server: RedisServer) -> None:
    clock = ManualClock(1_000 * SECOND_US)
    redis = RedisCache(redis_client(redis_server.url))
    memory = MemoryCache(clock=clock)
    tiered = TieredCache(redis, memory, probe_interval_seconds=PROBE_SECONDS, clock=clock)
    aside = CacheAside(tiered)
    raw = redis_client(redis_server.url)
    keys = [f"candles:{n}" for n in range(10)]
    calls = 0
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        nonlocal calls
        while not stop.is_set():
            key = keys[(calls + worker) % len(keys)]
            try:
                value = await aside.get_or_load(key, ttl_seconds=60, load=lambda k=key: _value_of(k))
                assert value == key.encode()
            except BaseException as error:  # any failed call fails the test
                failures.append(error)
                raise
            calls += 1
            await asyncio.sleep(0)  # yield to the other clients and the test (not a wait)

    workers = [asyncio.create_task(client(n)) for n in range(8)]
    try:
        await _until(lambda: calls >= 200)
        assert redis.tier_stats().hits > 0

        await asyncio.to_thread(redis_server.kill)
        await _until(lambda: tiered.stats().breaker_open)
        mark = calls
        await _until(lambda: calls >= mark + 200)  # calls already waiting on Redis when it opened have failed over
        errors_when_opened = redis.tier_stats().errors
        mark = calls
        await _until(lambda: calls >= mark + 500)
        assert redis.tier_stats().errors == errors_when_opened, "an open breaker must not call Redis"
        assert errors_when_opened >= 1
        assert tiered.stats().fallbacks > 0

        clock.advance(round(PROBE_SECONDS * SECOND_US))  # one probe, Redis still down
        await _until(lambda: redis.tier_stats().errors == errors_when_opened + 1)
        assert tiered.stats().breaker_open

        await asyncio.to_thread(redis_server.restart)
        before = redis.tier_stats()
        mark = calls
        await _until(lambda: calls >= mark + 200)
        assert redis.tier_stats() == before, "Redis is not called again before the next probe"

        clock.advance(round(PROBE_SECONDS * SECOND_US))
        await _until(lambda: not tiered.stats().breaker_open)
        await _until(lambda: redis.tier_stats().hits > before.hits + 100)
        assert await raw.exists(*(redis.redis_key(k) for k in keys)) == len(keys)
        assert len(memory) == 0, "what memory held during the outage is dropped when Redis returns"
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await tiered.aclose()
        await raw.aclose()
    assert failures == []
    assert calls > 1_100


async def test_a_delete_made_while_the_breaker_is_open_is_replayed_before_redis_is_used_again(
    redis_server: RedisServer,
) -> None:
    clock = ManualClock(0)
    redis = RedisCache(redis_client(redis_server.url, timeout_seconds=0.1))
    tiered = TieredCache(
        redis, MemoryCache(clock=clock), failure_threshold=1, probe_interval_seconds=PROBE_SECONDS, clock=clock
    )
    try:
        await tiered.set("stats:BTCUSDT", b"last price 100", ttl_seconds=60)
        redis_server.stall()
        try:
            assert await tiered.get("candles:BTCUSDT") is None  # times out: the breaker opens
        finally:
            redis_server.resume()
        assert tiered.stats().breaker_open
        await tiered.delete("stats:BTCUSDT")  # Redis is not called: the delete is remembered
        assert await tiered.get("stats:BTCUSDT") is None  # from memory
        clock.advance(round(PROBE_SECONDS * SECOND_US))

        assert await tiered.get("stats:BTCUSDT") is None  # from Redis again, without the stale value
        assert not tiered.stats().breaker_open
        assert redis.tier_stats().misses == 1
    finally:
        await tiered.aclose()


async def _value_of(key: str) -> bytes:
    return key.encode()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait, yielding to the loop, until `condition` holds; fail after DEADLINE_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)
