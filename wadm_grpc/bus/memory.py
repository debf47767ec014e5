"""InProcessTradeBus: fan-out of ingested trades to this process's subscribers.

Each subscriber has a bounded buffer. Publishing never waits: a subscriber whose buffer is full is
cut off (its iterator raises ResourceExhaustedError) instead of slowing ingest or other subscribers.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

from wadm_grpc.domain.errors import ResourceExhaustedError, UnavailableError, WadmError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import symbols_of

DEFAULT_BUFFER_TRADES = 10_000
# How soon a cut-off subscriber may reconnect (google.rpc.RetryInfo).
RETRY_AFTER_SECONDS = 1.0


class MemorySubscription:
    """One subscriber's bounded buffer of trades."""

    def __init__(
        self, bus: InProcessTradeBus, symbols: frozenset[str], exchanges: frozenset[str], capacity: int
    ) -> None:
        self.symbols = symbols
        self.exchanges = exchanges
        self._bus = bus
        self._capacity = capacity
        self._pending: list[Trade] = []
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

    def offer(self, trades: list[Trade]) -> None:
        """Buffer `trades` or, when they do not fit, end the subscription. Never blocks.

        A subscriber is cut off when a full buffer (`capacity` trades) is still waiting for it as more
        arrive: it is not keeping up. Below that, the batch is taken whatever its size (an ingest batch is
        bounded), so several batches announced back to back never cut off a subscriber that keeps up.
        """
        if self._closed:
            return
        if self.exchanges:
            trades = [t for t in trades if t.exchange in self.exchanges]
        if not trades:
            return
        if len(self._pending) >= self._capacity:
            self.fail(
                ResourceExhaustedError(
                    f"stream fell more than {self._capacity} trades behind and was ended; reconnect",
                    retry_after_seconds=RETRY_AFTER_SECONDS,
                )
            )
            return
        self._pending.extend(trades)
        self._wake.set()

    def change(self, symbols: frozenset[str], exchanges: frozenset[str]) -> None:
        """Receive trades of `symbols` on `exchanges` from now on; buffered trades no longer selected are
        dropped. Synchronous, so no publish falls between: a symbol kept loses and repeats no trade."""
        if self._closed or self._error is not None:
            return
        self._bus.move(self, symbols)
        self.symbols = symbols
        self.exchanges = exchanges
        self._pending = [t for t in self._pending if t.symbol in symbols and (not exchanges or t.exchange in exchanges)]

    def fail(self, error: WadmError) -> None:
        """End the subscription: the iterator raises `error` (buffered trades are dropped)."""
        if self._error is None and not self._closed:
            self._error = error
            self._pending = []
            self._bus.remove(self)
            self._stop_idle_timer()
            self._wake.set()
            if self._on_end is not None:
                self._on_end()

    def close(self) -> None:
        """Stop receiving; idempotent."""
        if not self._closed:
            self._closed = True
            self._pending = []
            self._bus.remove(self)
            self._stop_idle_timer()
            self._wake.set()

    async def get(self, timeout_seconds: float) -> list[Trade] | None:
        """The trades buffered since the last call (waiting up to `timeout_seconds`), or None if none came.

        Raises the error that ended the subscription (ResourceExhaustedError, UnavailableError).
        """
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
        self._wake.clear()
        if self._error is not None:
            raise self._error
        if not self._pending:
            return None
        batch, self._pending = self._pending, []
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
    """TradeBus within one process."""

    def __init__(self, *, buffer_trades: int = DEFAULT_BUFFER_TRADES) -> None:
        self._buffer_trades = buffer_trades
        self._by_symbol: defaultdict[str, set[MemorySubscription]] = defaultdict(set)
        self._closed = False
        self._membership_changed = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (for tests and stats)."""
        return len({sub for subs in self._by_symbol.values() for sub in subs})

    async def wait_for_subscribers(self, count: int) -> None:
        """Return once exactly `count` subscriptions are live (tests and benchmarks use it)."""
        while self.subscriber_count != count:
            self._membership_changed.clear()
            await self._membership_changed.wait()

    async def publish(self, trades: Sequence[Trade]) -> None:
        """Hand `trades` to every matching subscriber, per symbol in the given order."""
        self.deliver(trades)

    def deliver(self, trades: Sequence[Trade]) -> None:
        """Synchronous fan-out (also used by buses that receive trades from elsewhere).

        Each subscriber gets its share of `trades` in one batch, in the order given.
        """
        if not any(self._by_symbol.get(symbol) for symbol in symbols_of(trades)):
            return  # nobody listens: the trades are not even looked at (a TradeBatch builds no Trades)
        shares: dict[MemorySubscription, list[Trade]] = {}
        for trade in trades:
            for subscription in self._by_symbol.get(trade.symbol, ()):
                shares.setdefault(subscription, []).append(trade)
        for subscription, share in shares.items():
            subscription.offer(share)

    def subscribe(self, symbols: frozenset[str], exchanges: frozenset[str]) -> MemorySubscription:
        """A new subscription; raises UnavailableError once the bus is closed."""
        if self._closed:
            raise UnavailableError("server is shutting down")
        subscription = MemorySubscription(self, symbols, exchanges, self._buffer_trades)
        for symbol in symbols:
            self._by_symbol[symbol].add(subscription)
        self._membership_changed.set()
        return subscription

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
