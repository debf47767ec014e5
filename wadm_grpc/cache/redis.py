"""RedisCache: the Cache port on Redis (redis-py asyncio), with short timeouts and no client-side retries."""

from __future__ import annotations

from redis.asyncio import Redis

from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.ports import CacheStats, TierStats
from wadm_grpc.redis_connection import REDIS_FAILURES

DEFAULT_KEY_PREFIX = "wadm:cache:"


class RedisCache:
    """Cache port on Redis: keys live under `key_prefix`, expiry is Redis' own (PX)."""

    def __init__(self, client: Redis, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._client = client
        self._prefix = key_prefix
        self._hits = 0
        self._misses = 0
        self._errors = 0

    def redis_key(self, key: str) -> str:
        """The Redis key holding `key`."""
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, or None; raises UnavailableError if Redis cannot answer."""
        try:
            value = await self._client.get(self._prefix + key)
        except REDIS_FAILURES as error:
            raise self._failed("GET", error) from error
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """SET with a millisecond expiry; raises UnavailableError if Redis cannot answer."""
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        try:
            await self._client.set(self._prefix + key, value, px=max(1, round(ttl_seconds * 1000)))
        except REDIS_FAILURES as error:
            raise self._failed("SET", error) from error

    async def delete(self, key: str) -> None:
        """DEL; raises UnavailableError if Redis cannot answer."""
        try:
            await self._client.delete(self._prefix + key)
        except REDIS_FAILURES as error:
            raise self._failed("DEL", error) from error

    async def ping(self) -> None:
        """Raise UnavailableError unless Redis answers PING (the circuit breaker's recovery probe)."""
        try:
            await self._client.ping()
        except REDIS_FAILURES as error:
            raise self._failed("PING", error) from error

    def stats(self) -> CacheStats:
        """Counters since start."""
        return CacheStats(tiers=(self.tier_stats(),))

    def tier_stats(self) -> TierStats:
        """This tier's counters."""
        return TierStats("redis", hits=self._hits, misses=self._misses, errors=self._errors)

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.aclose()

    def _failed(self, command: str, error: BaseException) -> UnavailableError:
        self._errors += 1
        return UnavailableError(f"redis {command} failed: {type(error).__name__}: {error}")
