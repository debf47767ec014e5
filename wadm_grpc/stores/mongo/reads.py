"""Mongo reads: candles and window stats from rollups (plus raw edges), symbols, newest-first trade pages."""

from __future__ import annotations

from collections.abc import Sequence

from wadm_grpc.domain.aggregate import Aggregate, SymbolSummary, WindowStats
from wadm_grpc.domain.decimals import with_scale
from wadm_grpc.domain.timeframe import window_pieces
from wadm_grpc.domain.trade import Trade
from wadm_grpc.ports import CandleQuery, TradeQuery
from wadm_grpc.stores.mongo import pipelines
from wadm_grpc.stores.mongo.commands import BY_ROLLUP_KEY, BY_SYMBOL_TIME, Commands
from wadm_grpc.stores.mongo.documents import Document, aggregate_of, decimal_of, trade_of, us_of_datetime


async def candles(db: Commands, query: CandleQuery) -> list[tuple[int, Aggregate]]:
    """Candles from the coarsest rollup tier dividing the timeframe, in one aggregation (two when the
    exchanges are not given: their number bounds the rows read)."""
    timeframe = query.timeframe
    tier = timeframe.rollup
    exchanges = len(query.exchanges) or await db.count("markets", {"symbol": query.symbol})
    if not exchanges or query.limit <= 0:
        return []
    size, offset = timeframe.micros, timeframe.offset_us
    low = None if query.start_us is None else -(-(query.start_us - offset) // size) * size + offset
    high = None if query.end_us is None else timeframe.bucket_start(query.end_us) + size
    pipeline = pipelines.candles(
        tier,
        symbol=query.symbol,
        exchanges=query.exchanges,
        low_us=low,
        high_us=high,
        timeframe_us=size,
        offset_us=offset,
        limit=query.limit,
        rows_per_candle=size // tier.micros * exchanges,
        newest_first=query.newest_first,
    )
    rows = await db.aggregate("rollups", pipeline, batch_size=query.limit + 1, hint=BY_ROLLUP_KEY)
    return sorted((int(row["_id"]), aggregate_of(row)) for row in rows)


async def window_stats(
    db: Commands, symbols: Sequence[str], exchanges: Sequence[str], start_us: int, end_us: int
) -> dict[str, WindowStats]:
    """Every symbol's aggregate over [start_us, end_us], in ONE aggregation."""
    if not symbols:
        return {}
    pieces = window_pieces(start_us, end_us)
    pipeline = pipelines.window_stats(
        symbols=symbols,
        exchanges=exchanges,
        raw=[(low, high) for tier, low, high in pieces if tier is None],
        rolled=[(tier, low, high) for tier, low, high in pieces if tier is not None],
        rollups_collection=db.names.rollups,
    )
    rows = await db.aggregate("trades", pipeline, batch_size=len(symbols) + 1)
    return {
        row["_id"]: WindowStats(symbol=row["_id"], exchanges=tuple(sorted(row["exchanges"])), ohlcv=aggregate_of(row))
        for row in rows
    }


async def symbols(db: Commands, exchanges: Sequence[str]) -> list[SymbolSummary]:
    """Every symbol with trades on `exchanges`, from the markets collection."""
    rows = await db.aggregate("markets", pipelines.symbols(exchanges))
    return [
        SymbolSummary(
            symbol=row["_id"],
            exchanges=tuple(sorted(row["exchanges"])),
            trade_count=int(row["count"]),
            first_trade_us=int(row["first_us"]),
            last_trade_us=int(row["last"]["t"]),
            last_price=with_scale(decimal_of(row["last"]["p"]), int(row["price_scale"])),
        )
        for row in rows
    ]


async def trades(db: Commands, query: TradeQuery) -> list[Trade]:
    """A newest-first page in two aggregations: how far back `limit` trades reach (read in index order),
    then those trades sorted exactly (time, exchange, numeric-aware id)."""
    if query.limit <= 0:
        return []
    high = query.end_us
    after: Document | None = None
    if query.cursor is not None:
        cursor = query.cursor
        high = cursor.time_us if high is None else min(high, cursor.time_us)
        after = {"t": cursor.time_us, "e": cursor.exchange, "l": len(cursor.trade_id), "i": cursor.trade_id}
    args = (query.symbol, query.exchanges)
    reach_pipeline = pipelines.page_reach(*args, query.start_us, high, after, query.limit)
    reach = await db.aggregate("trades", reach_pipeline, hint=BY_SYMBOL_TIME)
    if not reach or not reach[0]["trades"]:  # MongoDB groups no input into no row; mongomock into a zero row
        return []
    oldest_us = us_of_datetime(reach[0]["oldest"])
    low = oldest_us if query.start_us is None else max(query.start_us, oldest_us)
    rows = await db.aggregate(
        "trades",
        pipelines.trade_page(*args, low, high, after, query.limit),
        batch_size=query.limit + 1,
        hint=BY_SYMBOL_TIME,
    )
    return [trade_of(row, query.symbol) for row in rows]
