"""Ports: the small interfaces services depend on; adapters in stores/, bus/ implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.stream_position import StreamPosition
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.domain.trade import Trade, TradeCursor


@dataclass(frozen=True, slots=True)
class CandleQuery:
    """Which buckets of one symbol to aggregate.

    Bounds are bucket open times (inclusive). `newest_first` selects the newest `limit` buckets at or
    before `end_us`; otherwise the oldest `limit` at or after `start_us`. Empty buckets never count.
    """

    symbol: str
    exchanges: tuple[str, ...]
    timeframe: Timeframe
    start_us: int | None
    end_us: int | None
    limit: int
    newest_first: bool


@dataclass(frozen=True, slots=True)
class TradeQuery:
    """A page of one symbol's trades, newest first, strictly after `cursor` in that order."""

    symbol: str
    exchanges: tuple[str, ...]
    start_us: int | None
    end_us: int | None
    cursor: TradeCursor | None
    limit: int


class TradeStore(Protocol):
    """Where trades live, with their exact aggregates."""

    async def insert_trades(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        """Store, atomically, the trades whose (exchange, symbol, trade_id) is new; return those, in input order."""
        ...

    def prepare_batch(self, trades: Sequence[Trade]) -> None:
        """Work the store can do on validated trades ahead of their `insert_trades`, on the caller's thread
        (ingest calls it on its validation thread, so the writer only writes); nothing if it has none."""
        ...

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        """Non-empty buckets selected by `query`, as (open time, aggregate), oldest first."""
        ...

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        """Every symbol with trades on `exchanges` (all if empty), alphabetically."""
        ...

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        """Aggregates of the trades in [start_us, end_us] of each symbol that has any, in ONE query."""
        ...

    async def trades(self, query: TradeQuery) -> list[Trade]:
        """Up to `limit` trades, newest first (time, exchange, trade id descending)."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class LoopFreeReads(Protocol):
    """A store whose reads run on threads of its own: they may be awaited on any event loop, not only on
    the one the store was opened on (which a driver's connections need)."""

    reads_on_any_loop: bool


@runtime_checkable
class LiveTradeSource(Protocol):
    """A store that also reports trades written into it by others (collectors), as they land."""

    def collector_trades(self) -> AsyncIterator[list[Trade]]:
        """Batches of trades others insert, live; ends when the store cannot report them."""
        ...


class Subscription(Protocol):
    """A live subscription to trades, delivered in ingest order."""

    async def get(self, timeout_seconds: float, limit: int | None = None) -> list[Trade] | None:
        """Trades received since the last call (at most `limit`), waiting up to `timeout_seconds`; None if
        none came.

        Raises ResourceExhaustedError when the subscriber fell too far behind, UnavailableError on shutdown.
        """
        ...

    def position(self) -> StreamPosition:
        """Everything up to the trades the last `get` returned (what a resume token carries)."""
        ...

    def idle_position(self) -> StreamPosition:
        """`position()`, moved up to the bus's position now when nothing waits for this subscriber."""
        ...

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call `callback` once if the bus ends the subscription (cut off, shutdown): a consumer blocked
        elsewhere, e.g. in a write to its client, learns it at once."""
        ...

    def change(self, symbols: frozenset[str], exchanges: frozenset[str]) -> None:
        """Receive trades of `symbols` on `exchanges` (every exchange if empty) from now on, at once:
        a symbol selected before and after loses and repeats no trade; buffered trades no longer
        selected are dropped. Does nothing once the subscription ended."""
        ...

    def close(self) -> None:
        """Stop receiving; idempotent."""
        ...


class TradeBus(Protocol):
    """Fan-out of freshly ingested trades to live subscribers."""

    async def publish(self, trades: Sequence[Trade]) -> None:
        """Deliver `trades` (already stored) to every matching subscriber; never blocks on a slow one."""
        ...

    def subscribe(self, symbols: frozenset[str], exchanges: frozenset[str]) -> Subscription:
        """A subscription to trades of `symbols` on `exchanges` (every exchange if empty)."""
        ...

    async def resume(self, subscription: Subscription, position: StreamPosition) -> None:
        """Make `subscription` (of this bus, just subscribed or changed, with no await since) first replay
        the trades it selects that came after `position`, then go on live: no gap, nothing twice.

        Raises OutOfRangeError (past retention, or a history this bus does not have) or UnavailableError;
        the subscription is closed then.
        """
        ...

    async def close(self) -> None:
        """End every subscription (they raise UnavailableError) and release resources."""
        ...


class Clock(Protocol):
    """The time, in epoch microseconds UTC."""

    def now_us(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TierStats:
    """Counters of one cache tier ("memory", "redis") since start."""

    name: str
    hits: int = 0
    misses: int = 0
    errors: int = 0
    evictions: int = 0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of cache counters since start.

    `fallbacks`: operations the memory tier served because Redis failed or its breaker was open.
    `loads`/`coalesced`: loader calls made, and callers that shared another caller's in-flight load.
    """

    tiers: tuple[TierStats, ...]
    fallbacks: int = 0
    breaker_open: bool = False
    loads: int = 0
    coalesced: int = 0

    def tier(self, name: str) -> TierStats:
        """The counters of tier `name`; raises KeyError if there is no such tier."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)


class Cache(Protocol):
    """Bytes by key, each with a time to live. Callers serialise; values are opaque.

    Operations raise UnavailableError when the backend cannot be reached (a tiered cache never does).
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None if absent or expired."""
        ...

    async def set(self, key: str, value: bytes, *, ttl_seconds: float) -> None:
        """Store `value` under `key` for `ttl_seconds`."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key` (no error if absent)."""
        ...

    def stats(self) -> CacheStats:
        """Counters since start."""
        ...
