"""One live candle computation per (symbol, exchanges, timeframe), shared by every stream of that key.

The feed does not aggregate trades itself: the bus only tells it which buckets changed, and it asks the
store for those buckets (the query GetCandles runs), so a live candle cannot drift from GetCandles. It
subscribes to the bus before its first query, so no trade falls between the two.

A bucket closes when the feed's clock passes its end plus `grace_us`; then its final candle goes out
once. A trade that arrives later for a closed bucket sends that bucket's corrected final (only if the
candle changed). Updates of the open bucket are queried at most every `refresh_seconds` (the fastest
stream's update interval): one query per key, however many streams listen.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from wadm_grpc.domain.aggregate import Aggregate, Candle
from wadm_grpc.domain.errors import ResourceExhaustedError, WadmError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import CandleQuery, Clock, Subscription, TradeBus, TradeStore

log = logging.getLogger("wadm_grpc.live_candles")

# How often the feed re-reads its clock at the latest (a clock set by hand, in tests, wakes nobody).
CLOCK_POLL_SECONDS = 0.25
# Finals remembered per feed, to send a late correction only when the candle really changed.
REMEMBERED_FINALS = 64
# A store query that failed (shed, unreachable) is asked again after this long.
RETRY_SECONDS = 0.5


class CandleUpdate:
    """One state of a bucket's candle, handed to every stream of the key and rendered once for all."""

    __slots__ = ("_rendered", "candle")

    def __init__(self, candle: Candle) -> None:
        self.candle = candle
        self._rendered: bytes | None = None

    def rendered(self, render: Callable[[Candle], bytes]) -> bytes:
        """`render(candle)`, computed by the first stream that sends it (one API renderer per process)."""
        if self._rendered is None:
            self._rendered = render(self.candle)
        return self._rendered


class Listener:
    """One stream's mailbox: the finals it has not sent yet, and ONE latest in-progress state (no queue)."""

    __slots__ = ("error", "finals", "latest", "refresh_seconds", "wake")

    def __init__(self, refresh_seconds: float) -> None:
        self.refresh_seconds = refresh_seconds
        self.finals: dict[int, CandleUpdate] = {}  # bucket open time -> its newest final
        self.latest: CandleUpdate | None = None
        self.error: Exception | None = None
        self.wake = asyncio.Event()

    def offer(self, update: CandleUpdate) -> None:
        """Keep `update`: a final replaces an unsent final of its bucket; an in-progress state replaces the
        previous one (conflation), and is dropped if a final of its bucket or a later one came."""
        open_time = update.candle.open_time_us
        if update.candle.closed:
            self.finals[open_time] = update
            if self.latest is not None and self.latest.candle.open_time_us <= open_time:
                self.latest = None
        elif not self.finals or open_time > max(self.finals):
            self.latest = update
        self.wake.set()

    def take_final(self) -> CandleUpdate | None:
        """The oldest unsent final, if any."""
        if not self.finals:
            return None
        return self.finals.pop(min(self.finals))

    def end(self, error: Exception) -> None:
        """The feed ended: the stream raises `error`."""
        self.error = error
        self.wake.set()


