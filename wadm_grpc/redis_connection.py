"""Redis connections for the cache and the trade bus: fail fast, never retry behind the caller's back."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# A local Redis answers in ~0.1 ms: a quarter second means it is down or stalled, and the caller falls back.
DEFAULT_TIMEOUT_SECONDS = 0.25
DEFAULT_MAX_CONNECTIONS = 64
# What a dead, refusing or stalled Redis raises through redis-py (TimeoutError is an OSError).
REDIS_FAILURES = (RedisError, OSError)


def redis_client(
    url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> Redis:
    """A client for `url` that fails fast: short socket timeouts, no retries, a bounded pool that waits briefly.

    Creating it does no I/O; close it with `await client.aclose()`.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)
