"""RedisTradeBus: trades fan out across processes through one Redis stream, read once per process.

Publishing hands trades to this process's subscribers at once and queues them for an in-order writer task;
one reader task per process follows the stream and feeds the other processes' trades to the same
in-memory fan-out. Neither waits on a subscriber, and ingest never waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from redis.typing import EncodableT, FieldT

from wadm_grpc.bus.memory import (
    DEFAULT_BUFFER_TRADES,
    DEFAULT_RETENTION_SECONDS,
    REPLAY_PAGE_CHUNKS,
    InProcessTradeBus,
    MemorySubscription,
    expired,
)
from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.domain.stream_position import (
    ZERO_ID,
    Chunk,
    StreamId,
    StreamPosition,
    format_stream_id,
    parse_stream_id,
)
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_batch import symbols_of
from wadm_grpc.ports import Subscription
from wadm_grpc.redis_connection import DEFAULT_TIMEOUT_SECONDS, REDIS_FAILURES, redis_client

log = logging.getLogger(__name__)

DEFAULT_STREAM_KEY = "wadm:trades"
# Entries (each up to ENTRY_TRADES trades) Redis keeps for readers that fall behind or reconnect.
DEFAULT_MAXLEN_ENTRIES = 10_000
# Trades queued for Redis while it is unreachable; beyond this the oldest are dropped (and counted).
DEFAULT_OUTBOX_TRADES = 100_000
DEFAULT_BLOCK_SECONDS = 1.0
DEFAULT_RETRY_SECONDS = 0.5
WRITE_BATCH_ENTRIES = 100
# Each entry is decoded and fanned out on the loop: keep one read's work small.
READ_BATCH_ENTRIES = 20
KNOWN_ORIGINS = 1_024
# How long a resume waits for this process's queued trades to reach Redis before it answers UNAVAILABLE.
RESUME_FLUSH_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RedisBusStats:
    """Counters since start. `pending_trades` wait for Redis; `dropped_trades` never reached it."""

    published_trades: int
    received_trades: int
    pending_trades: int
    dropped_trades: int
    publish_errors: int
    read_errors: int


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    payload: bytes
    trades: int
    symbols: bytes  # comma-separated: a replay skips entries of other symbols without decoding them


def encode_trades(trades: Iterable[Trade]) -> bytes:
    """Compact JSON rows; decimals as their exact strings (scale kept digit for digit)."""
    rows = [[t.exchange, t.symbol, t.trade_id, str(t.price), str(t.quantity), t.side.value, t.time_us] for t in trades]
    return json.dumps(rows, separators=(",", ":")).encode()


def decode_trades(payload: bytes) -> list[Trade]:
    """The trades of `encode_trades`; raises ValueError, TypeError or KeyError on a malformed payload."""
    rows: list[list[Any]] = json.loads(payload)
    return [
        Trade(str(ex), str(sym), str(tid), Decimal(str(price)), Decimal(str(qty)), Side(side), int(time_us))
        for ex, sym, tid, price, qty, side, time_us in rows
    ]


class RedisTradeBus:
    """TradeBus across processes. `await start()` before use; `await close()` ends every subscription."""

    def __init__(
        self,
        url: str,
        *,
        stream_key: str = DEFAULT_STREAM_KEY,
        buffer_trades: int = DEFAULT_BUFFER_TRADES,
        maxlen_entries: int = DEFAULT_MAXLEN_ENTRIES,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        outbox_trades: int = DEFAULT_OUTBOX_TRADES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self._origin = uuid.uuid4().hex.encode()
        self._local = InProcessTradeBus(buffer_trades=buffer_trades, origin=self._origin.decode(), mark=self._mark)
        self._local.epoch = ""  # unknown until Redis answers (a position without an epoch cannot be resumed)
        self._key = stream_key
        self._epoch_key = f"{stream_key}:epoch"
        self._maxlen = maxlen_entries
        self._retention_ms = round(retention_seconds * 1000)
        self._outbox_limit = outbox_trades
        self._block_ms = round(block_seconds * 1000)
        self._retry_seconds = retry_seconds
        self._writer = redis_client(url, timeout_seconds=timeout_seconds, max_connections=2)
        # The reader blocks in XREAD for block_seconds: its socket must wait longer than that.
        self._reader = redis_client(url, timeout_seconds=block_seconds + 1.0, max_connections=2)
        self._replayer = redis_client(url, timeout_seconds=max(timeout_seconds, 1.0), max_connections=8)
        self._outbox: deque[_Entry] = deque()
        self._outbox_size = 0
        self._written_seq = 0  # own chunks up to this seq left the outbox (written, or dropped)
        self._progress = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._last_id: bytes | None = None
        # Highest entry sequence seen per origin: a writer that re-sends after a failed pipeline is ignored.
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._dropping = False
        self._published = self._received = self._dropped = self._publish_errors = self._read_errors = 0

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions in this process."""
        return self._local.subscriber_count

    async def wait_for_subscribers(self, count: int) -> None:
        """Return once exactly `count` subscriptions are live in this process (tests and benchmarks)."""
        await self._local.wait_for_subscribers(count)

    async def start(self) -> None:
        """Start the reader at the stream's current end (if Redis answers; else once it does) and the writer."""
        if self._tasks:
            return
        with contextlib.suppress(*REDIS_FAILURES):
            await self._load_epoch()
            self._last_id = await self._tail_id()
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="redis-bus-reader"),
            asyncio.create_task(self._write_loop(), name="redis-bus-writer"),
        ]

    async def publish(self, trades: Sequence[Trade]) -> None:
        """Deliver to this process's subscribers now; queue for the other processes. Never waits on Redis."""
        chunks = self._local.chunks(trades)
        self._local.deliver(chunks)
        if self._closed or not chunks:
            return
        for chunk in chunks:
            symbols = ",".join(sorted(symbols_of(chunk.trades))).encode()
            self._outbox.append(_Entry(chunk.seq, encode_trades(chunk.trades), len(chunk.trades), symbols))
            self._outbox_size += len(chunk.trades)
        while self._outbox_size > self._outbox_limit and len(self._outbox) > 1:
            dropped = self._outbox.popleft()
            self._outbox_size -= dropped.trades
            self._dropped += dropped.trades
            self._written_seq = dropped.seq
            if not self._dropping:
                log.warning("redis bus outbox full; other processes miss the oldest trades until redis is back")
                self._dropping = True
        self._drained.clear()
        self._wake_writer.set()

    def subscribe(self, symbols: frozenset[str], exchanges: frozenset[str]) -> MemorySubscription:
        """A subscription to trades of `symbols` on `exchanges` from every process."""
        return self._local.subscribe(symbols, exchanges)

    async def resume(self, subscription: Subscription, position: StreamPosition) -> None:
        """Make `subscription` (just subscribed or changed) replay the stream after `position`, then go on live.

        Live chunks are held from now; this process's chunks published before now reach Redis first (bounded
        wait); then the stream after the position is read page by page (XRANGE) as the subscriber takes it.
        OutOfRangeError past retention (or another incarnation of the stream); UnavailableError without Redis.
        """
        if not isinstance(subscription, MemorySubscription):
            raise TypeError(f"not a subscription of this bus: {subscription!r}")
        subscription.hold(position)
        published = self._local.mark()[1]
        try:
            if not self._local.epoch or position.epoch != self._local.epoch:
                first = await self._replayer.xrange(self._key, count=1)
                raise expired(_time_us(first), "is of another incarnation of the trade stream (Redis lost it)")
            await self._flushed(published)
            self._check_retained(await self._replayer.xinfo_stream(self._key), position.stream_id)
        except REDIS_FAILURES as error:
            subscription.close()
            raise UnavailableError("trade history (Redis) unreachable; retry", retry_after_seconds=1.0) from error
        except Exception:
            subscription.close()
            raise
        subscription.replay_from(_StreamReplay(self, position.stream_id, subscription))

    async def _flushed(self, seq: int) -> None:
        """Return once own chunks up to `seq` left the outbox; UnavailableError after RESUME_FLUSH_SECONDS."""
        try:
            async with asyncio.timeout(RESUME_FLUSH_SECONDS):
                while self._written_seq < seq:
                    await self._progress.wait()
        except TimeoutError:
            raise UnavailableError("trades are still on their way to Redis; retry", retry_after_seconds=1.0) from None

    def _check_retained(self, info: Any, after: StreamId) -> None:
        """OutOfRangeError if the stream no longer reaches back to `after`: something was trimmed and the
        oldest entry left is newer (trimming goes oldest first, so entries after `after` may be gone)."""
        fields = {_as_bytes(k).decode(): v for k, v in info.items()} if isinstance(info, dict) else {}
        added, length = int(fields.get("entries-added") or 0), int(fields.get("length") or 0)
        if added <= length:
            return  # nothing was ever trimmed
        first = fields.get("first-entry")
        if first:
            oldest = parse_stream_id(_as_bytes(first[0]))
            if oldest > after:
                raise expired(oldest[0] * 1000, "is older than the stream retention (WADM_STREAM_RETENTION_SECONDS)")
        elif parse_stream_id(_as_bytes(fields.get("last-generated-id") or b"0-0")) > after:
            raise expired(None, "is older than the stream retention (WADM_STREAM_RETENTION_SECONDS)")

    async def replay_page(self, after: StreamId, symbols: frozenset[str]) -> tuple[list[Chunk], StreamId | None, bool]:
        """Up to REPLAY_PAGE_CHUNKS entries after `after`: their chunks (malformed entries skipped; those of
        none of `symbols` left undecoded, empty), the last entry's id, and whether the page was full.
        OutOfRangeError if retention trimmed entries after `after`."""
        try:
            entries = await self._replayer.xrange(
                self._key, min=f"({format_stream_id(after)}", count=REPLAY_PAGE_CHUNKS
            )
            if entries:
                self._check_retained(await self._replayer.xinfo_stream(self._key), after)
        except REDIS_FAILURES as error:
            raise UnavailableError("trade history (Redis) unreachable; retry", retry_after_seconds=1.0) from error
        chunks = []
        entries = entries or []
        for entry_id, fields in entries:
            named = {_as_bytes(k): _as_bytes(v) for k, v in (fields or {}).items()}
            chunk = _chunk(parse_stream_id(_as_bytes(entry_id)), named, symbols)
            if chunk is not None:
                chunks.append(chunk)
        last = parse_stream_id(_as_bytes(entries[-1][0])) if entries else None
        return chunks, last, len(entries) >= REPLAY_PAGE_CHUNKS

    def _mark(self) -> tuple[StreamId, int]:
        last = self._last_id
        return (parse_stream_id(last) if last is not None else ZERO_ID), self._local.mark_seq()

    async def _load_epoch(self) -> None:
        """The stream's incarnation: set once per Redis dataset (a Redis that lost its data gets a new one)."""
        await self._writer.set(self._epoch_key, uuid.uuid4().hex, nx=True)
        epoch = await self._writer.get(self._epoch_key)
        if epoch is not None:
            self._local.epoch = f"{self._key}/{_as_bytes(epoch).decode()}"

    def stats(self) -> RedisBusStats:
        """Counters since start."""
        return RedisBusStats(
            published_trades=self._published,
            received_trades=self._received,
            pending_trades=self._outbox_size,
            dropped_trades=self._dropped,
            publish_errors=self._publish_errors,
            read_errors=self._read_errors,
        )

    async def close(self, *, flush_timeout_seconds: float = 1.0) -> None:
        """End subscriptions (UnavailableError), give queued trades up to `flush_timeout_seconds`, stop."""
        if self._closed:
            return
        self._closed = True
        await self._local.close()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), flush_timeout_seconds)
        for task in self._tasks:
            task.cancel()
        # redis-py may absorb a cancellation inside a blocking read; the loops also stop on `_closed`.
        _, pending = await asyncio.wait(self._tasks, timeout=self._block_ms / 1000 + 1.0)
        if pending:
            log.warning("redis bus tasks did not stop in time", extra={"tasks": [t.get_name() for t in pending]})
        await self._reader.aclose()
        await self._writer.aclose()
        await self._replayer.aclose()

    async def _tail_id(self) -> bytes:
        newest = await self._reader.xrevrange(self._key, count=1)
        return _as_bytes(newest[0][0]) if newest else b"0-0"

    async def _read_loop(self) -> None:
        failing = False
        while not self._closed:
            try:
                if not self._local.epoch or failing:
                    await self._load_epoch()
                if self._last_id is None:
                    self._last_id = await self._tail_id()
                response = await self._reader.xread(
                    {self._key: self._last_id}, count=READ_BATCH_ENTRIES, block=self._block_ms
                )
            except REDIS_FAILURES as error:
                if self._closed:
                    return
                self._read_errors += 1
                if not failing:
                    log.warning("redis bus reader lost redis; retrying", extra={"error": str(error)})
                failing = True
                await asyncio.sleep(self._retry_seconds)
                continue
            if failing:
                log.warning("redis bus reader reconnected", extra={"last_id": self._last_id.decode()})
                failing = False
            # One delivery per reply: a caught-up subscriber takes the whole burst (see MemorySubscription.offer).
            received: list[Chunk] = []
            for entry_id, fields in _stream_entries(response):
                self._last_id = entry_id
                chunk = self._receive(entry_id, fields)
                if chunk is not None:
                    received.append(chunk)
            if received:
                self._local.deliver(received)

    def _fields(self, entry: _Entry) -> dict[FieldT, EncodableT]:
        return {b"o": self._origin, b"n": entry.seq, b"t": entry.payload, b"s": entry.symbols}

    def _receive(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Chunk | None:
        """The chunk of one stream entry, unless it is ours, already seen, or malformed."""
        origin = fields.get(b"o")
        if origin is None or origin == self._origin:
            return None  # our own trades went to local subscribers when published
        try:
            seq = int(fields[b"n"])
            if seq <= self._seen.get(origin, 0):
                return None
            chunk = _chunk(parse_stream_id(entry_id), fields)
        except (KeyError, ValueError, TypeError) as error:
            log.error("redis bus skipped a malformed entry", extra={"error": repr(error)})
            return None
        if chunk is None:
            return None
        self._seen[origin] = seq
        self._seen.move_to_end(origin)
        if len(self._seen) > KNOWN_ORIGINS:
            self._seen.popitem(last=False)
        self._received += len(chunk.trades)
        return chunk

    async def _write_loop(self) -> None:
        failing = False
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._outbox:
                batch = list(itertools.islice(self._outbox, WRITE_BATCH_ENTRIES))
                try:
                    async with self._writer.pipeline(transaction=False) as pipe:
                        oldest = f"{max(0, time.time_ns() // 1_000_000 - self._retention_ms)}-0"
                        for entry in batch:
                            pipe.xadd(self._key, self._fields(entry), maxlen=self._maxlen, approximate=True)
                        # Exact: with `~` Redis trims whole nodes (100 entries), so a short retention would not hold.
                        pipe.xtrim(self._key, minid=oldest, approximate=False)
                        await pipe.execute()
                except REDIS_FAILURES as error:
                    if self._closed:
                        self._drained.set()  # nothing more will be written
                        return
                    self._publish_errors += 1
                    if not failing:
                        log.warning("redis bus cannot publish; queueing trades", extra={"error": str(error)})
                    failing = True
                    await asyncio.sleep(self._retry_seconds)
                    continue
                if failing:
                    log.warning("redis bus publishing again", extra={"dropped_trades": self._dropped})
                failing = self._dropping = False
                # Entries may have been dropped from the front meanwhile: remove what was written, by sequence.
                while self._outbox and self._outbox[0].seq <= batch[-1].seq:
                    written = self._outbox.popleft()
                    self._outbox_size -= written.trades
                    self._published += written.trades
                self._written_seq = max(self._written_seq, batch[-1].seq)
                self._progress.set()
                self._progress = asyncio.Event()
            self._drained.set()


class _StreamReplay:
    """The Redis stream after a position, a page per call."""

    def __init__(self, bus: RedisTradeBus, after: StreamId, subscription: MemorySubscription) -> None:
        self._bus = bus
        self._after = after
        self._done = False
        self._subscription = subscription

    async def next_page(self) -> list[Chunk] | None:
        if self._done:
            return None
        page, last, full = await self._bus.replay_page(self._after, self._subscription.symbols)
        self._done = not full
        if last is not None:
            self._after = last
        return page


def _chunk(stream_id: StreamId, fields: dict[bytes, bytes], wanted: frozenset[str] | None = None) -> Chunk | None:
    """The chunk of a stream entry (its trades left out when it says it has none of `wanted`); None (logged)
    when it is malformed."""
    try:
        named = fields.get(b"s")
        if wanted is not None and named is not None and wanted.isdisjoint(named.decode().split(",")):
            return Chunk(fields[b"o"].decode(), int(fields[b"n"]), stream_id, ())
        return Chunk(fields[b"o"].decode(), int(fields[b"n"]), stream_id, decode_trades(fields[b"t"]))
    except (KeyError, ValueError, TypeError) as error:
        log.error("redis bus skipped a malformed entry", extra={"error": repr(error)})
        return None


def _time_us(entries: Any) -> int | None:
    """The time (µs) of the first entry of an XRANGE-like reply, if any."""
    if not entries or not entries[0]:
        return None
    entry = entries[0]
    entry_id = entry[0] if isinstance(entry, list | tuple) else entry
    return parse_stream_id(_as_bytes(entry_id))[0] * 1000


def _stream_entries(response: Any) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """(id, fields) of an XREAD reply: RESP2 [[key, entries]] or RESP3 {key: entries}."""
    streams = response.values() if isinstance(response, dict) else [stream[1] for stream in response or ()]
    for entries in streams:
        for entry_id, fields in entries:
            yield _as_bytes(entry_id), {_as_bytes(name): _as_bytes(value) for name, value in (fields or {}).items()}


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected redis reply element {value!r}")
