"""StreamTrades: live trades from the bus, with heartbeats when idle, and the slow-consumer policy.

A stream is cut off (ResourceExhaustedError) when its client falls behind in either of two ways:
- more than the bus buffer (`WADM_STREAM_BUFFER_TRADES`) waits for it while more trades arrive, or
- one message has waited `stall_seconds` for the transport to take it (the client's receive window is
  full: it stopped reading, whatever its library absorbed first).
Messages carry at most `max_message_trades` trades, so what one stalled write pins is bounded too.

Every message carries a resume token ("everything up to here", services/resume_tokens.py); a stream opened
with one first replays what came after it (the bus's `resume`), then goes on live.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from wadm_grpc.domain.errors import InvalidArgumentError, ResourceExhaustedError, Violations, WadmError
from wadm_grpc.domain.names import check_exchanges, check_symbols
from wadm_grpc.domain.stream_position import StreamPosition
from wadm_grpc.domain.trade import Trade
from wadm_grpc.ports import Clock, Subscription, TradeBus
from wadm_grpc.services.resume_tokens import FIELD, ResumeTokens
from wadm_grpc.services.trade_subscriptions import (
    Command,
    Ping,
    Pong,
    Refused,
    Subscribe,
    Subscribed,
    SymbolSelection,
)

MAX_SYMBOLS = 100
DEFAULT_HEARTBEAT_SECONDS = 15.0
MIN_HEARTBEAT_SECONDS = 1.0
MAX_HEARTBEAT_SECONDS = 60.0
# A healthy client takes a message within milliseconds; seconds of no progress mean its window is full.
DEFAULT_STALL_SECONDS = 5.0
# About 70 KB on the wire: bounds one pending write, and a big ingest batch becomes several messages.
DEFAULT_MAX_MESSAGE_TRADES = 1_000
# How soon a cut-off client may reconnect (google.rpc.RetryInfo).
RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a heartbeat interval; carries the server time and the resume token."""

    server_time_us: int
    resume_token: str = ""


@dataclass(frozen=True, slots=True)
class TradeMessage:
    """Trades for one message, and the resume token of the stream after them."""

    trades: list[Trade]
    resume_token: str


Event = TradeMessage | Heartbeat
Deliver = Callable[[Event], Awaitable[None]]
SubscriptionEvent = TradeMessage | Heartbeat | Subscribed | Pong | Refused
DeliverAny = Callable[[SubscriptionEvent], Awaitable[None]]
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Streams of this process: open now, cut off for falling behind since start, and ended since start."""

    live_streams: int
    cut_off_streams: int
    ended_streams: int = 0


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A validated StreamTrades request."""

    symbols: frozenset[str]
    exchanges: frozenset[str]
    heartbeat_seconds: float
    resume: StreamPosition | None = None


