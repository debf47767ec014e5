"""Incremental rollup maintenance: merge the new trades into the stored buckets, exactly.

A bucket is a partial aggregate that merges associatively: open/close are the first/last trade by
(time, trade id; numeric ids numerically), high/low are max/min, volumes and counts add, precisions
take the max. Only trades that were really inserted (duplicates already dropped) are merged, so ingest
stays idempotent, and a late trade simply merges into the old bucket it belongs to. This costs a few
small statements per batch, independent of how much history is stored; `rebuild_rollups` recomputes
everything from the trades with SQL when a full pass is wanted.

Sums are Decimals here (EXACT context: never rounded, no bound that trades can reach) and whole/fraction
limbs in the table (see sql.py), so no total, however large, is ever refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

from wadm_grpc.domain.decimals import EXACT, MAX_SCALE, scale_of
from wadm_grpc.domain.timeframe import Rollup
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.stores.duckdb import sql
from wadm_grpc.stores.duckdb.batches import ARROW_DECIMAL
from wadm_grpc.stores.duckdb.reads import Cursor

_ZERO = Decimal(0)
BucketKey = tuple[str, str, str, int]  # tier, symbol, exchange, bucket start


def _order(time_us: int, trade_id: str) -> tuple[int, int, str]:
    return (time_us, len(trade_id), trade_id)


def to_limbs(value: Decimal) -> tuple[int, int]:
    """A non-negative sum (at most MAX_SCALE decimals) as (whole, fraction in units of 10^-MAX_SCALE)."""
    return divmod(int(value.scaleb(MAX_SCALE, context=EXACT)), sql.FRACTION_UNITS)


def from_limbs(whole: int, fraction: int) -> Decimal:
    """The exact sum that `to_limbs` split."""
    return EXACT.add(Decimal(whole), Decimal(fraction).scaleb(-MAX_SCALE, context=EXACT))


@dataclass(slots=True)
class Bucket:
    """One (symbol, exchange, bucket) aggregate, mergeable."""

    open: Decimal
    open_us: int
    open_id: str
    high: Decimal
    low: Decimal
    close: Decimal
    close_us: int
    close_id: str
    volume: Decimal
    quote: Decimal
    trade_count: int
    buy_volume: Decimal
    buy_quote: Decimal
    price_scale: int
    quantity_scale: int
    quote_scale: int

    @classmethod
    def of_trade(cls, trade: Trade) -> Bucket:
        quote = trade.quote_quantity
        buy = trade.side is Side.BUY
        price_scale, quantity_scale = scale_of(trade.price), scale_of(trade.quantity)
        return cls(
            open=trade.price,
            open_us=trade.time_us,
            open_id=trade.trade_id,
            high=trade.price,
            low=trade.price,
            close=trade.price,
            close_us=trade.time_us,
            close_id=trade.trade_id,
            volume=trade.quantity,
            quote=quote,
            trade_count=1,
            buy_volume=trade.quantity if buy else _ZERO,
            buy_quote=quote if buy else _ZERO,
            price_scale=price_scale,
            quantity_scale=quantity_scale,
            quote_scale=price_scale + quantity_scale,
        )

    @classmethod
    def of_row(cls, values: Sequence[Any]) -> Bucket:
        """A bucket from a stored row's value columns (after the key columns), sums as limbs."""
        columns = iter(values)
        fields: list[Any] = [
            from_limbs(next(columns), next(columns)) if name in sql.SUMS else next(columns) for name in _FIELDS
        ]
        return cls(*fields)

    def merge(self, other: Bucket) -> None:
        """Fold `other` (trades of the same bucket not counted yet) into this one."""
        if _order(other.open_us, other.open_id) < _order(self.open_us, self.open_id):
            self.open, self.open_us, self.open_id = other.open, other.open_us, other.open_id
        if _order(other.close_us, other.close_id) > _order(self.close_us, self.close_id):
            self.close, self.close_us, self.close_id = other.close, other.close_us, other.close_id
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        # EXACT: the default context rounds to 28 digits; stored values have up to 38.
        self.volume = EXACT.add(self.volume, other.volume)
        self.quote = EXACT.add(self.quote, other.quote)
        self.trade_count += other.trade_count
        self.buy_volume = EXACT.add(self.buy_volume, other.buy_volume)
        self.buy_quote = EXACT.add(self.buy_quote, other.buy_quote)
        self.price_scale = max(self.price_scale, other.price_scale)
        self.quantity_scale = max(self.quantity_scale, other.quantity_scale)
        self.quote_scale = max(self.quote_scale, other.quote_scale)


