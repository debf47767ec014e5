"""Bulk load into the embedded DuckDB file while no server holds it (`import --direct`).

Rows go straight into `trades` with INSERT OR IGNORE (idempotent on the trade key), with no rollup work
per batch; the caller rebuilds the rollups ONCE at the end (`DuckDBTradeStore.rebuild_rollups`). The
columns are computed exactly as ingest computes them (`batches.columns_table`): decimals cast from their
text, price x quantity multiplied exactly in Arrow, precisions counted from the text.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from wadm_grpc.domain.errors import FailedPreconditionError
from wadm_grpc.stores.duckdb import sql
from wadm_grpc.stores.duckdb.batches import ARROW_DECIMAL, TRADE_COLUMNS, text_scales
from wadm_grpc.stores.duckdb.store import DuckDBTradeStore

_PRICE = pa.decimal256(38, 18)
_QUANTITY = pa.decimal256(37, 18)
_COLUMNS = ", ".join(TRADE_COLUMNS)
_CANONICAL_ID = "0|[1-9][0-9]{0,17}"


class DuckDBBulkLoader:
    """One import's writer on a DuckDB file: `load` batches, then `finish` (rollups rebuilt once)."""

    def __init__(self, store: DuckDBTradeStore, connection: duckdb.DuckDBPyConnection) -> None:
        self.store = store
        self._connection = connection
        self.loaded = 0

    @classmethod
    def open(cls, path: str | Path) -> DuckDBBulkLoader:
        """Open (creating or migrating) the file; FailedPreconditionError if another process holds it."""
        try:
            store = DuckDBTradeStore(path)
        except duckdb.IOException as error:
            raise FailedPreconditionError(
                f"the store {path} is locked by another process (a running server?): stop it, or import "
                f"through it without --direct ({str(error).splitlines()[0]})"
            ) from error
        return cls(store, duckdb.connect(str(path)))  # same process: shares the store's database instance

    def stored_range(self, exchange: str, symbol: str) -> tuple[int, int] | None:
        """[low, high] when the market's ids are canonical integers forming one contiguous run (then every
        id of the run is stored), else None."""
        row = self._connection.execute(
            f"""SELECT count(*), count(*) FILTER (WHERE regexp_full_match(trade_id, '{_CANONICAL_ID}')),
                       min(TRY_CAST(trade_id AS BIGINT)), max(TRY_CAST(trade_id AS BIGINT))
                FROM trades WHERE exchange = ? AND symbol = ?""",
            [exchange, symbol],
        ).fetchall()[0]
        if not row[0] or row[0] != row[1] or row[3] - row[2] + 1 != row[0]:
            return None
        return int(row[2]), int(row[3])

    def load(self, exchange: str, symbol: str, rows: pa.Table) -> int:
        """Insert validated rows (trade_id, price, quantity, time_us, is_buy) of one market; how many were new."""
        price_text, quantity_text = rows.column("price"), rows.column("quantity")
        price = pc.cast(price_text, _PRICE)
        quantity = pc.cast(quantity_text, _QUANTITY)
        incoming = pa.table(
            {
                "trade_id": rows.column("trade_id"),
                "time_us": rows.column("time_us"),
                "price": pc.cast(price, ARROW_DECIMAL),
                "quantity": pc.cast(quantity_text, ARROW_DECIMAL),
                "quote": pc.cast(pc.multiply(price, quantity), ARROW_DECIMAL),
                "price_scale": text_scales(price_text),
                "quantity_scale": text_scales(quantity_text),
                "is_buy": rows.column("is_buy"),
            }
        )
        first_only = ""
        if pc.count_distinct(incoming.column("trade_id")).as_py() != incoming.num_rows:
            # A key twice in one statement is not "ignored" by DuckDB: keep each first occurrence.
            incoming = incoming.append_column("row_number", pa.array(range(rows.num_rows), pa.int64()))
            first_only = "QUALIFY row_number() OVER (PARTITION BY trade_id ORDER BY row_number) = 1"
        select = _COLUMNS.replace("exchange", "?", 1).replace("symbol", "?", 1)
        self._connection.register("incoming", incoming)
        try:
            row = self._connection.execute(
                f"INSERT OR IGNORE INTO trades ({_COLUMNS}) SELECT {select} FROM incoming {first_only}",
                [exchange, symbol],
            ).fetchall()
        finally:
            self._connection.unregister("incoming")
        inserted = int(row[0][0]) if row else 0
        self.loaded += inserted
        return inserted

    def rollups_behind(self) -> bool:
        """Whether the rollups miss trades (a bulk load killed before its rebuild)."""
        row = self._connection.execute(
            f"""SELECT (SELECT count(*) FROM trades),
                       (SELECT coalesce(sum(trade_count), 0) FROM rollups WHERE tier = '{sql.MARKET_TIER}')"""
        ).fetchall()[0]
        return bool(row[0] != row[1])

    async def finish(self) -> bool:
        """Rebuild the rollups once (when anything was loaded, or an earlier load left them behind) and
        close the file; whether they were rebuilt."""
        try:
            stale = self.loaded > 0 or self.rollups_behind()
            self._connection.close()
            if stale:
                await self.store.rebuild_rollups()
        finally:
            await self.store.close()
        return stale
