"""Candle reads: one prepared statement per statement shape and read cursor, a first window sized by the
market's density, decimals formatted in SQL and passed through to the wire as text.

Why (issue 12): planning and binding a candle statement cost DuckDB about as much as running it, so each
read cursor PREPAREs each shape (tier, timeframe, number of exchanges, order) once and EXECUTEs it with
literal arguments (DuckDB's EXECUTE takes no `?` parameters; the names are validated and quoted). The
first window is as long as should hold `limit` non-empty buckets at the market's average trade density,
so sparse history is read in one statement, not in a series of 4x-widening misses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableSet

from wadm_grpc.domain.aggregate import Aggregate
from wadm_grpc.ports import CandleQuery
from wadm_grpc.stores.duckdb import sql
from wadm_grpc.stores.duckdb.reads import Cursor, aggregate_of, widening_windows

# The first window holds this many times the buckets the density predicts (trades cluster).
MARGIN = 1.25
# A market's first and last trade time and trade count.
Bounds = tuple[int, int, int]


class MarketBounds:
    """Market bounds remembered between reads: a read-only snapshot (or a quiet writer) then spends one
    statement per candle read, not two. Entries carry the write generation they were read in; every
    committed write starts a new one (`written`). An ingest that says which markets it reached (and the
    first/last time and count of what it added) widens the current entries instead of voiding them, so
    reads during ingest keep their one statement; any other write voids them all.

    Widening keeps the remembered bounds a superset of the stored ones (a rolled-back write may widen
    them too much): a too-wide window only costs a wider read, never a candle.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._known: dict[tuple[str, tuple[str, ...]], tuple[int, Bounds | None]] = {}

    def written(self, added: Mapping[tuple[str, str], Bounds] | None = None) -> None:
        """A write was committed (called after the commit: an entry read meanwhile is voided too).
        `added`: per (symbol, exchange), the bounds of the trades it added; None when unknown."""
        current = self._generation
        self._generation = current + 1
        if added is None:
            self._known = {}
            return
        kept: dict[tuple[str, tuple[str, ...]], tuple[int, Bounds | None]] = {}
        for key, (generation, bounds) in tuple(self._known.items()):  # readers insert meanwhile
            if generation != current:
                continue
            symbol, exchanges = key
            for (market_symbol, exchange), (first_us, last_us, trades) in added.items():
                if market_symbol == symbol and (not exchanges or exchange in exchanges):
                    bounds = (
                        (first_us, last_us, trades)
                        if bounds is None
                        else (min(bounds[0], first_us), max(bounds[1], last_us), bounds[2] + trades)
                    )
            kept[key] = (self._generation, bounds)
        self._known = kept

    def read(self, cursor: Cursor, symbol: str, exchanges: tuple[str, ...]) -> Bounds | None:
        """The bounds of (symbol, exchanges), None for a market without trades."""
        generation = self._generation  # before the statement: a write meanwhile voids what it reads
        known = self._known.get((symbol, exchanges))
        if known is not None and known[0] == generation:
            return known[1]
        row = cursor.execute(sql.market_bounds(len(exchanges)), [symbol, *exchanges]).fetchone()
        bounds = None if row is None or row[0] is None else (int(row[0]), int(row[1]), int(row[2]))
        self._known[(symbol, exchanges)] = (generation, bounds)
        return bounds


def literal(value: str) -> str:
    """A SQL string literal (EXECUTE takes literals only)."""
    return "'" + value.replace("'", "''") + "'"


def first_span_buckets(limit: int, bucket_us: int, first_us: int, last_us: int, trades: int) -> int:
    """Buckets a window needs to hold `limit` non-empty ones, for trades spread evenly (Poisson) over
    [first_us, last_us]."""
    per_bucket = trades * bucket_us / max(1, last_us - first_us + 1)
    non_empty = -math.expm1(-per_bucket) if per_bucket > 0 else 1.0
    return max(limit, math.ceil(limit / max(non_empty, 1e-9) * MARGIN))


def read_candles(
    cursor: Cursor, prepared: MutableSet[str], bounds: MarketBounds, query: CandleQuery
) -> list[tuple[int, Aggregate]]:
    """The query's candles, oldest first. `prepared`: the statement names this cursor has prepared."""
    row = bounds.read(cursor, query.symbol, query.exchanges)
    if row is None:
        return []
    timeframe = query.timeframe
    size = timeframe.micros
    first = timeframe.bucket_start(row[0])
    last = timeframe.bucket_start(row[1])
    span = first_span_buckets(query.limit, size, row[0], row[1], int(row[2]))
    if query.start_us is not None:
        first = max(first, -(-(query.start_us - timeframe.offset_us) // size) * size + timeframe.offset_us)
    if query.end_us is not None:
        last = min(last, timeframe.bucket_start(query.end_us))
    order = "newest" if query.newest_first else "oldest"
    name = f"wadm_candles_{timeframe.label}_{len(query.exchanges)}_{order}"
    if name not in prepared:
        statement = sql.candles(
            timeframe.rollup,
            timeframe_us=size,
            offset_us=timeframe.offset_us,
            exchanges=len(query.exchanges),
            newest_first=query.newest_first,
        )
        cursor.execute(f"PREPARE {name} AS {statement}")
        prepared.add(name)
    names = ", ".join(literal(value) for value in (query.symbol, *query.exchanges))
    found: list[tuple[int, Aggregate]] = []
    for window_low, window_high in widening_windows(
        first, last, span * size, step=size, newest_first=query.newest_first
    ):
        if len(found) >= query.limit:
            break
        wanted = query.limit - len(found)
        rows = cursor.execute(f"EXECUTE {name}({names}, {window_low}, {window_high + size}, {wanted})").fetchall()
        found.extend((open_time, aggregate_of(rest)) for open_time, *rest in rows)
    found.sort(key=lambda item: item[0])
    return found
