"""DuckDBTradeStore: the embedded default store, a DuckDB file with exact DECIMAL columns.

Threading: one connection per process; every query runs on a cursor owned by a worker thread (never on
the event loop). Reads use a small pool; writes go through ONE writer thread, so ingest transactions are
serialised and never conflict, while reads keep running on their own snapshots.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import pyarrow as pa

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.decimals import with_scale
from wadm_grpc.domain.errors import FailedPreconditionError
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch, columns_of, exchanges_of, symbols_of
from wadm_grpc.ports import CandleQuery, TradeQuery
from wadm_grpc.stores.duckdb import batches, sql
from wadm_grpc.stores.duckdb.batches import TRADE_COLUMNS, trades_table
from wadm_grpc.stores.duckdb.candles import Bounds, CandleReach, MarketBounds, read_candles
from wadm_grpc.stores.duckdb.reads import Cursor, read_trades, window_stats
from wadm_grpc.stores.duckdb.rollups import RollupMerger

T = TypeVar("T")
COLUMNS = ", ".join(TRADE_COLUMNS)  # named, so the Arrow table and the table need not agree on order
_KEY = ("exchange", "symbol", "trade_id")
# Per (symbol, exchange): first and last time and count of the trades an ingest added.
MarketExtents = dict[tuple[str, str], Bounds]
# Batches this small (a live collector's) are written beside the transaction in flight, by a second writer,
# when they hold none of its markets. Why (issue 12): a 10-trade batch waited 0.5-0.7 s behind a
# 150,000-trade transaction of a bulk ingest. Both tables are keyed by market (trades by exchange, symbol
# and id; rollups by tier, symbol, exchange and bucket), so transactions of disjoint markets share no row;
# a batch of a market in flight waits for the writer, as before (the rollup merge writes back values read
# from its snapshot: two transactions of one market at once could lose an update).
SIDE_WRITE_TRADES = 1_000


class DuckDBTradeStore:
    """TradeStore on a DuckDB file (created on first use, kept across restarts)."""

    # Reads run on the store's own threads (ports.LoopFreeReads): a load on a LoadsThread awaits them there.
    reads_on_any_loop = True

    def __init__(self, path: str | Path, *, read_threads: int = 4, read_only: bool = False) -> None:
        """Open (or create) the file. `read_only` opens an existing file shared with other read-only
        processes (several workers serving one snapshot); ingest is then refused."""
        if str(path) != ":memory:" and not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.read_only = read_only
        self._connection = duckdb.connect(str(path), read_only=read_only)
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(read_threads, "duckdb-read", initializer=self._open_cursor)
        self._writer = ThreadPoolExecutor(1, "duckdb-write", initializer=self._open_cursor)
        self._merger = RollupMerger()  # used by the writer thread only
        self._side_writer = ThreadPoolExecutor(1, "duckdb-write-side", initializer=self._open_cursor)
        self._side_merger = RollupMerger()  # used by the side writer's thread only
        self._in_flight: list[Sequence[Trade]] | None = None  # the writer's batches now
        self._in_flight_names: tuple[set[str], set[str]] | None = None  # their exchanges and symbols, once asked
        self._side: asyncio.Future[Sequence[Trade]] | None = None  # the side writer's last transaction
        self._bounds = MarketBounds()
        self._reach = CandleReach()
        # ListSymbols answers by exchanges, with the write generation they were read in (as MarketBounds):
        # one row per market, polled by clients, served without a statement until the next write.
        self._writes = 0
        self._symbols: dict[tuple[str, ...], tuple[int, list[SymbolSummary]]] = {}
        self._cursors: list[Cursor] = []
        self._cursors_lock = threading.Lock()
        # Statements executed: the contract suite checks that multi-symbol stats take ONE.
        self.round_trips = 0
        self._queued: list[tuple[Sequence[Trade], asyncio.Future[Sequence[Trade]]]] = []
        self._committer: asyncio.Task[None] | None = None
        if not read_only:
            with self._connection.cursor() as cursor:
                self._migrate(cursor)

    def _migrate(self, cursor: Cursor) -> None:
        """Create the tables; an older layout's rollups are replaced, rebuilt from the trades (whose
        layout has not changed since version 1)."""
        for ddl in (sql.TRADES_DDL, sql.SCHEMA_DDL):
            cursor.execute(ddl)
        row = cursor.execute("SELECT max(version) FROM wadm_schema").fetchone()
        if row is not None and row[0] == sql.SCHEMA_VERSION:
            return
        for table in sql.REPLACED_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(sql.ROLLUPS_DDL)
        self._rebuild(cursor)
        cursor.execute("DELETE FROM wadm_schema")
        cursor.execute("INSERT INTO wadm_schema VALUES (?)", [sql.SCHEMA_VERSION])

    def _open_cursor(self) -> None:
        cursor = self._connection.cursor()
        self._local.cursor = cursor
        self._local.prepared = set()  # names of the statements this cursor has prepared
        with self._cursors_lock:
            self._cursors.append(cursor)

    async def _run(
        self, pool: ThreadPoolExecutor, work: Callable[[Cursor], T], *, added: list[MarketExtents] | None = None
    ) -> T:
        """`work` on a cursor of `pool`. `added`: filled by an ingest with the bounds of what it added."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, lambda: work(cast(Cursor, _Counting(self, self._local.cursor))))
        finally:
            if pool is self._writer or pool is self._side_writer:  # a write may have moved a market's bounds
                self._bounds.written(added[0] if added else None)
                self._writes += 1
                self._symbols.clear()

    async def _read(self, work: Callable[[Cursor], T]) -> T:
        return await self._run(self._readers, work)

    # -- ingest -----------------------------------------------------------------------------------

    def prepare_batch(self, trades: Sequence[Trade]) -> None:
        """The batch's Arrow rows, built now: the writer thread then only runs DuckDB."""
        batches.prepare(trades)

    async def insert_trades(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        """Group commit: calls that arrive while a transaction runs share the next one, so many small
        concurrent batches cost one transaction, not one each. Each call still gets exactly its own new
        trades, and a failure fails every call of the group with nothing written. A small batch of markets
        the transaction in flight does not hold is written beside it (SIDE_WRITE_TRADES)."""
        if self.read_only:
            raise FailedPreconditionError("this server serves a read-only snapshot; publish to the writer")
        if not trades:
            return []
        if len(trades) <= SIDE_WRITE_TRADES and self._side_idle() and self._in_flight is not None:
            if self._in_flight_names is None:
                self._in_flight_names = _names(self._in_flight)
            exchanges, symbols = _names([trades])
            if exchanges.isdisjoint(self._in_flight_names[0]) or symbols.isdisjoint(self._in_flight_names[1]):
                return await self._write_beside(trades)
        return await self._queue(trades)

    async def _queue(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        waiter: asyncio.Future[Sequence[Trade]] = asyncio.get_running_loop().create_future()
        self._queued.append((trades, waiter))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_queued(), name="duckdb-group-commit")
        return await waiter

    async def _write_beside(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        """`trades` in a transaction of their own on the side writer, while the writer's runs. The writer
        starts no other transaction until this one ended (the next may hold its markets). If DuckDB
        reports a conflict all the same, the batch is written by the writer, after what it holds."""
        side = self._side = asyncio.ensure_future(self._side_write(trades))
        try:
            return await asyncio.shield(side)  # written even if the caller goes away
        except duckdb.TransactionException:
            return await self._queue(trades)

    def _side_idle(self) -> bool:
        return self._side is None or self._side.done()

    async def _side_ended(self) -> None:
        """Once the side writer's transaction (if one runs) has ended, whatever its outcome."""
        if self._side is not None and not self._side.done():
            await asyncio.wait([self._side])

    async def _side_write(self, trades: Sequence[Trade]) -> Sequence[Trade]:
        added: list[MarketExtents] = []
        insert = functools.partial(self._insert, batches=[trades], added=added, merger=self._side_merger)
        (new,) = await self._run(self._side_writer, insert, added=added)
        return new

    async def _commit_queued(self) -> None:
        try:
            while self._queued:
                await self._side_ended()  # it may hold markets of the next group
                group, self._queued = self._queued, []
                self._in_flight, self._in_flight_names = [trades for trades, _ in group], None
                try:
                    await self._commit_group(group)
                finally:
                    self._in_flight = self._in_flight_names = None
        finally:
            self._committer = None

    async def _commit_group(self, group: list[tuple[Sequence[Trade], asyncio.Future[Sequence[Trade]]]]) -> None:
        """One transaction for the group; if it fails, each call again on its own, so one bad batch fails
        only its own call (each transaction is all or nothing)."""
        added: list[MarketExtents] = []
        insert = functools.partial(self._insert, batches=[trades for trades, _ in group], added=added)
        try:
            results = await self._run(self._writer, insert, added=added)
        except BaseException as error:
            if isinstance(error, Exception) and len(group) > 1:
                for member in group:
                    await self._commit_group([member])
                return
            for _, waiter in group:
                if not waiter.done():
                    waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, waiter), new in zip(group, results, strict=True):
            if not waiter.done():
                waiter.set_result(new)

    def _insert(
        self,
        cursor: Cursor,
        batches: Sequence[Sequence[Trade]],
        added: list[MarketExtents],
        merger: RollupMerger | None = None,
    ) -> list[Sequence[Trade]]:
        """One transaction for several calls' batches; per call, its trades that were new (a trade in two
        calls, or twice in one, counts for the first). Rows go in column-wise; rollups are merged in SQL.
        Once committed, the bounds of the new trades per market go into `added`. `merger`: the rollup
        merger of the calling thread's cursor (the writer's by default)."""
        parts = [trades_table(batch) for batch in batches]
        incoming = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        keys: list[list[tuple[str, str, str]]] | None = None  # built in Python only when needed
        cursor.begin()
        try:
            # The usual case, every trade new, needs only the count: asking for the new rows back (RETURNING)
            # costs ~15% of the insert. Else the insert is redone, returning them: and if a key repeats within
            # the group, with its first copies only (which copy DuckDB would keep is not defined).
            inserted = incoming
            if _insert_rows(cursor, incoming) < incoming.num_rows:
                cursor.rollback()
                cursor.begin()
                if _distinct_keys(incoming) < incoming.num_rows:
                    keys = _keys(batches)
                    incoming = incoming.take(_first_occurrences(keys))
                inserted = _insert_returning(cursor, incoming)
            (merger or self._merger).merge(cursor, inserted)
            cursor.commit()
        except BaseException:
            cursor.rollback()
            raise
        added.append(_extents(inserted))
        if inserted.num_rows == incoming.num_rows == sum(map(len, batches)):  # all new: the usual case
            return [batch if isinstance(batch, TradeBatch) else list(batch) for batch in batches]
        if keys is None:
            keys = _keys(batches)
        fresh = set(zip(*(inserted.column(name).to_pylist() for name in _KEY), strict=True))
        results: list[Sequence[Trade]] = []
        for batch, batch_keys in zip(batches, keys, strict=True):
            new: list[Trade] = []
            for key, trade in zip(batch_keys, batch, strict=True):
                if key in fresh:
                    fresh.discard(key)  # a later copy of the same trade is a duplicate
                    new.append(trade)
            results.append(new)
        return results

    async def rebuild_rollups(self) -> None:
        """Recompute every rollup tier from the trades (after a bulk load, or as a repair)."""
        await self._run(self._writer, self._rebuild)

    def _rebuild(self, cursor: Cursor) -> None:
        cursor.begin()
        try:
            cursor.execute("DELETE FROM rollups")
            for label in sql.TIERS:  # finest first: each tier is built from the previous one
                cursor.execute(sql.rebuild_tier(label))
            cursor.commit()
        except BaseException:
            cursor.rollback()
            raise

    # -- reads --------------------------------------------------------------------------------------

    async def candles(self, query: CandleQuery) -> list[tuple[int, Aggregate]]:
        return await self._read(
            lambda cursor: read_candles(cursor, self._local.prepared, self._bounds, query, self._reach)
        )

    async def symbols(self, exchanges: tuple[str, ...]) -> list[SymbolSummary]:
        generation = self._writes  # before the statement: a write meanwhile voids what it reads
        known = self._symbols.get(exchanges)
        if known is not None and known[0] == generation:
            return list(known[1])
        rows = await self._read(lambda cursor: cursor.execute(sql.symbols(len(exchanges)), list(exchanges)).fetchall())
        summaries = [
            SymbolSummary(
                symbol=symbol,
                exchanges=tuple(names),
                trade_count=int(count),
                first_trade_us=first,
                last_trade_us=last,
                last_price=with_scale(price, scale),
            )
            for symbol, names, count, first, last, price, scale in rows
        ]
        if generation == self._writes:
            self._symbols[exchanges] = (generation, summaries)
        return list(summaries)

    async def window_stats(
        self, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
    ) -> dict[str, WindowStats]:
        return await self._read(lambda cursor: window_stats(cursor, symbols, exchanges, start_us, end_us))

    async def trades(self, query: TradeQuery) -> list[Trade]:
        return await self._read(lambda cursor: read_trades(cursor, query))

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer  # what was accepted is written before the file closes
        await self._side_ended()
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self._side_writer.shutdown(wait=True)
        with self._cursors_lock:
            for cursor in self._cursors:
                cursor.close()
        self._connection.close()


def _names(batches: Sequence[Sequence[Trade]]) -> tuple[set[str], set[str]]:
    """The exchanges and the symbols the batches hold."""
    exchanges: set[str] = set()
    symbols: set[str] = set()
    for batch in batches:
        exchanges |= exchanges_of(batch)
        symbols |= symbols_of(batch)
    return exchanges, symbols


def _extents(trades: pa.Table) -> MarketExtents:
    """First and last time and count of `trades` per (symbol, exchange), computed by Arrow."""
    grouped = trades.group_by(["symbol", "exchange"], use_threads=False).aggregate(
        [("time_us", "min"), ("time_us", "max"), ("time_us", "count")]
    )
    return {
        (row["symbol"], row["exchange"]): (row["time_us_min"], row["time_us_max"], row["time_us_count"])
        for row in grouped.to_pylist()
    }


def _insert_rows(cursor: Cursor, incoming: pa.Table) -> int:
    """INSERT OR IGNORE the rows; how many were new."""
    cursor.register("incoming", incoming)
    row = cursor.execute(f"INSERT OR IGNORE INTO trades ({COLUMNS}) SELECT {COLUMNS} FROM incoming").fetchone()
    cursor.unregister("incoming")
    return int(row[0]) if row is not None else 0


def _insert_returning(cursor: Cursor, incoming: pa.Table) -> pa.Table:
    """INSERT OR IGNORE the rows; the ones that were new."""
    cursor.register("incoming", incoming)
    inserted = cursor.sql(
        f"INSERT OR IGNORE INTO trades ({COLUMNS}) SELECT {COLUMNS} FROM incoming RETURNING {COLUMNS}"
    ).to_arrow_table()  # sql(): executes at once, and its Arrow result is not copied again
    cursor.unregister("incoming")
    return inserted


def _distinct_keys(incoming: pa.Table) -> int:
    """How many distinct trade keys the rows hold (counted by Arrow: no Python per trade)."""
    return int(incoming.group_by(list(_KEY), use_threads=False).aggregate([]).num_rows)


def _keys(batches: Sequence[Sequence[Trade]]) -> list[list[tuple[str, str, str]]]:
    """Each batch's trade keys, in order."""
    return [
        list(zip(columns.exchange, columns.symbol, columns.trade_id, strict=True))
        for columns in (columns_of(batch) for batch in batches)
    ]


def _first_occurrences(keys: list[list[tuple[str, str, str]]]) -> list[int]:
    """Row numbers (across the batches, in order) of each key's first occurrence."""
    seen: set[tuple[str, str, str]] = set()
    rows: list[int] = []
    for row, key in enumerate(key for part in keys for key in part):
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


class _Counting:
    """A cursor that counts the statements it executes into the store's `round_trips`."""

    def __init__(self, store: DuckDBTradeStore, cursor: Cursor) -> None:
        self._store = store
        self._cursor = cursor

    def execute(self, query: str, parameters: object = None) -> Cursor:
        self._store.round_trips += 1
        return self._cursor.execute(query, parameters)

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        self._store.round_trips += 1
        return self._cursor.sql(query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)
