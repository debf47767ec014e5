"""A late trade's invalidation made while Redis is unreachable is not undone when Redis comes back.

Redis here is a test double with RedisCache's methods that keeps its data while "unreachable" (a network
partition: writes never arrive). A real redis-server cannot play that part deterministically: stopped
with SIGSTOP it still receives the writes queued in its socket, and killed it loses its data.
"""

from __future__ import annotations

from tests.support import MINUTE_US, make_trades
from wadm_grpc.cache.memory import MemoryCache
from wadm_grpc.cache.tiered import TieredCache
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.ports import TierStats
from wadm_grpc.services.read_cache import ReadCache

NOW = 1_723_161_600_000_000


class PartitionedRedis:
    """Stands in for RedisCache: a dict that refuses every call while `reachable` is False."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.reachable = True

    def _check(self) -> None:
        if not self.reachable:
            raise UnavailableError("redis unreachable")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return self.data.get(key)

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        self._check()
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self._check()
        self.data.pop(key, None)

    async def ping(self) -> None:
        self._check()

    def tier_stats(self) -> TierStats:
        return TierStats("redis")

    async def aclose(self) -> None:
        return None


async def test_an_invalidation_during_an_outage_survives_redis_coming_back() -> None:
    redis, breaker_clock = PartitionedRedis(), ManualClock(0)
    tiered = TieredCache(redis, MemoryCache(), failure_threshold=1, probe_interval_seconds=1, clock=breaker_clock)  # type: ignore[arg-type]
    cache = ReadCache(tiered, ManualClock(NOW))
    answer = [b"before the late trade"]

    async def load() -> bytes:
        return answer[0]

    async def ask() -> bytes:
        return await cache.answer("candles", "BTCUSDT", ["a closed range"], 3600, load)

    assert await ask() == b"before the late trade"  # cached in Redis
    redis.reachable = False
    answer[0] = b"with the late trade"
    await cache.trades_stored(make_trades(seed=66, count=1, start_us=NOW - 5 * MINUTE_US, spacing_us=1))
    assert await ask() == b"with the late trade"  # from memory during the outage

    redis.reachable = True
    breaker_clock.advance(2_000_000)  # past the probe interval: Redis is used again

    assert await ask() == b"with the late trade"
    assert not tiered.stats().breaker_open