class CandleFeed:
    """The shared computation of one key; runs as a task while it has listeners."""

    def __init__(
        self,
        *,
        symbol: str,
        exchanges: tuple[str, ...],
        timeframe: Timeframe,
        store: TradeStore,
        bus: TradeBus,
        clock: Clock,
        grace_us: int,
    ) -> None:
        self.symbol = symbol
        self.exchanges = exchanges
        self.timeframe = timeframe
        self._store = store
        self._bus = bus
        self._clock = clock
        self._grace_us = grace_us
        self.listeners: set[Listener] = set()
        self._current: CandleUpdate | None = None
        self._finals: OrderedDict[int, Aggregate] = OrderedDict()
        self._dirty_open = True
        # The open bucket (set by start()), the closed buckets whose final is still to be (re)sent, and
        # among them those whose first final is (not a late correction).
        self.open_bucket = 0
        self.closing: set[int] = set()
        self.first_finals_due: set[int] = set()
        self.task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    def add(self, listener: Listener) -> None:
        """Start `listener` with the open bucket's state as last computed (it is queried again if changed)."""
        self.listeners.add(listener)
        if self._current is not None:
            listener.offer(self._current)

    def _publish(self, update: CandleUpdate) -> None:
        for listener in self.listeners:
            listener.offer(update)

    def start(self) -> None:
        """Subscribe to the bus at once (no trade ingested from now on is missed), then compute in a task."""
        self._subscription = self._bus.subscribe(frozenset({self.symbol}), frozenset(self.exchanges))
        self.open_bucket = self.timeframe.bucket_start(self._clock.now_us() - self._grace_us)
        self.task = asyncio.create_task(self._run(), name=f"candle-feed {self.symbol} {self.timeframe.label}")

    def stop(self) -> None:
        """Stop computing (the last listener left)."""
        if self.task is not None:
            self.task.cancel()

    def published_before(self) -> int:
        """A bucket open time B such that every final of a bucket before B has been published already and
        none at or after B has (for the first time): a stream that joins now gets those from the feed, and
        a resume fetches the older ones from the store (services/live_candles.py). Pending corrections of
        older buckets do not count: they reach a joining stream anyway."""
        return min(self.first_finals_due | {self.open_bucket})

    @property
    def ended(self) -> bool:
        """True once the computation stopped."""
        return self.task is not None and self.task.done()

    async def _run(self) -> None:
        """Compute until cancelled; an error that ends the feed (shutdown) ends every listener with it."""
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # UnavailableError at shutdown; anything else becomes INTERNAL
            for listener in self.listeners:
                listener.end(error)
        finally:
            if self._subscription is not None:
                self._subscription.close()

    async def _loop(self) -> None:
        timeframe, size = self.timeframe, self.timeframe.micros
        loop = asyncio.get_running_loop()
        first_open = self.open_bucket
        closing = self.closing  # closed buckets whose final is to be (re)sent
        ahead: set[int] = set()  # buckets after the open one that already have trades
        next_refresh = retry_at = 0.0
        while True:
            now_us = self._clock.now_us()
            open_bucket = self.open_bucket
            if now_us - self._grace_us >= open_bucket + size:  # the open bucket (and any skipped) closed
                new_open = timeframe.bucket_start(now_us - self._grace_us)
                firsts = {open_bucket} | {bucket for bucket in ahead if bucket < new_open}
                closing |= firsts
                self.first_finals_due |= firsts
                self._dirty_open = True  # the new bucket may hold trades already
                ahead = {bucket for bucket in ahead if bucket > new_open}
                # the due finals are recorded before the open bucket moves (published_before() stays exact)
                open_bucket = self.open_bucket = new_open
                self._current = None
            failed = False
            for bucket in sorted(closing) if loop.time() >= retry_at else ():
                if await self._send_final(bucket):
                    closing.discard(bucket)
                    self.first_finals_due.discard(bucket)
                else:  # the finals go out in bucket order: a later one waits for this one
                    failed = True
                    break
            if self._dirty_open and loop.time() >= max(next_refresh, retry_at):
                self._dirty_open = not await self._send_open(open_bucket)
                failed = failed or self._dirty_open
                next_refresh = loop.time() + min((item.refresh_seconds for item in self.listeners), default=1.0)
            if failed:
                retry_at = loop.time() + RETRY_SECONDS
            wait = CLOCK_POLL_SECONDS
            if self._dirty_open or closing:
                wait = min(wait, max(0.0, max(next_refresh if self._dirty_open else 0.0, retry_at) - loop.time()))
            wait = min(wait, max(0.0, (open_bucket + size + self._grace_us - now_us) / 1e6))
            assert self._subscription is not None, "started"
            try:
                batch = await self._subscription.get(wait)
            except ResourceExhaustedError:  # the feed fell behind the bus: start over, nothing is lost
                self._subscription.close()
                self._subscription = self._bus.subscribe(frozenset({self.symbol}), frozenset(self.exchanges))
                self._dirty_open = True
                continue
            for trade in batch or ():
                bucket = timeframe.bucket_start(trade.time_us)
                if bucket == open_bucket:
                    self._dirty_open = True
                elif bucket > open_bucket:
                    ahead.add(bucket)
                elif bucket >= first_open:
                    closing.add(bucket)  # a late trade: a corrected final

    async def _aggregate(self, open_time: int) -> tuple[bool, Aggregate | None]:
        """(whether the store answered, the bucket's aggregate or None when empty)."""
        query = CandleQuery(self.symbol, self.exchanges, self.timeframe, open_time, open_time, 1, newest_first=False)
        try:
            rows = await self._store.candles(query)
        except (WadmError, OSError) as error:  # shed or unreachable: the next round asks again
            log.warning("live candle query failed", extra={"symbol": self.symbol, "error": str(error)})
            return False, None
        return True, next((ohlcv for start, ohlcv in rows if start == open_time), None)

    async def _send_open(self, open_time: int) -> bool:
        answered, ohlcv = await self._aggregate(open_time)
        if ohlcv is not None and (self._current is None or self._current.candle.ohlcv != ohlcv):
            self._current = CandleUpdate(Candle(self.timeframe, open_time, ohlcv, closed=False))
            self._publish(self._current)
        return answered

    async def _send_final(self, open_time: int) -> bool:
        answered, ohlcv = await self._aggregate(open_time)
        if ohlcv is not None and self._finals.get(open_time) != ohlcv:
            self._finals[open_time] = ohlcv
            while len(self._finals) > REMEMBERED_FINALS:
                self._finals.popitem(last=False)
            self._publish(CandleUpdate(Candle(self.timeframe, open_time, ohlcv, closed=True)))
        return answered
