"""CacheAside: read through a Cache, loading each missing key once however many callers miss it together."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.ports import Cache, CacheStats
from wadm_grpc.services.single_flight import SingleFlight

log = logging.getLogger(__name__)


class CacheAside:
    """Cache-aside over `cache`: a hit is served from it; concurrent misses of a key share ONE `load`.

    A cache that fails (UnavailableError) is treated as a miss and the value is loaded: the cache can cost
    a request latency, never an error. A value loaded while its key was invalidated is returned to the
    callers that were waiting but not stored, so an invalidation is never undone by a slow load.
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._flight: SingleFlight[bytes] = SingleFlight()
        # key -> token of the load whose result may still be stored (an invalidation drops it).
        self._loading: dict[str, object] = {}

    async def get_or_load(self, key: str, *, ttl_seconds: float, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached value of `key`, else `await load()` stored for `ttl_seconds`. Errors of `load`
        propagate to every caller that shared it, and nothing is stored."""
        try:
            cached = await self._cache.get(key)
        except UnavailableError:
            cached = None
        if cached is not None:
            return cached
        return await self._flight.run(key, lambda: self._start_load(key, ttl_seconds, load))

    async def invalidate(self, key: str) -> None:
        """Forget `key`: later calls load afresh, and a load already running will not store its result."""
        self._loading.pop(key, None)
        self._flight.forget(key)
        try:
            await self._cache.delete(key)
        except UnavailableError as error:
            log.warning("cache invalidation failed; the entry expires with its TTL", extra={"error": str(error)})

    @property
    def in_flight(self) -> int:
        """Loads running now."""
        return self._flight.in_flight

    def stats(self) -> CacheStats:
        """The cache's counters, with loads made and callers that shared another's load."""
        return dataclasses.replace(self._cache.stats(), loads=self._flight.started, coalesced=self._flight.joined)

    def _start_load(
        self, key: str, ttl_seconds: float, load: Callable[[], Awaitable[bytes]]
    ) -> Coroutine[Any, Any, bytes]:
        # Registered now, not when the load task first runs: an invalidation in between must still count.
        token = object()
        self._loading[key] = token
        return self._load(key, token, ttl_seconds, load)

    async def _load(self, key: str, token: object, ttl_seconds: float, load: Callable[[], Awaitable[bytes]]) -> bytes:
        try:
            value = await load()
            if self._loading.get(key) is token:
                # A failed store is counted by the cache; the value is still good to return.
                with contextlib.suppress(UnavailableError):
                    await self._cache.set(key, value, ttl_seconds=ttl_seconds)
            return value
        finally:
            if self._loading.get(key) is token:
                del self._loading[key]
