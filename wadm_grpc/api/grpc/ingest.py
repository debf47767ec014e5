"""TradeIngestService servicer: PublishTrades, a client stream of trade batches."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from wadm_grpc.api.grpc import convert
from wadm_grpc.api.grpc.errors import Context, unary
from wadm_grpc.domain.errors import InvalidArgumentError, UnavailableError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import join
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.services.ingest import IngestResult, IngestService

# Messages read ahead of the store: while one write runs, the next ones queue up and are written
# together, so a fast publisher costs one transaction per backlog, not one per message. Bounded, so a
# publisher faster than the store is slowed down by flow control instead of filling memory.
READ_AHEAD_MESSAGES = 64
# Most trades in one write (one transaction) when messages queued up: a transaction has a fixed cost
# (planning the rollup merge, the commit) that larger ones share, and from DuckDB's row group size
# (122,880 rows) on, the new rows go straight to the database file instead of through the WAL. Measured
# store-only, 300k trades in 10k-trade messages (issue 12): 124k trades/s with 50,000-trade writes,
# 154k/s with 130,000, 171k/s with 150,000. Bounded, like each live delivery.
MAX_WRITE_TRADES = 150_000
T = TypeVar("T")
# Larger messages are validated on a worker thread, not the event loop.
VALIDATE_ON_LOOP_TRADES = 1000
# Large messages of one call validated at once, in order (most of their validation releases the GIL).
VALIDATIONS_IN_FLIGHT = 2


class ReadingStopped(Exception):
    """backlogs() stopped reading its source before the source ended (shutdown)."""


class TradeIngestServicer(ingest_grpc.TradeIngestServiceServicer):
    """gRPC face of ingest."""

    def __init__(self, *, ingest: IngestService) -> None:
        self._ingest = ingest
        self._finishing = asyncio.Event()

    def finish_calls(self) -> None:
        """Shutdown: every PublishTrades call stops reading, stores what it read, and ends UNAVAILABLE
        saying how many of its messages were stored; so do calls that start from now on."""
        self._finishing.set()

    @unary
    async def PublishTrades(
        self, request_iterator: AsyncIterator[ingest_pb.PublishTradesRequest], context: Context
    ) -> ingest_pb.PublishTradesResponse:
        tally = _Tally()
        if self._finishing.is_set():
            raise _shutting_down(tally)
        incoming = backlogs(request_iterator, READ_AHEAD_MESSAGES, stop=self._finishing)
        writes = _Writes(self._ingest, tally)
        try:
            try:
                async with contextlib.aclosing(incoming):  # a rejected message stops the read-ahead at once
                    async for ready in incoming:
                        await self._store_backlog(ready, writes)
            finally:
                await writes.drain()  # the answer, whatever it is, counts what was stored
        except ReadingStopped:
            raise _shutting_down(tally) from None
        return ingest_pb.PublishTradesResponse(
            accepted_count=tally.accepted, duplicate_count=tally.duplicates, batch_count=tally.messages
        )

    async def _store_backlog(self, ready: list[ingest_pb.PublishTradesRequest], writes: _Writes) -> None:
        """Validate each message and queue it for writing, up to the first rejected message, which then
        fails the call (after what was queued before it is written). Writes run meanwhile, and up to
        VALIDATIONS_IN_FLIGHT large messages are validated at once (much of it is Arrow, off the GIL)."""
        tally = writes.tally
        rejected: InvalidArgumentError | None = None
        upcoming = iter(ready)
        window: collections.deque[asyncio.Future[Sequence[Trade]]] = collections.deque()
        try:
            while True:
                while len(window) < VALIDATIONS_IN_FLIGHT and (request := next(upcoming, None)) is not None:
                    window.append(self._validation(request))
                if not window:
                    break
                tally.messages += 1
                try:
                    trades = await window.popleft()
                except InvalidArgumentError as error:
                    rejected = error
                    break
                await writes.add(trades)
        finally:
            for later in window:  # validated, or being validated, after a rejected message: never stored
                later.cancel()
                with contextlib.suppress(BaseException):
                    await later
        if rejected is not None:
            await writes.drain()
            raise InvalidArgumentError(
                rejected.violations,
                f"message {tally.messages} of the stream was rejected, nothing of it was stored "
                f"(earlier messages were: {tally.accepted} accepted, {tally.duplicates} duplicates): {rejected}",
            ) from rejected

    def _validation(self, request: ingest_pb.PublishTradesRequest) -> asyncio.Future[Sequence[Trade]]:
        """`request` being validated: on a worker thread if large (a few µs a trade: keep the loop free)."""
        if len(request.trades) > VALIDATE_ON_LOOP_TRADES:
            return asyncio.ensure_future(asyncio.to_thread(self._validate, request))
        done: asyncio.Future[Sequence[Trade]] = asyncio.get_running_loop().create_future()
        try:
            done.set_result(self._validate(request))
        except InvalidArgumentError as error:
            done.set_exception(error)
        return done

    def _validate(self, request: ingest_pb.PublishTradesRequest) -> Sequence[Trade]:
        """Bulk checks first; a batch they cannot vouch for gets the per-trade rules (precise violations)."""
        received = convert.received_columns(request)
        checked = self._ingest.validate_received(received) if received is not None else None
        if checked is not None:
            return checked
        return self._ingest.validate([convert.trade_input(t) for t in request.trades])


def _shutting_down(tally: _Tally) -> UnavailableError:
    return UnavailableError(
        f"server is shutting down: the first {tally.messages} messages of this stream were stored "
        f"({tally.accepted} trades accepted, {tally.duplicates} duplicates); send the messages after them "
        "again, to this address (another server answers) or later (resending is always safe: ingest is idempotent)",
        reason="SHUTTING_DOWN",
        metadata={
            "accepted_count": str(tally.accepted),
            "duplicate_count": str(tally.duplicates),
            "batch_count": str(tally.messages),
        },
    )


class _Writes:
    """The writes of one call, one at a time: validated messages queue up while a write runs, and the next
    write takes all of them (at most MAX_WRITE_TRADES), so a write starts as soon as the store is free and
    its size follows how far validation got ahead. At most MAX_WRITE_TRADES wait (then `add` waits)."""

    def __init__(self, ingest: IngestService, tally: _Tally) -> None:
        self._ingest = ingest
        self.tally = tally
        self._queued: list[Sequence[Trade]] = []
        self._queued_count = 0
        self._writer: asyncio.Task[None] | None = None
        self._taken = asyncio.Event()  # set whenever the writer takes the queue

    async def add(self, trades: Sequence[Trade]) -> None:
        """Queue validated trades for writing; a write starts at once if none runs. A failed write is
        raised here (or by `drain`): nothing after it is written."""
        while self._queued and self._queued_count + len(trades) > MAX_WRITE_TRADES and self._writing():
            self._taken.clear()
            await self._taken.wait()
        if self._writer is not None and self._writer.done():
            await self.drain()  # raises what failed
        self._queued.append(trades)
        self._queued_count += len(trades)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name="publish-trades-writes")

    def _writing(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def _write_queued(self) -> None:
        while self._queued:
            taken: list[Sequence[Trade]] = []
            count = 0
            while self._queued and (not taken or count + len(self._queued[0]) <= MAX_WRITE_TRADES):
                taken.append(self._queued.pop(0))
                count += len(taken[-1])
            self._queued_count -= count
            self._taken.set()
            self.tally.add(await self._ingest.store_trades(join(taken)))

    async def drain(self) -> None:
        """Wait until everything queued is written; raise a write's failure."""
        while self._writer is not None:
            writer = self._writer
            try:
                await writer
            finally:
                if self._writer is writer:
                    self._writer = None
                    self._queued, self._queued_count = [], 0  # after a failure: never written


