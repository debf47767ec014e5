"""StreamCandles: the in-progress candle of one key as it changes, conflated, then one final per bucket.

Streams of the same (symbol, exchanges, timeframe) share one CandleFeed (services/candle_feed.py): one
bus subscription, one store query per change, one rendering per distinct message. Each stream keeps
only the latest in-progress state (never a backlog) plus the finals it has not sent yet, and sends the
latest at most every `update_interval`. Finals are never held back. A client whose transport takes no
message for `stall_seconds` is cut off (RESOURCE_EXHAUSTED), as in StreamTrades.

Resume tokens are not part of this stream yet (see docs/streams.md): the request and the response
have no field for them, so they can be added without renumbering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import ResourceExhaustedError, Violations
from wadm_grpc.domain.names import check_market
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import Clock, TradeBus, TradeStore
from wadm_grpc.services.candle_feed import CandleFeed, CandleUpdate, Listener
from wadm_grpc.services.streaming import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_STALL_SECONDS,
    MAX_HEARTBEAT_SECONDS,
    MIN_HEARTBEAT_SECONDS,
    RETRY_AFTER_SECONDS,
    Heartbeat,
)

DEFAULT_UPDATE_SECONDS = 1.0
MIN_UPDATE_SECONDS = 0.1
MAX_UPDATE_SECONDS = 60.0
# A bucket's final goes out this long after its end by the server clock, so trades a collector delivers
# a little late still make the first final rather than a correction.
DEFAULT_CLOSE_GRACE_SECONDS = 1.0

LiveEvent = CandleUpdate | Heartbeat
FeedKey = tuple[str, tuple[str, ...], Timeframe]


@dataclass(frozen=True, slots=True)
class LiveCandlesRequest:
    """A validated StreamCandles request."""

    symbol: str
    exchanges: tuple[str, ...]
    timeframe: Timeframe
    update_seconds: float
    heartbeat_seconds: float


class LiveCandleService:
    """Live candles, one shared computation per key."""

    def __init__(
        self,
        store: TradeStore,
        bus: TradeBus,
        clock: Clock,
        *,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        close_grace_seconds: float = DEFAULT_CLOSE_GRACE_SECONDS,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._stall_seconds = stall_seconds
        self._grace_us = int(close_grace_seconds * 1e6)
        self._feeds: dict[FeedKey, CandleFeed] = {}

    @property
    def feeds(self) -> int:
        """Shared computations running now (one per distinct key being streamed)."""
        return len(self._feeds)

    @staticmethod
    def check(
        symbol: str,
        exchanges: Sequence[str],
        timeframe: Timeframe | None,
        update_seconds: float | None,
        heartbeat_seconds: float | None,
        problems: Violations | None = None,
    ) -> LiveCandlesRequest:
        """The request, or InvalidArgumentError naming every problem (`problems`: found while converting)."""
        problems = problems or Violations()
        name, selected = check_market(symbol, exchanges, problems)
        update = DEFAULT_UPDATE_SECONDS if update_seconds is None else update_seconds
        if not MIN_UPDATE_SECONDS <= update <= MAX_UPDATE_SECONDS:
            problems.add(
                "update_interval", f"must be between {MIN_UPDATE_SECONDS:g} and {MAX_UPDATE_SECONDS:g} seconds"
            )
        heartbeat = DEFAULT_HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        if not MIN_HEARTBEAT_SECONDS <= heartbeat <= MAX_HEARTBEAT_SECONDS:
            problems.add(
                "heartbeat_interval",
                f"must be between {MIN_HEARTBEAT_SECONDS:g} and {MAX_HEARTBEAT_SECONDS:g} seconds",
            )
        problems.raise_if_any()
        assert timeframe is not None, "a missing timeframe is among the problems"
        return LiveCandlesRequest(name, selected, timeframe, update, heartbeat)

    async def stream_candles(
        self,
        request: LiveCandlesRequest,
        deliver: Callable[[LiveEvent], Awaitable[None]],
        opened: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Hand candle updates and heartbeats to `deliver` (which returns once the transport took the
        message) until the stream ends; `opened` is awaited once the stream is accepted. Raises
        ResourceExhaustedError (the client stopped taking data) or what ended the feed (UnavailableError
        at shutdown). The stream leaves its feed however it ends."""
        listener = Listener(request.update_seconds)
        key = (request.symbol, request.exchanges, request.timeframe)
        self._join(key, listener)
        loop = asyncio.get_running_loop()
        try:
            if opened is not None:
                await opened()
            last_update = float("-inf")
            last_sent = loop.time()
            while True:
                listener.wake.clear()
                if listener.error is not None:
                    raise listener.error
                event: LiveEvent | None = listener.take_final()
                update_left = 0.0
                if event is None and listener.latest is not None:
                    update_left = last_update + request.update_seconds - loop.time()
                    if update_left <= 0:
                        event, listener.latest = listener.latest, None
                        last_update = loop.time()
                idle_left = last_sent + request.heartbeat_seconds - loop.time()
                if event is None and idle_left <= 0:
                    event = Heartbeat(self._clock.now_us())
                if event is not None:
                    await self._deliver(event, deliver)
                    last_sent = loop.time()
                    continue
                wait = idle_left if listener.latest is None else min(idle_left, update_left)
                try:
                    async with asyncio.timeout(wait):
                        await listener.wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._leave(key, listener)

    def _join(self, key: FeedKey, listener: Listener) -> None:
        feed = self._feeds.get(key)
        if feed is None or feed.ended:  # none yet, or one the bus ended (shutdown)
            symbol, exchanges, timeframe = key
            feed = CandleFeed(
                symbol=symbol,
                exchanges=exchanges,
                timeframe=timeframe,
                store=self._store,
                bus=self._bus,
                clock=self._clock,
                grace_us=self._grace_us,
            )
            self._feeds[key] = feed
            feed.start()
        feed.add(listener)

    def _leave(self, key: FeedKey, listener: Listener) -> None:
        feed = self._feeds.get(key)
        if feed is None:
            return
        feed.listeners.discard(listener)
        if not feed.listeners:
            del self._feeds[key]
            feed.stop()

    async def _deliver(self, event: LiveEvent, deliver: Callable[[LiveEvent], Awaitable[None]]) -> None:
        try:
            async with asyncio.timeout(self._stall_seconds):
                await deliver(event)
        except TimeoutError:
            raise ResourceExhaustedError(
                f"stream's client took no data for {self._stall_seconds:g} s and was ended; reconnect",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            ) from None
