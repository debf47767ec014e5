"""InProcessTradeBus: fan-out of ingested trades to this process's subscribers, and a short log to resume from.

Each subscriber has a bounded buffer. Publishing never waits: a subscriber whose buffer is full is
cut off (its iterator raises ResourceExhaustedError) instead of slowing ingest or other subscribers.
Trades travel in chunks (domain/stream_position.py); each subscriber's Cursor says what it has had, so a
resumed subscription replays what it missed, then continues live, with no gap and nothing twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from wadm_grpc.domain.errors import OutOfRangeError, ResourceExhaustedError, UnavailableError, WadmError
from wadm_grpc.domain.stream_position import ZERO_ID, Chunk, Cursor, Mark, StreamId, StreamPosition
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch, symbols_of
from wadm_grpc.ports import Subscription

DEFAULT_BUFFER_TRADES = 10_000
# How soon a cut-off subscriber may reconnect (google.rpc.RetryInfo).
RETRY_AFTER_SECONDS = 1.0
# Trades per chunk: a resume token marks chunk boundaries, and a stream message carries at most this many.
ENTRY_TRADES = 1_000
# How far back a resume can go (WADM_STREAM_RETENTION_SECONDS), and how many trades the in-process log keeps.
DEFAULT_RETENTION_SECONDS = 3600.0
DEFAULT_RETENTION_TRADES = 100_000
RESUME_EXPIRED = "RESUME_TOKEN_EXPIRED"
# Entries a replay reads (and decodes, on the event loop) at a time: like the live reader, keep it small.
REPLAY_PAGE_CHUNKS = 20


class Replay(Protocol):
    """The chunks a resumed subscription missed, page by page."""

    async def next_page(self) -> list[Chunk] | None:
        """The next chunks in order, or None once there are no more; may raise UnavailableError/OutOfRangeError."""
        ...


BusMark = Callable[[], tuple[StreamId, int]]  # the bus's position now: (stream id read up to, own last seq)
Share = tuple[Chunk, list[Trade]]


def expired(available_from_us: int | None, why: str) -> OutOfRangeError:
    """The error for a resume token past retention; `available_from_us` is the oldest trade time still served."""
    when = datetime.fromtimestamp(
        (available_from_us if available_from_us is not None else time.time_ns() // 1000) / 1e6, UTC
    )
    return OutOfRangeError(
        f"resume_token: {why}; fetch the missed trades with ListTrades, then stream without a token",
        reason=RESUME_EXPIRED,
        metadata={"available_from": when.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
    )


class MemorySubscription:
    """One subscriber's bounded buffer of trades, and its position (what it has had)."""

    def __init__(
        self,
        bus: InProcessTradeBus,
        symbols: frozenset[str],
        exchanges: frozenset[str],
        capacity: int,
        cursor: Cursor,
    ) -> None:
        self.symbols = symbols
        self.exchanges = exchanges
        self._bus = bus
        self._capacity = capacity
        # Each chunk's share of trades, with the cursor's mark once it is had.
        self._pending: deque[tuple[list[Trade], Mark]] = deque()
        self._pending_trades = 0
        self._cursor = cursor
        self._mark = cursor.mark()  # where the trades the last `get` returned end
        self._replay: Replay | None = None
        self._held: list[Share] | None = None  # live chunks that arrive while a resume replays
        self._held_trades = 0
        self._wake = asyncio.Event()
        self._error: WadmError | None = None
        self._closed = False
        self._on_end: Callable[[], None] | None = None
        # The idle timeout of get(): one timer per subscription, re-armed lazily, instead of one per call
        # (a timer per stream message is heap work for every stream at every publish).
        self._idle_deadline = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._waiting = False

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) when the bus ends this subscription: cut off, or shut down."""
        self._on_end = callback

    def position(self) -> StreamPosition:
        """Everything up to what the last `get` returned."""
        return self._cursor.position_of(self._mark)

    def idle_position(self) -> StreamPosition:
        """`position()`, moved up to the bus's position now if nothing waits for the subscriber (every trade
        published so far was considered for it), which keeps a later resume short."""
        if not self._pending and self._held is None and self._replay is None and not self._closed:
            stream_id, own_seq = self._bus.mark()
            self._cursor.advance(stream_id, own_seq)
            self._mark = self._cursor.mark()
        return self.position()

    def hold(self, position: StreamPosition) -> None:
        """Start a resume from `position`: live chunks wait until `replay_from` has replayed what was missed."""
        self._cursor = Cursor(position, self._cursor.own)
        self._mark = self._cursor.mark()
        self._held = []

    def replay_from(self, replay: Replay) -> None:
        """Serve `replay`'s chunks first (through `get`), then the chunks held meanwhile, then live."""
        self._replay = replay
        self._wake.set()

    def offer(self, shares: Iterable[Share]) -> None:
        """Buffer each chunk's share of trades or, when they do not fit, end the subscription. Never blocks.

        A subscriber is cut off when a full buffer (`capacity` trades) is still waiting for it as more
        arrive: it is not keeping up. Below that, the batch is taken whatever its size (an ingest batch is
        bounded), so several batches announced back to back never cut off a subscriber that keeps up.
        """
        if self._closed:
            return
        if self._held is not None:
            if self._held_trades >= self._capacity:
                self._fall_behind()
                return
            for share in shares:
                self._held.append(share)
                self._held_trades += len(share[1])
            return
        if self._pending_trades >= self._capacity:
            self._fall_behind()
            return
        if self._take(shares):
            self._wake.set()

    def _take(self, shares: Iterable[Share]) -> bool:
        cursor, exchanges, took = self._cursor, self.exchanges, False
        for chunk, share in shares:
            if not cursor.accept(chunk):
                continue
            # Each share is a list built for this subscriber alone (deliver, replay): kept as it is.
            trades = [t for t in share if t.exchange in exchanges] if exchanges else share
            if trades:
                self._pending.append((trades, cursor.mark()))
                self._pending_trades += len(trades)
                took = True
        return took

    def _fall_behind(self) -> None:
        self.fail(
            ResourceExhaustedError(
                f"stream fell more than {self._capacity} trades behind and was ended; reconnect",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        )

    def change(self, symbols: frozenset[str], exchanges: frozenset[str]) -> None:
        """Receive trades of `symbols` on `exchanges` from now on; buffered trades no longer selected are
        dropped. Synchronous, so no publish falls between: a symbol kept loses and repeats no trade."""
        if self._closed or self._error is not None:
            return
        self._bus.move(self, symbols)
        self.symbols = symbols
        self.exchanges = exchanges
        kept: deque[tuple[list[Trade], Mark]] = deque()
        for trades, mark in self._pending:
            share = [t for t in trades if t.symbol in symbols and (not exchanges or t.exchange in exchanges)]
            if share:
                kept.append((share, mark))
        self._pending = kept
        self._pending_trades = sum(len(trades) for trades, _ in kept)

    def fail(self, error: WadmError) -> None:
        """End the subscription: the iterator raises `error` (buffered trades are dropped)."""
        if self._error is None and not self._closed:
            self._error = error
            self._drop()
            self._bus.remove(self)
            self._stop_idle_timer()
            self._wake.set()
            if self._on_end is not None:
                self._on_end()

    def close(self) -> None:
        """Stop receiving; idempotent."""
        if not self._closed:
            self._closed = True
            self._drop()
            self._bus.remove(self)
            self._stop_idle_timer()
            self._wake.set()

    def _drop(self) -> None:
        self._pending = deque()
        self._pending_trades = 0
        self._held = None
        self._replay = None

    async def _replayed(self) -> None:
        """Fill the buffer from the replay (a page at a time), then from the chunks held meanwhile."""
        while self._replay is not None and not self._pending and self._error is None and not self._closed:
            page = await self._replay.next_page()
            if self._replay is None:  # ended meanwhile
                return
            if page is None:
                self._replay = None
                held, self._held, self._held_trades = self._held or [], None, 0
                if not self._take(held):
                    self._wake.clear()  # set by replay_from: nothing to take yet, so wait for live trades
                return
            symbols = self.symbols
            self._take((chunk, [t for t in chunk.trades if t.symbol in symbols]) for chunk in page)

    async def get(self, timeout_seconds: float, limit: int | None = None) -> list[Trade] | None:
        """The trades buffered since the last call (waiting up to `timeout_seconds`), or None if none came.
        With `limit`, at most that many: whole chunks while they fit (a chunk bigger than `limit` is split).

        Raises the error that ended the subscription (ResourceExhaustedError, UnavailableError).
        """
        if self._replay is not None:
            await self._replayed()
        if not self._pending and self._error is None and not self._closed and timeout_seconds > 0:
            loop = asyncio.get_running_loop()
            self._idle_deadline = loop.time() + timeout_seconds
            timer = self._idle_timer
            if timer is None or timer.when() > self._idle_deadline:
                if timer is not None:
                    timer.cancel()
                self._idle_timer = loop.call_at(self._idle_deadline, self._idle_check)
            self._waiting = True
            try:
                await self._wake.wait()
            finally:
                self._waiting = False
            if self._replay is not None:
                await self._replayed()
        self._wake.clear()
        if self._error is not None:
            raise self._error
        if not self._pending:
            return None
        pending = self._pending
        trades, mark = pending.popleft()
        if limit is not None and len(trades) > limit:
            pending.appendleft((trades[limit:], mark))
            self._pending_trades -= limit
            return trades[:limit]  # the position stays before this chunk until its last part is taken
        batch = trades
        while pending and (limit is None or len(batch) + len(pending[0][0]) <= limit):
            more, mark = pending.popleft()
            batch = batch + more
        self._pending_trades -= len(batch)
        if not pending and self._held is None and self._replay is None:
            # Nothing else waits: every chunk published or read so far was considered (keeps positions fresh).
            stream_id, own_seq = self._bus.mark()
            cursor = self._cursor
            cursor.advance(stream_id, own_seq)
            mark = cursor.mark()
        self._mark = mark
        return batch

    def _idle_check(self) -> None:
        """The idle timer fired: wake a get() whose deadline passed, or re-arm for the one now waiting."""
        self._idle_timer = None
        if not self._waiting:
            return  # the next get() arms it again
        loop = asyncio.get_running_loop()
        if loop.time() >= self._idle_deadline:
            self._wake.set()
        else:
            self._idle_timer = loop.call_at(self._idle_deadline, self._idle_check)

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class InProcessTradeBus:
    """TradeBus within one process; keeps recent chunks (a bounded log) for resumes within this process."""

    def __init__(
        self,
        *,
        buffer_trades: int = DEFAULT_BUFFER_TRADES,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        retention_trades: int = DEFAULT_RETENTION_TRADES,
        origin: str | None = None,
        mark: BusMark | None = None,
    ) -> None:
        self._buffer_trades = buffer_trades
        self._by_symbol: defaultdict[str, set[MemorySubscription]] = defaultdict(set)
        self._closed = False
        self._membership_changed = asyncio.Event()
        self.origin = origin or uuid.uuid4().hex
        self.epoch = self.origin
        self._seq = 0
        # A bus inside another (Redis) gives its own mark and keeps no log: the Redis stream is the history.
        self._mark = mark or (lambda: (ZERO_ID, self._seq))
        self._logging = mark is None
        self._log: deque[tuple[float, Chunk]] = deque()
        self._log_trades = 0
        self._retention_seconds = retention_seconds
        self._retention_trades = retention_trades
        self._first_kept_seq = 1

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (for tests and stats)."""
        return len({sub for subs in self._by_symbol.values() for sub in subs})

    async def wait_for_subscribers(self, count: int) -> None:
        """Return once exactly `count` subscriptions are live (tests and benchmarks use it)."""
        while self.subscriber_count != count:
            self._membership_changed.clear()
            await self._membership_changed.wait()

    def mark(self) -> tuple[StreamId, int]:
        """The bus's position now: (stream id read up to, seq of the last own chunk)."""
        return self._mark()

    def mark_seq(self) -> int:
        """The seq of the last own chunk."""
        return self._seq

    def next_seq(self) -> int:
        """Number a new own chunk."""
        self._seq += 1
        return self._seq

    async def publish(self, trades: Sequence[Trade]) -> None:
        """Hand `trades` to every matching subscriber, per symbol in the given order."""
        self.deliver(self.chunks(trades))

    def chunks(self, trades: Sequence[Trade]) -> list[Chunk]:
        """`trades` as numbered own chunks of at most ENTRY_TRADES (logged for resumes when this bus keeps a log)."""
        if len(trades) <= ENTRY_TRADES:
            parts: list[Sequence[Trade]] = [trades] if trades else []
        else:
            parts = [_part(trades, start, start + ENTRY_TRADES) for start in range(0, len(trades), ENTRY_TRADES)]
        chunks = [Chunk(self.origin, self.next_seq(), None, part) for part in parts]
        if self._logging and chunks:
            now = time.monotonic()
            for chunk in chunks:
                self._log.append((now, chunk))
                self._log_trades += len(chunk.trades)
            self._trim(now)
        return chunks

    def _trim(self, now: float) -> None:
        log = self._log
        while log and (self._log_trades > self._retention_trades or log[0][0] < now - self._retention_seconds):
            _, dropped = log.popleft()
            self._log_trades -= len(dropped.trades)
            self._first_kept_seq = dropped.seq + 1

    def deliver(self, chunks: Iterable[Chunk]) -> None:
        """Synchronous fan-out (also used by buses that receive trades from elsewhere).

        Each subscriber gets its share of every chunk at once, in the order given.
        """
        by_symbol = self._by_symbol
        touched: dict[MemorySubscription, list[Share]] = {}
        for chunk in chunks:
            trades = chunk.trades
            if not any(by_symbol.get(symbol) for symbol in symbols_of(trades)):
                continue  # nobody listens: the trades are not even looked at (a TradeBatch builds no Trades)
            shares: dict[MemorySubscription, list[Trade]] = {}
            for trade in trades:
                for subscription in by_symbol.get(trade.symbol, ()):
                    shares.setdefault(subscription, []).append(trade)
            for subscription, share in shares.items():
                touched.setdefault(subscription, []).append((chunk, share))
        for subscription, items in touched.items():
            subscription.offer(items)

    def subscribe(self, symbols: frozenset[str], exchanges: frozenset[str]) -> MemorySubscription:
        """A new subscription; raises UnavailableError once the bus is closed."""
        if self._closed:
            raise UnavailableError("server is shutting down")
        stream_id, own_seq = self.mark()
        start = Cursor(StreamPosition(self.epoch, stream_id, ((self.origin, own_seq),)), self.origin)
        subscription = MemorySubscription(self, symbols, exchanges, self._buffer_trades, start)
        for symbol in symbols:
            self._by_symbol[symbol].add(subscription)
        self._membership_changed.set()
        return subscription

    async def resume(self, subscription: Subscription, position: StreamPosition) -> None:
        """Make `subscription` (just subscribed or changed) replay what came after `position` from this
        process's log, then continue live. OutOfRangeError if the log no longer reaches back that far or the
        position is of another process (a restart)."""
        if not isinstance(subscription, MemorySubscription):
            raise TypeError(f"not a subscription of this bus: {subscription!r}")
        subscription.hold(position)
        self._trim(time.monotonic())
        oldest = self._log[0][1].trades[0].time_us if self._log and self._log[0][1].trades else None
        if position.epoch != self.epoch:
            subscription.close()
            raise expired(
                oldest, "was issued before this server restarted (without Redis, resume works within one process)"
            )
        after = dict(position.seen).get(self.origin, 0)
        if after + 1 < self._first_kept_seq:
            subscription.close()
            raise expired(oldest, "is older than the stream retention (WADM_STREAM_RETENTION_SECONDS)")
        subscription.replay_from(_LogReplay([chunk for _, chunk in self._log if chunk.seq > after]))

    def move(self, subscription: MemorySubscription, symbols: frozenset[str]) -> None:
        """Index `subscription` under `symbols` instead of its current ones (called by the subscription)."""
        self.remove(subscription)
        for symbol in symbols:
            self._by_symbol[symbol].add(subscription)

    def remove(self, subscription: MemorySubscription) -> None:
        """Forget a subscription (called by the subscription itself)."""
        for symbol in subscription.symbols:
            subscribers = self._by_symbol.get(symbol)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._by_symbol[symbol]
        self._membership_changed.set()

    async def close(self) -> None:
        """End every subscription with UnavailableError (server shutting down)."""
        self._closed = True
        for subscription in {sub for subs in self._by_symbol.values() for sub in subs}:
            subscription.fail(UnavailableError("server is shutting down; reconnect"))


def _part(trades: Sequence[Trade], start: int, end: int) -> Sequence[Trade]:
    """trades[start:end], column by column for a TradeBatch (whose Trade objects are built only if needed)."""
    if isinstance(trades, TradeBatch):
        return trades.sliced(start, end)
    return trades[start:end]


class _LogReplay:
    """Replay of a snapshot of the in-process log."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self._chunks = chunks
        self._next = 0

    async def next_page(self) -> list[Chunk] | None:
        if self._next >= len(self._chunks):
            return None
        page = self._chunks[self._next : self._next + REPLAY_PAGE_CHUNKS]
        self._next += len(page)
        return page
