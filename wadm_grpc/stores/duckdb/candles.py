"""Candle reads: one prepared statement per statement shape and read cursor, a first window sized by the
market's density, decimals formatted in SQL and passed through to the wire as text.

Why (issue 12): planning and binding a candle statement cost DuckDB about as much as running it, so each
read cursor PREPAREs each shape (tier, timeframe, number of exchanges, order) once and EXECUTEs it with
literal arguments (DuckDB's EXECUTE takes no `?` parameters; the names are validated and quoted). The
first window is as long as should hold `limit` non-empty buckets at the market's average trade density,
so sparse history is read in one statement, not in a series of 4x-widening misses; where the history is
clustered (a sparse past, a dense last hour), the window the last read of the same shape needed is
remembered and the next read starts there (`CandleReach`), with that window exactly when the anchor
has not moved.
"""

from __future__ import annotations

import math
import threading
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


class CandleReach:
    """How far back (or forward) from its anchor bucket the last read of each candle query shape had to
    look for its candles, so the next read of that shape starts with a window that holds them.

    Why (issue 12): the density estimate assumes trades spread evenly over the market's history; an
    ingest of the last hour into a sparse market makes it think 500 1m candles lie within a few
    thousand minutes, and every read during the ingest paid two or three widening statements instead
    of one. A hint never changes what a read returns (the widening windows still follow), only where it
    starts; each read replaces it with what it found, so a hint that grew too wide is corrected by the
    next read. When the anchor has not moved, the window is exactly the last one: the density
    estimate's margin made it ~25% wider, and DuckDB aggregates every bucket of the window.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._reach: dict[tuple[str, tuple[str, ...], str, bool], tuple[int, int, int, bool]] = {}

    def span(self, query: CandleQuery, anchor: int, estimate: int) -> int:
        """The first window (buckets) for `query` from `anchor`: at least what the last read of this shape
        needed (scaled to `query.limit`) or `estimate`, whichever is longer; but no longer than the last
        window moved with the anchor, when that read found as many candles as `query` asks for (it held
        them all: a read-only snapshot reads exactly its candles' range)."""
        known = self._reach.get(_shape(query))
        if known is None:
            return estimate
        limit, reach, last_anchor, filled = known
        span = max(estimate, math.ceil(reach * query.limit / limit))
        if filled and limit >= query.limit:
            span = min(span, reach + abs(anchor - last_anchor) // query.timeframe.micros)
        return span

    def found(self, query: CandleQuery, reach: int, anchor: int, *, filled: bool) -> None:
        """A read of `query` found its candles within `reach` buckets of its `anchor` bucket; `filled`: as
        many as it asked for (else `reach` spans the whole history it could read)."""
        reaches, shape = self._reach, _shape(query)
        with self._lock:  # reader threads race here
            if len(reaches) >= self._max_entries and shape not in reaches:
                del reaches[next(iter(reaches))]  # the oldest entry
            reaches[shape] = (query.limit, reach, anchor, filled)


def _shape(query: CandleQuery) -> tuple[str, tuple[str, ...], str, bool]:
    return (query.symbol, query.exchanges, query.timeframe.label, query.newest_first)


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
    cursor: Cursor, prepared: MutableSet[str], bounds: MarketBounds, query: CandleQuery, reach: CandleReach
) -> list[tuple[int, Aggregate]]:
    """The query's candles, oldest first. `prepared`: the statement names this cursor has prepared;
    `reach`: where earlier reads of the same shape found their candles (read and updated)."""
    row = bounds.read(cursor, query.symbol, query.exchanges)
    if row is None:
        return []
    timeframe = query.timeframe
    size = timeframe.micros
    first = timeframe.bucket_start(row[0])
    last = timeframe.bucket_start(row[1])
    if query.start_us is not None:
        first = max(first, -(-(query.start_us - timeframe.offset_us) // size) * size + timeframe.offset_us)
    if query.end_us is not None:
        last = min(last, timeframe.bucket_start(query.end_us))
    anchor = last if query.newest_first else first
    span = reach.span(query, anchor, first_span_buckets(query.limit, size, row[0], row[1], int(row[2])))
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
    # The farthest candle from the anchor bounds what the next read needs; with fewer than asked, every
    # window was read.
    filled = len(found) >= query.limit
    far = last - first
    if filled:
        far = (last - found[0][0]) if query.newest_first else (found[-1][0] - first)
    if far >= 0:
        reach.found(query, far // size + 1, anchor, filled=filled)
    return found
