"""TieredCache: Redis first, this process's memory when Redis fails; a circuit breaker decides which."""

from __future__ import annotations

import logging

from wadm_grpc.cache.memory import MemoryCache, MonotonicClock
from wadm_grpc.cache.redis import RedisCache
from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.ports import CacheStats, Clock

log = logging.getLogger(__name__)

DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_PROBE_INTERVAL_SECONDS = 5.0
DEFAULT_MAX_PENDING_DELETES = 10_000


class CircuitBreaker:
    """Closed: calls go through. After `failure_threshold` consecutive failures it opens: calls are skipped
    until `probe_interval_seconds` have passed, then ONE caller probes; success closes it, failure waits again.
    """

    def __init__(self, *, failure_threshold: int, probe_interval_seconds: float, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        self._threshold = failure_threshold
        self._interval_us = round(probe_interval_seconds * 1_000_000)
        self._clock = clock
        self._failures = 0
        self._open = False
        self._probing = False
        self._next_probe_us = 0

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped."""
        return self._open

    def record_success(self) -> None:
        """A call succeeded: the failure streak ends (an open breaker only closes through a probe)."""
        if not self._open:
            self._failures = 0

    def record_failure(self) -> bool:
        """A call failed; True if this failure opened the breaker."""
        if self._open:
            return False
        self._failures += 1
        if self._failures < self._threshold:
            return False
        self._open = True
        self._next_probe_us = self._clock.now_us() + self._interval_us
        return True

    def try_start_probe(self) -> bool:
        """True if the caller should probe now (open, interval elapsed, nobody else probing)."""
        if not self._open or self._probing or self._clock.now_us() < self._next_probe_us:
            return False
        self._probing = True
        return True

    def end_probe(self, *, healthy: bool) -> None:
        """Close after a successful probe, or wait another interval."""
        self._probing = False
        if healthy:
            self._open = False
            self._failures = 0
        else:
            self._next_probe_us = self._clock.now_us() + self._interval_us


class TieredCache:
    """Cache port that never raises for Redis' sake: Redis is the primary; while it fails, memory serves.

    Deletes always reach memory; those Redis missed are replayed before Redis is used again, so a value
    invalidated during an outage does not come back with Redis. Memory is emptied when Redis returns:
    entries written during the outage would not see other processes' later invalidations.
    """

    def __init__(
        self,
        primary: RedisCache,
        fallback: MemoryCache,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        probe_interval_seconds: float = DEFAULT_PROBE_INTERVAL_SECONDS,
        max_pending_deletes: int = DEFAULT_MAX_PENDING_DELETES,
        clock: Clock | None = None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            probe_interval_seconds=probe_interval_seconds,
            clock=clock if clock is not None else MonotonicClock(),
        )
        self._pending_deletes: dict[str, None] = {}
        self._max_pending_deletes = max_pending_deletes
        self._deletes_lost = 0
        self._fallbacks = 0

    async def get(self, key: str) -> bytes | None:
        """From Redis, or from memory while Redis is failing."""
        if await self._primary_usable():
            try:
                value = await self._primary.get(key)
            except UnavailableError as error:
                self._primary_failed(error)
            else:
                self._breaker.record_success()
                return value
        self._fallbacks += 1
        return await self._fallback.get(key)

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Into Redis, or into memory while Redis is failing."""
        if await self._primary_usable():
            try:
                await self._primary.set(key, value, ttl_seconds=ttl_seconds)
            except UnavailableError as error:
                self._primary_failed(error)
            else:
                self._breaker.record_success()
                return
        self._fallbacks += 1
        await self._fallback.set(key, value, ttl_seconds=ttl_seconds)

    async def delete(self, key: str) -> None:
        """From memory always, and from Redis now or, if it is failing, before it is used again."""
        await self._fallback.delete(key)
        if await self._primary_usable():
            try:
                await self._primary.delete(key)
            except UnavailableError as error:
                self._primary_failed(error)
            else:
                self._breaker.record_success()
                return
        self._fallbacks += 1
        self._remember_delete(key)

    def stats(self) -> CacheStats:
        """Both tiers' counters, fallbacks, and whether the breaker is open."""
        return CacheStats(
            tiers=(self._primary.tier_stats(), self._fallback.tier_stats()),
            fallbacks=self._fallbacks,
            breaker_open=self._breaker.is_open,
        )

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self._primary.aclose()

    async def _primary_usable(self) -> bool:
        if not self._breaker.is_open:
            return True
        if not self._breaker.try_start_probe():
            return False
        healthy = False
        try:
            await self._primary.ping()
            await self._replay_deletes()
            healthy = True
        except UnavailableError as error:
            log.info("redis cache still unavailable", extra={"error": str(error)})
        finally:
            self._breaker.end_probe(healthy=healthy)
        if healthy:
            self._fallback.clear()
            log.warning("redis cache is back; leaving the memory fallback", extra={"deletes_lost": self._deletes_lost})
            self._deletes_lost = 0
        return healthy

    def _primary_failed(self, error: UnavailableError) -> None:
        if self._breaker.record_failure():
            log.warning("redis cache failing; serving from memory", extra={"error": str(error)})

    def _remember_delete(self, key: str) -> None:
        self._pending_deletes.pop(key, None)
        self._pending_deletes[key] = None
        if len(self._pending_deletes) > self._max_pending_deletes:
            # Beyond the bound the oldest invalidation is lost; its Redis entry still expires with its TTL.
            del self._pending_deletes[next(iter(self._pending_deletes))]
            self._deletes_lost += 1

    async def _replay_deletes(self) -> None:
        while self._pending_deletes:
            key = next(iter(self._pending_deletes))
            await self._primary.delete(key)
            self._pending_deletes.pop(key, None)
