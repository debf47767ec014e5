"""PublishTrades: validate, store idempotently, then fan out to live subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch
from wadm_grpc.domain.trade_input import ReceivedColumns, TradeInput, parse_trades
from wadm_grpc.ports import Clock, TradeBus, TradeStore
from wadm_grpc.services.read_cache import ReadCache
from wadm_grpc.services.read_priority import ReadActivity
from wadm_grpc.services.trade_screen import screen, warm_up

MAX_BATCH = 10_000
log = logging.getLogger("wadm_grpc.ingest")


def _log_failure_nobody_awaited(work: asyncio.Future[IngestResult]) -> None:
    """A shielded ingest whose caller left: its failure would otherwise go unseen."""
    if not work.cancelled() and work.exception() is not None:
        log.error("ingest failed after its caller went away", exc_info=work.exception())


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one batch did."""

    accepted: int
    duplicates: int


class IngestService:
    """The one way trades get in: PublishTrades, the CSV importer and the demo feed all come here."""

    def __init__(
        self,
        store: TradeStore,
        bus: TradeBus,
        cache: ReadCache,
        *,
        clock: Clock,
        max_future_seconds: float,
        reads: ReadActivity | None = None,
    ) -> None:
        """`reads`: uncached reads in flight; the validation of large batches (on worker threads) yields to
        them between steps (services/read_priority.py)."""
        self._store = store
        self._reads = reads
        self._bus = bus
        self._cache = cache
        self._clock = clock
        self._max_future_us = round(max_future_seconds * 1_000_000)
        warm_up()

    async def publish_trades(self, batch: list[TradeInput]) -> IngestResult:
        """Validate the whole batch (nothing is written if any trade is bad), then store it."""
        return await self.store_trades(self.validate(batch))

    def validate(self, batch: list[TradeInput]) -> list[Trade]:
        """The batch's trades, or InvalidArgumentError naming every bad one (and empty or oversized batches).
        Trades dated more than the allowed skew ahead of the server clock are bad ones."""
        if not batch:
            raise InvalidArgumentError.of("trades", "a batch needs at least one trade")
        if len(batch) > MAX_BATCH:
            raise InvalidArgumentError.of("trades", f"at most {MAX_BATCH} trades per batch, got {len(batch)}")
        return parse_trades(batch, latest_us=self._clock.now_us() + self._max_future_us)

    def validate_received(self, received: ReceivedColumns) -> TradeBatch | None:
        """The fast path of `validate`: the batch's trades when bulk checks find every one plainly valid,
        else None (then `validate` on the same trades names what is wrong, or accepts them). The store
        prepares what it can of their write here, on the caller's (validation) thread."""
        if len(received) > MAX_BATCH:
            return None
        self._yield_to_reads()
        batch = screen(received, latest_us=self._clock.now_us() + self._max_future_us)
        if batch is not None:
            self._store.prepare_batch(batch)
        self._yield_to_reads()  # and before the next message's reading starts (the caller's next step)
        return batch

    def _yield_to_reads(self) -> None:
        """On a worker thread, wait (bounded) for a quiet moment between uncached reads; on the event
        loop (small batches are validated there), never."""
        if self._reads is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._reads.wait_quiet()

    async def store_trades(self, trades: Sequence[Trade]) -> IngestResult:
        """Store already validated trades; publish the new ones, in ingest order.

        Storing and announcing run to completion even if the caller goes away (a client deadline, a
        disconnect): a trade that was written is always announced, since a retry would only find it a
        duplicate and announce nothing.
        """
        work = asyncio.ensure_future(self._store_and_announce(trades))
        work.add_done_callback(_log_failure_nobody_awaited)
        return await asyncio.shield(work)

    async def _store_and_announce(self, trades: Sequence[Trade]) -> IngestResult:
        new = await self._store.insert_trades(trades)
        if new:
            await self.announce(new)
        return IngestResult(accepted=len(new), duplicates=len(trades) - len(new))

    async def announce(self, stored: Sequence[Trade]) -> None:
        """Trades just stored (here, or by collectors straight into the store): cached answers they change
        are dropped and live subscribers get them."""
        await self._cache.trades_stored(stored)
        await self._bus.publish(stored)
