"""MongoTradeStore: trades in MongoDB (the WADM collectors' `trades` collection), read through rollups.

Writes: trades this service ingests are inserted with Decimal128 values and their microsecond time, then the
1m/1h/1d buckets they touched are recomputed. Trades collectors insert directly are rolled up by a watermark
pass (`refresh_rollups`), run at start and every `refresh_interval_seconds`. Reads are aggregations executed
by the server over rollups (candles, window stats) or indexes (trade pages); see docs/mongo.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo import AsyncMongoClient

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.trade import Trade
from wadm_grpc.ports import CandleQuery, TradeQuery
from wadm_grpc.stores.mongo import live, reads
from wadm_grpc.stores.mongo.commands import CollectionNames, Commands
from wadm_grpc.stores.mongo.documents import Document, trade_documents
from wadm_grpc.stores.mongo.rebuild import rebuild_old_rollups
from wadm_grpc.stores.mongo.rollups import RefreshReport, minute_keys, refresh_buckets, rescan_from, scan_and_refresh

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
    ) -> None:
        """Use `client` (create it with tz_aware=True); nothing is sent before `start()`.

        rescan_seconds: each watermark pass re-reads this much ObjectId time before the watermark, for
        collectors whose inserts commit late or whose clocks lag (0: exactly after the watermark).
        refresh_interval_seconds: how often `start()`'s background task rolls up collectors' inserts (None: never;
        call `refresh_rollups()` yourself).
        """
        self._client = client
        self._commands = Commands(client[database], collections or CollectionNames())
        self._rescan_seconds = rescan_seconds
        self._refresh_interval = refresh_interval_seconds
        self._scan_batch = scan_batch
        self._close_client = close_client
        # Rollups are recomputed by one task at a time in this process (see docs/mongo.md for several).
        self._rollup_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
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

    async def start(self) -> None:
        """Create the indexes (idempotent), rebuild rollups of an older format (rebuild.py), roll up what
        collectors inserted since the last run, and start the periodic refresh. Raises if the trades collection
        already holds duplicate (exchange, symbol, trade_id)."""
        await self._commands.create_indexes()
        async with self._rollup_lock:
            await rebuild_old_rollups(self._commands, self._scan_batch)
        await self.refresh_rollups()
        if self._refresh_interval is not None and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever(self._refresh_interval))

    async def _refresh_forever(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.refresh_rollups()
            except Exception:
                log.exception("rollup refresh failed; retrying in %s s", interval_seconds)

    async def refresh_rollups(self) -> RefreshReport:
        """Roll up every trade document inserted after the watermark (by anyone); idempotent."""
        async with self._rollup_lock:
            state = await self._commands.find_one("state", {"_id": self._commands.names.trades})
            since = rescan_from(state["last_id"] if state else None, self._rescan_seconds)

            async def save(last_id: Any) -> None:
                await self._commands.update_one(
                    "state", {"_id": self._commands.names.trades}, {"$max": {"last_id": last_id}}
                )

            self.last_refresh = await scan_and_refresh(self._commands, since, self._scan_batch, save)
            return self.last_refresh

    # -- TradeStore -------------------------------------------------------------------------------------------

    def collector_trades(self) -> AsyncIterator[list[Trade]]:
        """Trades collectors insert straight into MongoDB, live, in batches (see live.py); the iterator
        ends at once when the deployment has no change streams."""
        return live.collector_trades(self._commands, state_key=f"{self._commands.names.trades}:change_stream")

    async def insert_trades(self, trades: Sequence[Trade]) -> list[Trade]:
        unique: dict[tuple[str, str, str], Trade] = {}
        for trade in trades:
            unique.setdefault((trade.exchange, trade.symbol, trade.trade_id), trade)
        if not unique:
            return []
        candidates = list(unique.values())
        duplicates = await self._commands.insert_new(trade_documents(candidates))
        new = [trade for index, trade in enumerate(candidates) if index not in duplicates]
        if new:
            async with self._rollup_lock:
                self.last_refresh = RefreshReport()
                await refresh_buckets(self._commands, minute_keys(new), self.last_refresh)
        return new

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        return await reads.candles(self._commands, query)

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        return await reads.symbols(self._commands, exchanges)

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        return await reads.window_stats(self._commands, symbols, exchanges, start_us, end_us)

    async def trades(self, query: TradeQuery) -> list[Trade]:
        return await reads.trades(self._commands, query)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._close_client:
            await self._client.close()
