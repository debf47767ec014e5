"""Cache-aside for read answers: per-answer TTLs, and per-symbol generations that late trades bump.

- Every answer is cached for its TTL at most (orderbook ~10 s, stats ~30 s, candles ~60 s), so the
  still-open candle and the stats' last price are never staler than that.
- Candle ranges that were entirely closed when loaded are cached for the longer closed-candle TTL.
- A late trade (one whose 1m bucket had already closed when it was ingested) can change closed candles:
  ingest then deletes the symbol's generation, a random token that is part of every key of that symbol;
  the next reader draws a new one, so every cached answer of the symbol is dropped at once, in every
  process sharing the cache. Being a delete, the invalidation also survives a Redis outage (the tiered
  cache replays missed deletes before it uses Redis again).
- Concurrent identical misses share one store read (CacheAside's single flight).

What is cached is the finished answer as the caller renders it (the API layer passes a function that
serialises its response message), so a hit costs a cache read and nothing else: no decoding, no
conversion, no serialisation. Services stay ignorant of the wire format; they only call `render`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import symbols_traded_before
from wadm_grpc.ports import Cache, CacheStats, Clock
from wadm_grpc.services.cache_aside import CacheAside
from wadm_grpc.services.shedding import StoreQueryGate

# The parameters' text, digested into the key (json.dumps with `default` builds an encoder per call).
_PARAMS = json.JSONEncoder(default=str)
KEY_PREFIX = "answer:v1"
# Longer than any answer TTL (config caps those at 7 days), so a generation outlives what it guards.
GENERATION_TTL_SECONDS = 8 * 86400.0

# The TTL of the answer the running call asked for last, so the API layer can tell clients how long it
# stays valid (HTTP Cache-Control through the gateway). Each gRPC call is a task with its own context.
answer_ttl_seconds: ContextVar[float | None] = ContextVar("answer_ttl_seconds", default=None)


@dataclass(frozen=True, slots=True)
class CacheTtls:
    """How long each kind of answer may be served from the cache."""

    candles_seconds: float = 60.0
    closed_candles_seconds: float = 3600.0
    stats_seconds: float = 30.0
    orderbook_seconds: float = 10.0


class ReadCache:
    """Answers by (kind, symbol, parameters), loaded on a miss; a disabled one always loads."""

    def __init__(self, cache: Cache | None, clock: Clock, ttls: CacheTtls | None = None) -> None:
        self._cache = cache
        self._aside = CacheAside(cache) if cache is not None else None
        self._clock = clock
        self.ttls = ttls or CacheTtls()
        self.invalidations = 0
        # Load shedding (services/shedding.py): every load on a miss holds one of its slots; set by bootstrap.
        self.gate: StoreQueryGate | None = None

    @property
    def enabled(self) -> bool:
        """Whether answers are cached at all."""
        return self._aside is not None

    async def answer(
        self,
        kind: str,
        symbol: str | None,
        params: Sequence[Any],
        ttl_seconds: float,
        load: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        """The cached rendered answer, or `await load()` cached for `ttl_seconds`. `symbol` ties the entry
        to that symbol's generation (None: the entry relies on its TTL alone)."""
        gate = self.gate
        if gate is not None:
            unguarded = load

            async def load() -> bytes:
                return await gate.run(unguarded, off_loop=True)

        if self._aside is None:
            return await load()
        answer_ttl_seconds.set(ttl_seconds)
        generation = await self._generation(symbol) if symbol else "-"
        digest = hashlib.sha256(_PARAMS.encode(list(params)).encode()).hexdigest()[:32]
        key = f"{KEY_PREFIX}:{kind}:{symbol or '*'}:{generation}:{digest}"
        return await self._aside.get_or_load(key, ttl_seconds=ttl_seconds, load=load)

    def candles_ttl(self, timeframe: Timeframe, last_open_time_us: int | None) -> float:
        """The TTL of a candle answer whose newest possible bucket opens at `last_open_time_us`."""
        if last_open_time_us is not None and last_open_time_us + timeframe.micros <= self._clock.now_us():
            return self.ttls.closed_candles_seconds
        return self.ttls.candles_seconds

    async def trades_stored(self, trades: Sequence[Trade]) -> None:
        """Ingest stored `trades`: late ones invalidate every cached answer of their symbol."""
        if self._cache is None:
            return
        open_minute = Timeframe.M1.bucket_start(self._clock.now_us())
        for symbol in sorted(symbols_traded_before(trades, open_minute)):
            await self._cache.delete(self._generation_key(symbol))
            self.invalidations += 1

    def stats(self) -> CacheStats | None:
        """Counters, or None when caching is off."""
        return self._aside.stats() if self._aside is not None else None

    @staticmethod
    def _generation_key(symbol: str) -> str:
        return f"{KEY_PREFIX}:generation:{symbol}"

    async def _generation(self, symbol: str) -> str:
        """The symbol's current generation, drawing a fresh one if it has none (or it was invalidated).
        Two readers racing here may draw two: entries under the losing one are merely never read again."""
        assert self._cache is not None
        key = self._generation_key(symbol)
        value = await self._cache.get(key)
        if value is None:
            value = uuid.uuid4().hex.encode()
            await self._cache.set(key, value, ttl_seconds=GENERATION_TTL_SECONDS)
        return value.decode()
