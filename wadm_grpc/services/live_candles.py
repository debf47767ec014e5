"""StreamCandles: the in-progress candle of one key as it changes, conflated, then one final per bucket.

Streams of the same (symbol, exchanges, timeframe) share one CandleFeed (services/candle_feed.py): one
bus subscription, one store query per change, one rendering per distinct message. Each stream keeps
only the latest in-progress state (never a backlog) plus the finals it has not sent yet, and sends the
latest at most every `update_interval`. Finals are never held back. A client whose transport takes no
message for `stall_seconds` is cut off (RESOURCE_EXHAUSTED), as in StreamTrades.

Every message carries a resume token (services/candle_resume.py): "every final up to bucket B was
delivered". A stream opened with one first sends, from the store, the finals of the buckets after B that
the feed published before the stream joined, then what the feed hands it (docs/streams.md, "Resume").
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wadm_grpc.domain.aggregate import Aggregate, Candle
from wadm_grpc.domain.errors import InvalidArgumentError, OutOfRangeError, ResourceExhaustedError, Violations
from wadm_grpc.domain.names import check_market
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import CandleQuery, Clock, TradeBus, TradeStore
from wadm_grpc.services.candle_feed import CandleFeed, CandleUpdate, Listener
from wadm_grpc.services.candle_resume import FIELD, CandleResumeTokens
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
# A resume replays at most this many buckets' finals from the store; an older token is OUT_OF_RANGE.
MAX_RESUME_BUCKETS = 1000
RESUME_EXPIRED = "RESUME_TOKEN_EXPIRED"  # as the trade streams' (bus/memory.py)

FeedKey = tuple[str, tuple[str, ...], Timeframe]


@dataclass(frozen=True, slots=True)
class CandleMessage:
    """A candle state for one stream, with that stream's resume token."""

    update: CandleUpdate
    resume_token: str

    @property
    def candle(self) -> Candle:
        """The candle."""
        return self.update.candle


LiveEvent = CandleMessage | Heartbeat


@dataclass(frozen=True, slots=True)
class LiveCandlesRequest:
    """A validated StreamCandles request."""

    symbol: str
    exchanges: tuple[str, ...]
    timeframe: Timeframe
    update_seconds: float
    heartbeat_seconds: float
    resume_after_us: int | None = None  # from the request's resume token: finals up to this bucket were sent

    @property
    def key(self) -> FeedKey:
        """The key its feed is shared by."""
        return (self.symbol, self.exchanges, self.timeframe)


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
        tokens: CandleResumeTokens | None = None,
    ) -> None:
        self._tokens = tokens or CandleResumeTokens(secrets.token_bytes(32))
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

    def check(
        self,
        symbol: str,
        exchanges: Sequence[str],
        timeframe: Timeframe | None,
        update_seconds: float | None,
        heartbeat_seconds: float | None,
        problems: Violations | None = None,
        resume_token: str = "",
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
        resume_after: int | None = None
        if resume_token and timeframe is not None:
            try:
                resume_after = self._tokens.open(resume_token, (name, selected, timeframe))
            except InvalidArgumentError as error:
                problems.extend(error)
        problems.raise_if_any()
        assert timeframe is not None, "a missing timeframe is among the problems"
        return LiveCandlesRequest(name, selected, timeframe, update, heartbeat, resume_after)

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
        key = request.key
        feed = self._join(key, listener)
        loop = asyncio.get_running_loop()
        try:
            # Finals of buckets before `joined` were published before this stream joined; the rest reach it.
            joined = feed.published_before()
            size = request.timeframe.micros
            replay: list[CandleUpdate] = []
            delivered = joined - size  # a fresh stream: "from here on"
            if request.resume_after_us is not None:
                replay = await self._replay(request, request.resume_after_us, joined)
                delivered = request.resume_after_us
            replayed = {update.candle.open_time_us: update.candle.ohlcv for update in replay}
            already_sent = request.resume_after_us if request.resume_after_us is not None else delivered
            if opened is not None:
                await opened()
            last_update = float("-inf")
            last_sent = loop.time()
            while True:
                listener.wake.clear()
                if listener.error is not None:
                    raise listener.error
                update: CandleUpdate | None = replay.pop(0) if replay else None
                if update is None:
                    update = listener.take_final()
                    if update is not None and not _news(update, replayed, joined, already_sent):
                        continue  # a final the client has (replayed from the store, or before its token)
                if update is None and listener.latest is not None:
                    update_left = last_update + request.update_seconds - loop.time()
                    if update_left <= 0:
                        update, listener.latest = listener.latest, None
                        last_update = loop.time()
                else:
                    update_left = 0.0
                event: LiveEvent | None = None
                if not replay and not listener.finals:  # it has had every final the feed published
                    delivered = max(delivered, feed.published_before() - size)
                if update is not None:
                    if update.candle.closed:
                        delivered = max(delivered, update.candle.open_time_us)
                    event = CandleMessage(update, self._tokens.issue(key, delivered))
                idle_left = last_sent + request.heartbeat_seconds - loop.time()
                if event is None and idle_left <= 0:
                    event = Heartbeat(self._clock.now_us(), self._tokens.issue(key, delivered))
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

    async def _replay(self, request: LiveCandlesRequest, after_us: int, before_us: int) -> list[CandleUpdate]:
        """The finals of the buckets after `after_us` and before `before_us`, from the store (the query
        GetCandles runs); OutOfRangeError if that is more than MAX_RESUME_BUCKETS buckets."""
        size = request.timeframe.micros
        first, last = after_us + size, before_us - size
        if last < first:
            return []
        if (last - first) // size + 1 > MAX_RESUME_BUCKETS:
            available = datetime.fromtimestamp((before_us - MAX_RESUME_BUCKETS * size) / 1e6, UTC)
            raise OutOfRangeError(
                f"{FIELD}: more than {MAX_RESUME_BUCKETS} buckets have closed since this token; fetch the "
                "missed candles with GetCandles, then stream without a token",
                reason=RESUME_EXPIRED,
                metadata={"available_from": available.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
            )
        query = CandleQuery(
            request.symbol, request.exchanges, request.timeframe, first, last, MAX_RESUME_BUCKETS, newest_first=False
        )
        rows: list[tuple[int, Aggregate]] = list(await self._store.candles(query))
        return [
            CandleUpdate(Candle(request.timeframe, start, ohlcv, closed=True))
            for start, ohlcv in sorted(rows, key=lambda row: row[0])
            if first <= start <= last
        ]

    def _join(self, key: FeedKey, listener: Listener) -> CandleFeed:
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
        return feed

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


def _news(update: CandleUpdate, replayed: dict[int, Aggregate], joined: int, already_sent: int) -> bool:
    """False for a final the client has: the same state was just replayed from the store, or it is a
    first final the client had before its token (only when the token is ahead of this process's feed)."""
    candle = update.candle
    if not candle.closed:
        return True
    if replayed.get(candle.open_time_us) == candle.ohlcv:
        return False
    return not joined <= candle.open_time_us <= already_sent