_FIELDS = list(Bucket.__dataclass_fields__)
assert set(sql.SUMS) <= set(_FIELDS)
# (tier label, size of its buckets in microseconds; 0 for the one-row-per-market tier).
_TIERS = (*((tier.label, tier.micros) for tier in Rollup), (sql.MARKET_TIER, 0))


def _deltas(trades: Iterable[Trade]) -> dict[BucketKey, Bucket]:
    """The new trades aggregated per (tier, symbol, exchange, bucket)."""
    deltas: dict[BucketKey, Bucket] = {}
    for trade in trades:
        single = Bucket.of_trade(trade)
        for label, size in _TIERS:
            start = trade.time_us - trade.time_us % size if size else 0
            key = (label, trade.symbol, trade.exchange, start)
            found = deltas.get(key)
            if found is None:
                deltas[key] = dataclasses.replace(single)
            else:
                found.merge(single)
    return deltas


def _table(buckets: dict[BucketKey, Bucket] | None, keys: Iterable[BucketKey]) -> pa.Table:
    """Arrow rows of `rollups` (all columns when `buckets` is given, else just the keys)."""
    keys = list(keys)
    columns: dict[str, pa.Array] = {
        "tier": pa.array([k[0] for k in keys], pa.string()),
        "symbol": pa.array([k[1] for k in keys], pa.string()),
        "exchange": pa.array([k[2] for k in keys], pa.string()),
        "bucket": pa.array([k[3] for k in keys], pa.int64()),
    }
    if buckets is not None:
        rows = [buckets[key] for key in keys]
        for name in _FIELDS:
            values = [getattr(row, name) for row in rows]
            if name in sql.SUMS:
                limbs = [to_limbs(value) for value in values]
                columns[f"{name}_whole"] = pa.array([whole for whole, _ in limbs], _ARROW_WHOLE)
                columns[f"{name}_fraction"] = pa.array([fraction for _, fraction in limbs], pa.int64())
            else:
                columns[name] = pa.array(values, _TYPES.get(name, pa.string()))
    return pa.table(columns)


# Arrow has no 128-bit integer; DuckDB casts these to HUGEINT on insert (both hold every whole limb
# below 10^38).
_ARROW_WHOLE = pa.decimal128(38, 0)
_TYPES = dict.fromkeys("open high low close".split(), ARROW_DECIMAL)
_TYPES.update({name: pa.int64() for name in ("open_us", "close_us", "trade_count")})
_TYPES.update({name: pa.uint8() for name in ("price_scale", "quantity_scale", "quote_scale")})


def merge_into_rollups(cursor: Cursor, new: Sequence[Trade]) -> None:
    """Merge freshly inserted trades into every tier (inside the ingest transaction): one read, one write."""
    deltas = _deltas(new)
    starts = [key[3] for key in deltas]
    cursor.register("delta_keys", _table(None, deltas))
    stored = cursor.execute(
        "SELECT r.* FROM rollups AS r SEMI JOIN delta_keys AS k "
        "ON r.tier = k.tier AND r.symbol = k.symbol AND r.exchange = k.exchange AND r.bucket = k.bucket "
        "WHERE r.bucket >= ? AND r.bucket <= ?",
        [min(starts), max(starts)],
    ).fetchall()
    cursor.unregister("delta_keys")
    for tier, symbol, exchange, start, *values in stored:
        key = (tier, symbol, exchange, start)
        merged = Bucket.of_row(values)
        merged.merge(deltas[key])
        deltas[key] = merged
    table = _table(deltas, deltas)
    names = ", ".join(table.column_names)  # named: the Arrow table and the table need not agree on order
    cursor.register("merged", table)
    cursor.execute(f"INSERT OR REPLACE INTO rollups ({names}) SELECT {names} FROM merged")
    cursor.unregister("merged")
