"""Weighted rate limits per identity (a key's name, or a client IP): fixed one-minute windows, Binance style.

The `limits` package does the counting: in memory, or in Redis (an atomic server-side increment-and-expire)
so every process and replica shares one budget. A Redis that fails or stalls costs no call: the limiter
counts in memory until a probe (one call every `probe_seconds`) finds Redis back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import Redis

log = logging.getLogger("wadm_grpc.access")

NAMESPACE = "wadm-rl"
# A local Redis answers in ~0.1 ms; this long means it is stalled, and the call is counted in memory.
REDIS_TIMEOUT_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class Decision:
    """One call's verdict and the budget after it (the X-RateLimit-* values)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float


class RateLimiter(Protocol):
    """Counts weighted calls per identity against a per-minute budget."""

    async def hit(self, identity: str, weight: int, limit_per_minute: int) -> Decision:
        """Count `weight` for `identity`; whether it was within `limit_per_minute`. Never raises for a backend."""
        ...


class WindowRateLimiter:
    """A fixed one-minute window per identity in one `limits` storage (memory, or Redis: an atomic
    increment that sets the window's expiry with the first hit). Two round trips per call."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def hit(self, identity: str, weight: int, limit_per_minute: int) -> Decision:
        """Count and decide (raises what the storage raises). A refused call counts too, as Binance's do:
        a client hammering past its limit keeps its window full."""
        item = RateLimitItemPerMinute(limit_per_minute, namespace=NAMESPACE)
        key = item.key_for(identity)
        used = await self.storage.incr(key, item.get_expiry(), amount=weight)
        reset_at = await self.storage.get_expiry(key)
        reset = max(0.0, reset_at - time.time())
        return Decision(used <= limit_per_minute, limit_per_minute, max(0, limit_per_minute - used), reset)


def redis_rate_limiter(client: Redis) -> WindowRateLimiter:
    """Counting in the Redis `client` talks to (its fail-fast connection pool, redis_connection.py)."""
    url = "async+redis://" + _address(client)
    pool: Any = client.connection_pool  # limits types its options as scalars; redispy takes a pool
    return WindowRateLimiter(RedisStorage(url, implementation="redispy", connection_pool=pool))


def _address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def memory_rate_limiter() -> WindowRateLimiter:
    """Counting in this process only."""
    return WindowRateLimiter(MemoryStorage())


class FailoverRateLimiter:
    """`primary` (Redis) while it answers; `fallback` (memory) while it does not, probing it again every
    `probe_seconds`. Counts made in memory stay there: a Redis outage makes limits per process, never errors."""

    def __init__(self, primary: WindowRateLimiter, fallback: WindowRateLimiter, *, probe_seconds: float) -> None:
        self.primary = primary
        self.fallback = fallback
        self._probe_seconds = probe_seconds
        self._down_until = 0.0
        self.failures = 0

    @property
    def using_fallback(self) -> bool:
        """Whether calls are counted in memory now."""
        return time.monotonic() < self._down_until

    async def hit(self, identity: str, weight: int, limit_per_minute: int) -> Decision:
        """Count in Redis, or in memory while Redis is down."""
        if not self.using_fallback:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    return await self.primary.hit(identity, weight, limit_per_minute)
            except Exception as error:  # any failure of the backend (refused, reset, timeout) means "down"
                self.failures += 1
                log.warning("rate limits counted in memory: Redis failed", extra={"error": repr(error)[:200]})
                self._down_until = time.monotonic() + self._probe_seconds
        return await self.fallback.hit(identity, weight, limit_per_minute)


class StreamCounter:
    """Open streams per identity in this process (WADM_MAX_STREAMS_PER_KEY)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def try_open(self, identity: str, cap: int) -> bool:
        """Count one more stream for `identity` unless it has `cap` open (cap 0: no cap)."""
        current = self._open.get(identity, 0)
        if cap and current >= cap:
            return False
        self._open[identity] = current + 1
        return True

    def close(self, identity: str) -> None:
        """One stream of `identity` ended."""
        left = self._open.get(identity, 0) - 1
        if left > 0:
            self._open[identity] = left
        else:
            self._open.pop(identity, None)

    def open_streams(self, identity: str) -> int:
        """Streams `identity` has open."""
        return self._open.get(identity, 0)
