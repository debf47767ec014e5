"""Incremental rollup maintenance: merge the new trades into the stored buckets, exactly, in SQL.

A bucket is a partial aggregate that merges associatively: open/close are the first/last trade by
(time, trade id; numeric ids numerically), high/low are max/min, volumes and counts add, precisions
take the max. Only trades that were really inserted (duplicates already dropped) are merged, so ingest
stays idempotent, and a late trade simply merges into the old bucket it belongs to.

ONE statement per ingest transaction does it all inside DuckDB, however many trades it holds: the trades
are aggregated into 1m buckets per run of SLICE_TRADES consecutive trades (DECIMAL sums: at most
SLICE_TRADES values below 10^16 each stay below DECIMAL(38, 18)'s 10^20, so they are exact), those are
split into limbs (whose sums cannot overflow) and grouped per tier with the stored rows of the buckets
they touch (`sql.AGGREGATES`, the aggregation `rebuild_rollups` uses), and written back with INSERT OR
REPLACE. No Python runs per trade; the cost follows the batch, not the history. Planning this statement
costs about as much as running it on 10,000 trades, so one statement per transaction (not per slice)
is what lets larger transactions pay less per trade.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from wadm_grpc.domain.timeframe import Rollup
from wadm_grpc.stores.duckdb import sql
from wadm_grpc.stores.duckdb.reads import Cursor

# Most trades summed as DECIMAL into one partial bucket (see above: their sums cannot overflow).
SLICE_TRADES = 10_000
# (tier label, size of its buckets in microseconds; 0 for the one-row-per-market tier), 1m excepted.
_COARSER = (*((tier.label, tier.micros) for tier in Rollup if tier is not Rollup.M1), (sql.MARKET_TIER, 0))
# The value columns of a bucket row (BUCKET_COLUMNS after its keys: symbol, exchange, bucket).
_VALUES = sql.BUCKET_COLUMNS.split(", ", 3)[3]
# Open/close pick the first/last trade by (time, id length, id): within one market, numeric ids
# numerically. The slice comes sorted by that key (Arrow, outside the statement), so its row number
# `ordinal` is the key: arg_min/arg_max over one BIGINT instead of a (time, length, id) struct.
_ORDER = "ordinal"


def _limbs(name: str) -> str:
    """A non-negative DECIMAL(38, 18) sum as the limbs `name`_whole, `name`_fraction."""
    whole = f"CAST(trunc({name}) AS HUGEINT)"
    fraction = f"CAST(({name} - trunc({name})) * {sql.FRACTION_UNITS} AS BIGINT)"
    return f"{whole} AS {name}_whole, {fraction} AS {name}_fraction"


def merge_statement(source: str) -> str:
    """Merge the trades of `source` (rows of the trades table plus their `ordinal`, see `ordered`) into
    every tier."""
    coarser = "".join(
        f"\n    UNION ALL SELECT '{label}', symbol, exchange, {f'bucket - bucket % {size}' if size else '0'}, {_VALUES}"
        " FROM minutes"
        for label, size in _COARSER
    )
    stored = ", ".join(f"r.{column}" for column in sql.BUCKET_COLUMNS.split(", "))
    return f"""
INSERT OR REPLACE INTO rollups
WITH sums AS MATERIALIZED (
    SELECT symbol, exchange, time_us - time_us % {Rollup.M1.micros} AS bucket,
           arg_min(price, {_ORDER}) AS open, min(time_us) AS open_us, arg_min(trade_id, {_ORDER}) AS open_id,
           max(price) AS high, min(price) AS low,
           arg_max(price, {_ORDER}) AS close, max(time_us) AS close_us, arg_max(trade_id, {_ORDER}) AS close_id,
           sum(quantity) AS volume, sum(quote) AS quote, count(*) AS trade_count,
           coalesce(sum(quantity) FILTER (WHERE is_buy), 0) AS buy_volume,
           coalesce(sum(quote) FILTER (WHERE is_buy), 0) AS buy_quote,
           max(price_scale) AS price_scale, max(quantity_scale) AS quantity_scale,
           max(price_scale + quantity_scale) AS quote_scale
    FROM {source}
    GROUP BY symbol, exchange, time_us - time_us % {Rollup.M1.micros}, ordinal // {SLICE_TRADES}
),
minutes AS MATERIALIZED (
    SELECT symbol, exchange, bucket, open, open_us, open_id, high, low, close, close_us, close_id,
           {_limbs("volume")}, {_limbs("quote")}, trade_count, {_limbs("buy_volume")}, {_limbs("buy_quote")},
           price_scale, quantity_scale, quote_scale
    FROM sums
),
deltas AS (
    SELECT '{Rollup.M1.label}' AS tier, {sql.BUCKET_COLUMNS} FROM minutes{coarser}
),
touched AS (SELECT DISTINCT tier, symbol, exchange, bucket FROM deltas)
SELECT tier, symbol, exchange, bucket, {sql.AGGREGATES}
FROM (
    SELECT * FROM deltas
    UNION ALL
    SELECT r.tier, {stored} FROM rollups AS r SEMI JOIN touched AS k
    ON r.tier = k.tier AND r.symbol = k.symbol AND r.exchange = k.exchange AND r.bucket = k.bucket
)
GROUP BY tier, symbol, exchange, bucket"""


def ordered(trades: pa.Table) -> pa.Table:
    """`trades` sorted by (time, id length, id), with their position in that order as `ordinal`
    (DuckDB and Arrow both compare text by its UTF-8 bytes, so the order is the same as in SQL)."""
    keyed = trades.append_column("id_length", pc.utf8_length(trades.column("trade_id")))
    order = pc.sort_indices(
        keyed, sort_keys=[("time_us", "ascending"), ("id_length", "ascending"), ("trade_id", "ascending")]
    )
    return trades.take(order).append_column("ordinal", pa.array(range(trades.num_rows), pa.int64()))


class RollupMerger:
    """Merges new trades into the rollups on one cursor (the writer's), with the statement prepared
    once: planning it costs more than running it on a batch."""

    _NAME = "wadm_merge_rollups"

    def __init__(self) -> None:
        self._prepared = False

    def merge(self, cursor: Cursor, new: pa.Table) -> None:
        """Merge freshly inserted trades (rows of the trades table) into every tier, inside the ingest
        transaction: one statement."""
        if not new.num_rows:
            return
        cursor.register("new_trades", ordered(new))
        if not self._prepared:  # binding needs the view above: prepared on first use
            cursor.execute(f"PREPARE {self._NAME} AS {merge_statement('new_trades')}")
            self._prepared = True
        cursor.execute(f"EXECUTE {self._NAME}")
        cursor.unregister("new_trades")
