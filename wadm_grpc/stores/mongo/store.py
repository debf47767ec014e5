"""MongoTradeStore: trades in MongoDB (the WADM collectors' `trades` collection), read through rollups.

Writes: trades this service ingests are inserted with Decimal128 values and their microsecond time; the
1m/1h/1d buckets they touched are recomputed by the one process holding the rollup lease (lease.py), and
recorded in the dirty-bucket collection by any other. Trades collectors insert directly are rolled up by
the leader's watermark pass (`refresh_rollups`), run in the background from start (the first one catching
up on the whole history, with progress logged) and every `refresh_interval_seconds`. Reads are
aggregations executed by the server over rollups (candles, window stats) or indexes (trade pages); see
docs/mongo.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo import AsyncMongoClient

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.errors import FailedPreconditionError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns
from wadm_grpc.ports import CandleQuery, TradeQuery
from wadm_grpc.stores.mongo import live, reads
from wadm_grpc.stores.mongo.commands import CollectionNames, Commands
from wadm_grpc.stores.mongo.documents import Document, column_documents, trade_documents
from wadm_grpc.stores.mongo.lease import Clock, LeaseLost, RollupLease, default_owner, utc_now
from wadm_grpc.stores.mongo.rebuild import rebuild_old_rollups
from wadm_grpc.stores.mongo.rollups import (
    RefreshReport,
    mark_dirty,
    minute_keys,
    refresh_buckets,
    refresh_dirty,
    rescan_from,
    scan_and_refresh,
)
from wadm_grpc.stores.mongo.startup import CatchUp, index_problem

log = logging.getLogger("wadm_grpc.stores.mongo")
DEFAULT_DATABASE = "wadm"


class MongoTradeStore:
    """TradeStore on MongoDB through PyMongo's native asyncio API."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        *,
        database: str = DEFAULT_DATABASE,
        collections: CollectionNames | None = None,
        rescan_seconds: float = 30.0,
        refresh_interval_seconds: float | None = 5.0,
        scan_batch: int = 50_000,
        close_client: bool = True,
        lease_seconds: float = 30.0,
        lease_owner: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """Use `client` (create it with tz_aware=True); nothing is sent before `start()`.

        rescan_seconds: each watermark pass re-reads this much ObjectId time before the watermark, for
        collectors whose inserts commit late or whose clocks lag (0: exactly after the watermark).
        refresh_interval_seconds: how often the background task renews the rollup lease and rolls up
        collectors' inserts (None: never; call `refresh_rollups()` yourself). Keep it well below
        lease_seconds: how long a leader that stopped renewing keeps the lease before another takes over.
        """
        self._client = client
        self._commands = Commands(client[database], collections or CollectionNames())
        self._rescan_seconds = rescan_seconds
        self._refresh_interval = refresh_interval_seconds
        self._scan_batch = scan_batch
        self._close_client = close_client
        self._lease = RollupLease(
            self._commands, lease_seconds=lease_seconds, owner=lease_owner or default_owner(), clock=clock
        )
        # Rollups are recomputed by one task at a time in this process, and by the lease holder only.
        self._rollup_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._ingest_refused: str | None = None
        self.catch_up = CatchUp()
        self._caught_up = asyncio.Event()
        self.last_refresh = RefreshReport()

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> MongoTradeStore:
        """A store on its own tz-aware client for `uri` (mongodb://host/db: the database defaults to the URI's)."""
        client: AsyncMongoClient[Document] = AsyncMongoClient(uri, tz_aware=True)
        options.setdefault("database", client.get_default_database(DEFAULT_DATABASE).name)
        return cls(client, **options)

    @property
    def round_trips(self) -> int:
        """Commands sent to the server so far."""
        return self._commands.round_trips

    @property
    def lease_generation(self) -> int | None:
        """The rollup lease generation this process holds (None: another process recomputes rollups)."""
        return self._lease.held()

    async def start(self) -> None:
        """Create the indexes (idempotent; a unique index the history prevents is said in one log line, and
        ingest refused), try to take the rollup lease, and start the background task: the leader's catch-up
        over what collectors inserted since the last run (rebuilding rollups of an older format first), then
        the periodic refresh. Reads answer from what is rolled up meanwhile (`catch_up`, `caught_up()`)."""
        for _, index, error in await self._commands.create_indexes():
            self._ingest_refused = await index_problem(self._commands, index, error)
            log.error("%s", self._ingest_refused)
        await self._lease.hold()
        if self._refresher is None or self._refresher.done():  # started again: catch up again
            self._caught_up.clear()
            self.catch_up = CatchUp()
            self._refresher = asyncio.create_task(self._refresh_forever())

    async def caught_up(self) -> None:
        """Wait until this process's catch-up after start has ended (at once in a process without the lease)."""
        await self._caught_up.wait()

    async def _refresh_forever(self) -> None:
        self.catch_up.running = True
        try:
            await self._catch_up()
        except Exception:
            log.exception("rollup catch-up failed; the periodic refresh retries")
        finally:
            self.catch_up.running, self.catch_up.done = False, True
            self._caught_up.set()
        if self._refresh_interval is None:
            return
        while True:
            await asyncio.sleep(self._refresh_interval)
            try:
                await self.refresh_rollups()
            except Exception:
                log.exception("rollup refresh failed; retrying in %s s", self._refresh_interval)

    async def _catch_up(self) -> None:
        generation = await self._lease.hold()
        if generation is None:
            log.info("another process holds the rollup lease: it rolls up the history; this one follows")
            return
        log.warning(
            "rolling up trades inserted since the last run in the background; reads answer from the "
            "rollups written so far until it ends"
        )
        async with self._rollup_lock:
            await rebuild_old_rollups(self._commands, self._scan_batch, generation)
        report = await self.refresh_rollups()
        log.warning("rollup catch-up done: %s trades rolled up", report.scanned_trades)

    def _progress(self, report: RefreshReport) -> None:
        self.catch_up.scanned_trades = report.scanned_trades
        if self.catch_up.running:
            log.info("rollup catch-up: %s trades rolled up so far", report.scanned_trades)

    async def refresh_rollups(self) -> RefreshReport:
        """As the rollup leader (renewing or taking the lease): recompute the buckets other processes marked
        dirty, then roll up every trade document inserted after the watermark (by anyone); idempotent.
        A process without the lease does nothing (an empty report)."""
        generation = await self._lease.hold()
        if generation is None:
            return RefreshReport()
        async with self._rollup_lock:
            report = RefreshReport()
            try:
                await refresh_dirty(self._commands, report, generation, self._scan_batch)
                state = await self._commands.find_one("state", {"_id": self._commands.names.trades})
                since = rescan_from(state["last_id"] if state else None, self._rescan_seconds)

                async def save(last_id: Any) -> None:
                    if self._lease.held() != generation:
                        raise LeaseLost("the rollup lease expired during the pass")
                    await self._commands.update_one(
                        "state", {"_id": self._commands.names.trades}, {"$max": {"last_id": last_id}}
                    )
                    await self._lease.current()  # a long catch-up keeps the lease

                scanned = await scan_and_refresh(
                    self._commands, since, self._scan_batch, save, generation, self._progress
                )
            except LeaseLost as lost:
                log.warning("stopped recomputing rollups: %s", lost)
                self._lease.generation = None
                return report
            report.scanned_trades, report.written = scanned.scanned_trades, _merged(report, scanned)
            self.last_refresh = report
            return report

    # -- TradeStore -------------------------------------------------------------------------------------------

    def collector_trades(self) -> AsyncIterator[list[Trade]]:
        """Trades collectors insert straight into MongoDB, live, in batches (see live.py); the iterator
        ends at once when the deployment has no change streams."""
        return live.collector_trades(self._commands, state_key=f"{self._commands.names.trades}:change_stream")

    def prepare_batch(self, trades: Sequence[Trade]) -> None:
        """Nothing ahead: the documents are built by the write."""

    async def insert_trades(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        if isinstance(trades, TradeBatch):  # validated columns: documents without Trade objects
            new: Sequence[Trade] = await self._insert_columns(trades)
        else:
            new = await self._insert_each(trades)
        if not new:
            return new
        generation = await self._lease.current()
        if generation is None:
            await mark_dirty(self._commands, minute_keys(new))  # for the leader
            return new
        async with self._rollup_lock:
            self.last_refresh = RefreshReport()
            try:
                await refresh_buckets(self._commands, minute_keys(new), self.last_refresh, generation)
            except LeaseLost as lost:
                log.warning("ingest left its buckets to the new rollup leader: %s", lost)
                self._lease.generation = None
                await mark_dirty(self._commands, minute_keys(new))
        return new

    async def _insert_each(self, trades: Sequence[Trade]) -> list[Trade]:
        unique: dict[tuple[str, str, str], Trade] = {}
        for trade in trades:
            unique.setdefault((trade.exchange, trade.symbol, trade.trade_id), trade)
        if not unique:
            return []
        if self._ingest_refused is not None:
            raise FailedPreconditionError(self._ingest_refused)
        candidates = list(unique.values())
        duplicates = await self._commands.insert_new(trade_documents(candidates))
        return [trade for index, trade in enumerate(candidates) if index not in duplicates]

    async def _insert_columns(self, batch: TradeBatch) -> TradeBatch:
        """`_insert_each` column-wise: the first occurrence of each key, documents built from the columns,
        the new trades as a TradeBatch of the inserted rows."""
        c = batch.columns
        keys = list(zip(c.exchange, c.symbol, c.trade_id, strict=True))
        first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))  # key -> first row
        if len(first) < len(keys):
            batch = _rows(batch, sorted(first.values()))
        if not len(batch):
            return batch
        if self._ingest_refused is not None:
            raise FailedPreconditionError(self._ingest_refused)
        duplicates = await self._commands.insert_new(column_documents(batch.columns))
        if duplicates:
            batch = _rows(batch, [row for row in range(len(batch)) if row not in duplicates])
        return batch

    def _say_if_catching_up(self) -> None:
        """Reads during the catch-up answer from the rollups so far: say so in the log, once per catch-up."""
        if self._refresher is not None and not self.catch_up.done and not self.catch_up.said:
            self.catch_up.said = True
            log.warning(
                "serving reads from the rollups written so far: the catch-up has rolled up %s trades yet",
                self.catch_up.scanned_trades,
            )

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        self._say_if_catching_up()
        return await reads.candles(self._commands, query)

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        self._say_if_catching_up()
        return await reads.symbols(self._commands, exchanges)

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        self._say_if_catching_up()
        return await reads.window_stats(self._commands, symbols, exchanges, start_us, end_us)

    async def trades(self, query: TradeQuery) -> list[Trade]:
        return await reads.trades(self._commands, query)

    async def close(self) -> None:
        """Stop the background task and give the rollup lease up (another process takes over at once)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        with contextlib.suppress(Exception):  # the server may be gone: the lease then expires by itself
            await self._lease.release()
        if self._close_client:
            await self._client.close()


def _merged(first: RefreshReport, second: RefreshReport) -> dict[str, int]:
    return {key: first.written.get(key, 0) + second.written.get(key, 0) for key in first.written | second.written}


def _rows(batch: TradeBatch, rows: list[int]) -> TradeBatch:
    """The batch's trades at `rows`, in that order."""
    c = batch.columns
    picked = {name: [getattr(c, name)[row] for row in rows] for name in TradeColumns.__dataclass_fields__}
    return TradeBatch(TradeColumns(**picked))
