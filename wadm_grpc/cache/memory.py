"""MemoryCache: a bounded LRU of bytes with per-entry TTLs, in this process."""

from __future__ import annotations

import time
from collections import OrderedDict

from wadm_grpc.ports import CacheStats, Clock, TierStats

DEFAULT_MAX_ENTRIES = 10_000


class MonotonicClock:
    """Microseconds from a clock that never jumps (TTLs must not move with wall-clock corrections)."""

    def now_us(self) -> int:
        """Now, on an arbitrary origin."""
        return time.monotonic_ns() // 1_000


class MemoryCache:
    """Cache port in memory: least recently used entries are evicted beyond `max_entries`."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Clock | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max_entries = max_entries
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        # key -> (value, expiry in clock microseconds); order = least recently used first.
        self._entries: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def __len__(self) -> int:
        """Entries held, expired ones included until touched or evicted."""
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """The value under `key` unless absent or expired."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self._clock.now_us():
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]
        if entry is not None:
            del self._entries[key]
        self._misses += 1
        return None

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`, evicting the least recently used entries beyond the bound."""
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self._entries[key] = (value, self._clock.now_us() + round(ttl_seconds * 1_000_000))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything (counters stay)."""
        self._entries.clear()

    def stats(self) -> CacheStats:
        """Counters since start."""
        return CacheStats(tiers=(self.tier_stats(),))

    def tier_stats(self) -> TierStats:
        """This tier's counters."""
        return TierStats("memory", hits=self._hits, misses=self._misses, evictions=self._evictions)
