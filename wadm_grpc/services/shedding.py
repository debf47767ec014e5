"""Load shedding: a bound on concurrent uncached reads, a short queue that respects the call's deadline,
and UnavailableError (UNAVAILABLE + RetryInfo) beyond it.

A cache miss holds a slot for its whole load (the store reads and the rendering of the answer, which is
Python work on the event loop: 1,000 candles cost more than the query), so the loop never has more than
`max_running` such answers to build at once; reads that no cache fronts (ListTrades) take a slot per
store read. Cached answers never pass the gate, so they never wait behind it. A flood of uncached queries
then costs its own callers refusals, not the other clients' latency, nor the server's memory.

With a LoadsThread, a load holding a slot runs on that thread's event loop, not the server's: building
and rendering a 1,000-candle answer is tens of milliseconds of Python, which on the server's loop would
hold up every other call for as long (GIL switching hands the loop the interpreter every few
milliseconds instead). The load's store reads go back to the server's loop (GatedTradeStore), where a
driver's loop-bound client lives, unless the store reads on threads of its own (ports.LoopFreeReads).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TypeVar

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.ports import CandleQuery, TradeQuery, TradeStore
from wadm_grpc.services.read_priority import ReadActivity

T = TypeVar("T")

# When the running call's deadline passes (time.monotonic()), or None without one; set by the API layer.
call_deadline: ContextVar[float | None] = ContextVar("call_deadline", default=None)
# The RPC the running call is (for the events of shed calls); set by the API layer.
call_method: ContextVar[str] = ContextVar("call_method", default="")
# Whether the running task holds a slot: a load that holds one (the whole cache miss: store reads and
# rendering) passes its own store reads through instead of queueing behind itself.
_holding: ContextVar[bool] = ContextVar("holding_store_slot", default=False)
# The server's event loop, while a load runs on a LoadsThread (its store reads are sent back there).
_home_loop: ContextVar[asyncio.AbstractEventLoop | None] = ContextVar("home_loop", default=None)
RETRY_AFTER_SECONDS = 1.0
SHED_REASON = "OVERLOADED"


async def _call(read: Callable[[], Awaitable[T]]) -> T:
    return await read()


class LoadsThread:
    """An event loop on a daemon thread of its own (started on first use) for loads that hold a slot."""

    def __init__(self, name: str = "wadm-loads") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The thread's loop, None before the first load."""
        return self._loop

    async def run(self, read: Callable[[], Awaitable[T]]) -> T:
        """`await read()` on this thread's loop; store reads it makes come back to the caller's loop."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
            self._thread.start()
        # The task on the other loop runs in a copy of this context (call vars, slot, the home loop).
        token = _home_loop.set(asyncio.get_running_loop())
        try:
            done = asyncio.run_coroutine_threadsafe(_call(read), self._loop)
        finally:
            _home_loop.reset(token)
        return await asyncio.wrap_future(done)  # cancelling the call cancels the load too

    async def aclose(self) -> None:
        """Cancel the loads still running (their callers get CancelledError), then stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_cancel_all(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()


async def _cancel_all() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def at_home(read: Callable[[], Awaitable[T]]) -> T:
    """`await read()` on the server's loop: directly there, sent back from a LoadsThread."""
    home = _home_loop.get()
    if home is None or home is asyncio.get_running_loop():
        return await read()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(read), home))


class StoreQueryGate:
    """At most `max_running` reads at once; up to `max_queued` more wait, each at most `max_wait_seconds`
    and never past its call's deadline; any other read is refused at once. With `loads`, a read given
    with `off_loop=True` (a whole cache-miss load) runs on that thread once it holds a slot. With
    `activity`, every read holding a slot is counted there (ingest yields to them)."""

    def __init__(
        self,
        *,
        max_running: int,
        max_queued: int,
        max_wait_seconds: float,
        on_shed: Callable[[str], None] | None = None,
        loads: LoadsThread | None = None,
        activity: ReadActivity | None = None,
    ) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_wait_seconds = max_wait_seconds
        self.loads = loads
        self.activity = activity
        self._slots = asyncio.Semaphore(max_running)
        self._waiting = 0
        self._on_shed = on_shed
        self.shed = 0

    @property
    def waiting(self) -> int:
        """Reads queued now."""
        return self._waiting

    @property
    def saturated(self) -> bool:
        """Whether every slot is taken (a new read would queue or be refused)."""
        return self._slots.locked()

    def _refuse(self, why: str) -> UnavailableError:
        self.shed += 1
        if self._on_shed is not None:
            self._on_shed(call_method.get())
        return UnavailableError(
            f"the store is saturated ({why}); retry shortly",
            reason=SHED_REASON,
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )

    async def run(self, read: Callable[[], Awaitable[T]], *, off_loop: bool = False) -> T:
        """`await read()` once a slot is free (on the LoadsThread when `off_loop`), or UnavailableError
        (at once when this task holds one)."""
        if _holding.get():
            return await read()
        if self._slots.locked():
            if self._waiting >= self.max_queued:
                raise self._refuse(f"{self.max_running} queries running, {self._waiting} queued")
            wait = self.max_wait_seconds
            deadline = call_deadline.get()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise self._refuse("no time left before the call's deadline")
            self._waiting += 1
            try:
                async with asyncio.timeout(wait):
                    await self._slots.acquire()
            except TimeoutError:
                raise self._refuse(f"no query slot within {wait:.3f} s") from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        token = _holding.set(True)
        activity = self.activity
        if activity is not None:
            activity.begin()
        try:
            if off_loop and self.loads is not None:
                return await self.loads.run(read)
            return await read()
        finally:
            if activity is not None:
                activity.end()
            _holding.reset(token)
            self._slots.release()


class GatedTradeStore:
    """A TradeStore whose aggregate and trade reads pass a StoreQueryGate; writes and the symbol list (one
    row per market) go straight through. The reads run on the server's loop, also for a load on a
    LoadsThread, unless `reads_at_home` is False (a store with threads of its own, ports.LoopFreeReads:
    sending each read to the server's loop and back cost four thread hand-offs per answer)."""

    def __init__(self, store: TradeStore, gate: StoreQueryGate, *, reads_at_home: bool = True) -> None:
        self.inner = store
        self.gate = gate
        self._home: Callable[[Callable[[], Awaitable[T]]], Awaitable[T]] = at_home if reads_at_home else _call

    async def insert_trades(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        """Ingest is not shed here (its own calls bound it)."""
        return await self.inner.insert_trades(trades)

    def prepare_batch(self, trades: Sequence[Trade]) -> None:
        """Straight through."""
        self.inner.prepare_batch(trades)

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        """Gated."""
        return await self.gate.run(lambda: self._home(lambda: self.inner.candles(query)))

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        """Not gated: one row per market, as cheap as a cache read, and what clients poll to find markets."""
        return await self.inner.symbols(exchanges)

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        """Gated."""
        read = lambda: self.inner.window_stats(symbols, exchanges, start_us, end_us)  # noqa: E731
        return await self.gate.run(lambda: self._home(read))

    async def trades(self, query: TradeQuery) -> list[Trade]:
        """Gated."""
        return await self.gate.run(lambda: self._home(lambda: self.inner.trades(query)))

    async def close(self) -> None:
        """Close the store."""
        await self.inner.close()