@dataclass
class _Tally:
    """What one PublishTrades call did so far."""

    accepted: int = 0
    duplicates: int = 0
    messages: int = 0

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates


async def backlogs(
    source: AsyncIterator[T], limit: int, *, stop: asyncio.Event | None = None
) -> AsyncGenerator[list[T], None]:
    """Read `source` ahead (at most `limit` items) and yield everything that queued up since the last
    yield, as one list, in order. A failed read is raised after the items read before it.

    Once `stop` is set, no further item is taken: the items already read are still yielded, then
    ReadingStopped is raised (unless the source had ended first). Items arriving meanwhile are read and
    dropped, so a sender is never left blocked in a write when its call ends (grpc.aio then reports its
    failed write as INTERNAL, hiding the status that says what was stored).
    """
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(limit)
    source_ended = False
    stopped = False

    async def read() -> None:
        nonlocal source_ended
        try:
            async for item in source:
                if not stopped:
                    await queue.put((item,))
        except asyncio.CancelledError:
            raise  # the consumer is gone: nobody waits for the end marker (the queue may be full)
        except BaseException:
            await queue.put(None)  # the consumer still reads: it stops here, then `await reader` raises
            raise
        source_ended = True
        await queue.put(None)

    reader = asyncio.create_task(read())

    def halt(waited: asyncio.Future[Literal[True]]) -> None:
        nonlocal stopped
        if waited.cancelled() or reader.done():
            return
        stopped = True
        if not queue.full():  # the consumer may be waiting for an item: wake it (else it is busy draining)
            queue.put_nowait(None)

    watcher: asyncio.Future[Literal[True]] | None = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if watcher is not None:
        watcher.add_done_callback(halt)
    try:
        finished = False
        while not finished and not (stopped and queue.empty()):
            ready = [await queue.get()]
            while not queue.empty():
                ready.append(queue.get_nowait())
            finished = ready[-1] is None
            items = [entry[0] for entry in ready if entry is not None]
            if items:
                yield items
        if stopped:
            if not source_ended:
                raise ReadingStopped
            return
        await reader
    finally:
        if watcher is not None:
            watcher.cancel()
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