class _Delivery:
    """The write in progress, ended when it has waited `stall_seconds` or when the subscription ends.

    One timer per stream, re-armed lazily (only when it fires while a write is still in progress), not a
    timeout per message: a timer per message is heap work for every stream at every publish. Expiry
    cancels the writing task, which `StreamService._deliver` turns into the stream's error, as
    asyncio.timeout does (a cancellation from elsewhere still propagates)."""

    __slots__ = ("ended", "expired", "stall_seconds", "started", "task", "timer")

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.ended = False
        self.expired = False
        self.started: float | None = None  # loop time the write in progress began
        self.task: asyncio.Task[object] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        if self.task is None:
            self.task = asyncio.current_task()
        if self.timer is None:
            self.timer = loop.call_at(self.started + self.stall_seconds, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.started is None:
            return  # idle: the next write arms it again
        loop = asyncio.get_running_loop()
        due = self.started + self.stall_seconds
        if loop.time() >= due:
            self._expire()
        else:
            self.timer = loop.call_at(due, self._check)

    def _expire(self) -> None:
        if not self.expired and self.task is not None:
            self.expired = True
            self.task.cancel()

    def interrupt(self) -> None:
        self.ended = True
        if self.started is not None:
            self._expire()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class StreamService:
    """Live trade subscriptions, each ended as soon as its client stops keeping up."""

    def __init__(
        self,
        bus: TradeBus,
        clock: Clock,
        *,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        max_message_trades: int = DEFAULT_MAX_MESSAGE_TRADES,
        tokens: ResumeTokens | None = None,
    ) -> None:
        self._bus = bus
        self._tokens = tokens or ResumeTokens(secrets.token_bytes(32))
        self._clock = clock
        self._stall_seconds = stall_seconds
        self._max_message_trades = max_message_trades
        self._live = 0
        self._cut_off = 0
        self._ended = 0

    def stats(self) -> StreamStats:
        """Counters of this process."""
        return StreamStats(live_streams=self._live, cut_off_streams=self._cut_off, ended_streams=self._ended)

    def check(
        self,
        symbols: Sequence[str],
        exchanges: Sequence[str],
        heartbeat_seconds: float | None,
        resume_token: str = "",
    ) -> StreamRequest:
        """The request, or InvalidArgumentError naming every problem."""
        problems = Violations()
        names = set(check_symbols(symbols, problems))
        if len(names) > MAX_SYMBOLS:
            problems.add("symbols", f"at most {MAX_SYMBOLS} symbols per stream, got {len(names)}")
        selected = check_exchanges(exchanges, problems)
        interval = DEFAULT_HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        if not MIN_HEARTBEAT_SECONDS <= interval <= MAX_HEARTBEAT_SECONDS:
            problems.add(
                "heartbeat_interval",
                f"must be between {MIN_HEARTBEAT_SECONDS:g} and {MAX_HEARTBEAT_SECONDS:g} seconds",
            )
        resume = None
        if resume_token:
            try:
                resume = self._tokens.open(resume_token)
            except WadmError as error:
                if not isinstance(error, InvalidArgumentError):
                    raise
                problems.extend(error)
        problems.raise_if_any()
        return StreamRequest(frozenset(names), frozenset(selected), interval, resume)

    async def stream_trades(
        self, request: StreamRequest, deliver: Deliver, opened: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Hand batches of trades as they are ingested, and a Heartbeat after each idle interval, to
        `deliver` (which returns once the transport took the message), until the stream ends. `opened` is
        awaited once the subscription is live (before any event), so a caller can tell an accepted stream
        from a refused one without waiting for the first event.

        Raises ResourceExhaustedError (the client fell behind) or UnavailableError (shutdown). The
        subscription is released however it ends, cancellation included (which is re-raised).
        """
        subscription = self._bus.subscribe(request.symbols, request.exchanges)
        delivery = _Delivery(self._stall_seconds)
        subscription.on_end(delivery.interrupt)
        with self._counted(subscription, delivery):
            if request.resume is not None:
                await self._bus.resume(subscription, request.resume)  # no await before: nothing slips between
            if opened is not None:
                await opened()
            issue, limit = self._tokens.issue, self._max_message_trades
            while True:
                batch = await subscription.get(request.heartbeat_seconds, limit)
                if batch is None:
                    beat = Heartbeat(self._clock.now_us(), issue(subscription.idle_position()))
                    await self._deliver(beat, deliver, delivery, subscription)
                    continue
                message = TradeMessage(batch, issue(subscription.position()))
                await self._deliver(message, deliver, delivery, subscription)

    @contextlib.contextmanager
    def _counted(self, subscription: Subscription, delivery: _Delivery) -> Iterator[None]:
        """One live stream for as long as the block runs; a cut-off counts; the subscription is released."""
        self._live += 1
        try:
            yield
        except ResourceExhaustedError:
            self._cut_off += 1
            raise
        finally:
            self._live -= 1
            self._ended += 1
            delivery.stop()
            subscription.close()

    async def subscribe_trades(self, commands: AsyncIterator[Command], deliver: DeliverAny) -> None:
        """SubscribeTrades: apply the client's `commands` as they come (each answered: Subscribed, Pong or
        Refused) while handing trades of the current symbols and heartbeats to `deliver`, one event at a
        time, under the same slow-consumer policy as `stream_trades`. Changes go through one bus
        subscription (`Subscription.change`), so a symbol that stays loses and repeats nothing. When the
        client stops sending, the stream goes on until it is cancelled or ended by the bus.
        """
        subscription = self._bus.subscribe(frozenset(), frozenset())
        delivery = _Delivery(self._stall_seconds)
        subscription.on_end(delivery.interrupt)
        selection = SymbolSelection()
        heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        issue, limit = self._tokens.issue, self._max_message_trades
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        # Two waits at once (the client's next command, the bus's next trades), each a task kept across
        # rounds, so neither is lost when the other wins.
        reader: asyncio.Task[Command | None] | None = asyncio.ensure_future(_next_command(commands))
        fetch: asyncio.Task[list[Trade] | None] | None = None
        with self._counted(subscription, delivery):
            try:
                while True:
                    if fetch is None:
                        fetch = asyncio.ensure_future(subscription.get(MAX_HEARTBEAT_SECONDS, limit))
                    waits: set[asyncio.Future[object]] = {fetch} if reader is None else {fetch, reader}  # type: ignore[arg-type]
                    idle_left = max(0.0, last_sent + heartbeat_seconds - loop.time())
                    done, _ = await asyncio.wait(waits, timeout=idle_left, return_when=asyncio.FIRST_COMPLETED)
                    if fetch in done:  # first: trades taken before a command in the same round predate it
                        batch, fetch = fetch.result(), None
                        wanted = selection.wanted(batch) if batch else []
                        if wanted:
                            message = TradeMessage(wanted, issue(subscription.position()))
                            await self._deliver(message, deliver, delivery, subscription)
                            last_sent = loop.time()
                    if reader is not None and reader in done:
                        command = reader.result()
                        reader = None if command is None else asyncio.ensure_future(_next_command(commands))
                        if command is not None:
                            answer, heartbeat_seconds, resume = self._apply(
                                command, selection, subscription, heartbeat_seconds
                            )
                            if resume is not None:  # right after the change: nothing slips between
                                await self._bus.resume(subscription, resume)
                            answer = dataclasses.replace(answer, resume_token=issue(subscription.position()))
                            await self._deliver(answer, deliver, delivery, subscription)
                            last_sent = loop.time()
                    if not done:
                        beat = Heartbeat(self._clock.now_us(), issue(subscription.idle_position()))
                        await self._deliver(beat, deliver, delivery, subscription)
                        last_sent = loop.time()
            finally:
                for task in (reader, fetch):
                    if task is not None:
                        task.cancel()

    async def _deliver(
        self, event: E, deliver: Callable[[E], Awaitable[None]], delivery: _Delivery, subscription: Subscription
    ) -> None:
        if delivery.ended:  # ended between the read and this write: do not start it
            await subscription.get(0)  # raises the error that ended it (cut off, shutdown)
        delivery.begin()
        try:
            await deliver(event)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not delivery.expired or task is None or task.uncancel() > 0:
                raise  # the client left, or the server is stopping the call
            delivery.expired = False
            if delivery.ended:
                await subscription.get(0)  # raises the error that ended it (cut off, shutdown)
            raise ResourceExhaustedError(
                f"stream's client took no data for {self._stall_seconds:g} s and was ended; reconnect",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            ) from None
        finally:
            delivery.started = None

    def _apply(
        self, command: Command, selection: SymbolSelection, subscription: Subscription, heartbeat_seconds: float
    ) -> tuple[Subscribed | Pong | Refused, float, StreamPosition | None]:
        """The answer to `command`, the heartbeat interval after it, and where to resume from (a first
        subscribe with a resume token); a change reaches the bus at once."""
        resume = None
        try:
            if isinstance(command, Subscribe) and command.resume_token:
                if selection.symbols:
                    raise InvalidArgumentError.of(FIELD, "only in the stream's first subscribe")
                resume = self._tokens.open(command.resume_token)
        except WadmError as error:
            return Refused(error), heartbeat_seconds, None
        answer, heartbeat_seconds = _apply(command, selection, subscription, heartbeat_seconds)
        return answer, heartbeat_seconds, (resume if isinstance(answer, Subscribed) else None)


async def _next_command(commands: AsyncIterator[Command]) -> Command | None:
    return await anext(commands, None)


def _apply(
    command: Command, selection: SymbolSelection, subscription: Subscription, heartbeat_seconds: float
) -> tuple[Subscribed | Pong | Refused, float]:
    """The answer to `command` and the heartbeat interval after it; a change reaches the bus at once."""
    if isinstance(command, Ping):
        return Pong(), heartbeat_seconds
    if isinstance(command, Refused):
        return command, heartbeat_seconds
    try:
        if isinstance(command, Subscribe):
            problems = Violations()
            interval = command.heartbeat_seconds
            if interval is not None and not MIN_HEARTBEAT_SECONDS <= interval <= MAX_HEARTBEAT_SECONDS:
                problems.add(
                    "heartbeat_interval",
                    f"must be between {MIN_HEARTBEAT_SECONDS:g} and {MAX_HEARTBEAT_SECONDS:g} seconds",
                )
            selection.subscribe(command, problems)
            heartbeat_seconds = heartbeat_seconds if interval is None else interval
        else:
            selection.unsubscribe(command)
    except WadmError as error:
        return Refused(error), heartbeat_seconds
    subscription.change(selection.symbols, selection.bus_exchanges)
    return selection.subscribed(), heartbeat_seconds
