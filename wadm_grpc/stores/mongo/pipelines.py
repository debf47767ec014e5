"""Every aggregation pipeline the Mongo store runs, as plain functions of their parameters.

Trades and rollup documents are grouped into "bucket rows" (rows.py). Only MongoDB 6 operators that mongomock
also runs, or that tests/mongo_support.py emulates as the server documents them (docs/mongo.md), are used: no
$merge, $dateTrunc, $setWindowFields, $toLong of dates.
"""

from __future__ import annotations

from collections.abc import Sequence

from wadm_grpc.domain.timeframe import MINUTE_US, Rollup
from wadm_grpc.stores.mongo.documents import Document, datetime_of_us
from wadm_grpc.stores.mongo.rows import (
    EXCHANGE,
    NORMALISED,
    ROW_ACCUMULATORS,
    SYMBOL,
    TIME_US,
    TRADE_ACCUMULATORS,
    TRADE_ID,
    TRADE_ID_LENGTH,
    Expression,
)

Pipeline = list[Document]


def _bucket(value: Expression, size: int, offset: int = 0) -> Expression:
    """Start of the `size`-long bucket (anchored at `offset`) holding `value`; $mod works on every version.

    The anchor is added as `size - offset` rather than subtracted: $mod keeps the dividend's sign, and
    `value - offset` is negative for the first days of 1970 when buckets are weeks.
    """
    shifted = {"$add": [value, size - offset]} if offset else value
    return {"$subtract": [value, {"$mod": [shifted, size]}]}


_BY_MARKET_BUCKET = {"symbol": "$symbol", "exchange": "$exchange", "bucket": "$bucket"}
_BY_MARKET = {"symbol": "$symbol", "exchange": "$exchange"}


def _in(values: Sequence[str]) -> Document:
    return {"$in": list(values)}


def spellings(value: str) -> list[str]:
    """How collectors may spell a market's symbol or exchange: as given, lowercase, uppercase, capitalised
    ("bybit", "BYBIT", "Bybit"). Trade documents are matched on these (index bounds, one per spelling) and
    normalised before grouping; other mixed spellings ("EthUsdt") are not found (docs/mongo.md)."""
    return sorted({value, value.lower(), value.upper(), value.capitalize()})


def _markets(symbols: Sequence[str], exchanges: Sequence[str], *, spelled: bool = False) -> Document:
    """Match on markets: our collections hold the normal spelling; the trades collection (`spelled`) holds
    the collectors'."""

    def variants(values: Sequence[str]) -> list[str]:
        return sorted({v for value in values for v in spellings(value)}) if spelled else list(values)

    names = variants(symbols)
    match: Document = {"symbol": names[0] if len(names) == 1 else _in(names)}
    if exchanges:
        match["exchange"] = _in(variants(exchanges))
    return match


def _ms_range(low_us: int, high_us: int) -> Document:
    """BSON dates of the trades in [low_us, high_us) microseconds."""
    return {"$gte": datetime_of_us(low_us), "$lte": datetime_of_us(high_us - 1)}


# -- rollup maintenance -------------------------------------------------------------------------------------

Range = tuple[str, str, int, int]  # symbol, exchange, [low, high) bucket starts in microseconds


def scan_new_trades(since: object | None, batch: int) -> Pipeline:
    """Minute buckets touched by the next `batch` trade documents after the _id watermark `since`."""
    return [
        {"$match": {} if since is None else {"_id": {"$gt": since}}},
        {"$sort": {"_id": 1}},
        {"$limit": batch},
        {"$project": {"symbol": SYMBOL, "exchange": EXCHANGE, "bucket": _bucket(TIME_US, MINUTE_US)}},
        {"$group": {"_id": _BY_MARKET_BUCKET, "last_id": {"$max": "$_id"}, "trades": {"$sum": 1}}},
    ]


def minute_rollups(ranges: Sequence[Range]) -> Pipeline:
    """1m rows of the trades in `ranges` (runs on the trades collection)."""
    match = {
        "$or": [
            {**_markets([symbol], [exchange], spelled=True), "timestamp": _ms_range(low, high)}
            for symbol, exchange, low, high in ranges
        ]
    }
    by_minute = {"symbol": "$symbol", "exchange": "$exchange", "bucket": _bucket("$time_us", MINUTE_US)}
    return [{"$match": match}, *NORMALISED, {"$group": {"_id": by_minute, **TRADE_ACCUMULATORS}}]


def tier_rollups(tier: Rollup, source: Rollup, ranges: Sequence[Range]) -> Pipeline:
    """`tier` rows from the `source` tier's rows in `ranges` (runs on the rollups collection)."""
    match = {
        "$or": [
            {"tier": source.label, "symbol": symbol, "exchange": exchange, "bucket": {"$gte": low, "$lt": high}}
            for symbol, exchange, low, high in ranges
        ]
    }
    return [
        {"$match": match},
        {"$addFields": {"bucket": _bucket("$bucket", tier.micros)}},
        {"$group": {"_id": _BY_MARKET_BUCKET, **ROW_ACCUMULATORS}},
    ]


def market_summaries(markets: Sequence[tuple[str, str]]) -> Pipeline:
    """First/last trade, count and price scale of each (symbol, exchange), from the 1d tier."""
    match = {"$or": [{"tier": Rollup.D1.label, "symbol": s, "exchange": e} for s, e in markets]}
    return [
        {"$match": match},
        {
            "$group": {
                "_id": {"symbol": "$symbol", "exchange": "$exchange"},
                "first_us": {"$min": "$first.t"},
                "last": {"$max": "$last"},
                "count": {"$sum": "$count"},
                "price_scale": {"$max": "$price_scale"},
            }
        },
    ]


# -- reads --------------------------------------------------------------------------------------------------


def candles(
    tier: Rollup,
    *,
    symbol: str,
    exchanges: Sequence[str],
    low_us: int | None,
    high_us: int | None,
    timeframe_us: int,
    offset_us: int,
    limit: int,
    rows_per_candle: int,
    newest_first: bool,
) -> Pipeline:
    """The first `limit` candles (newest or oldest) from `tier` rows with bucket in [low_us, high_us).

    Rows are read in bucket order and capped at `limit * rows_per_candle`: the rows of `limit` candles can't
    be more, so cost follows the candles returned, not the symbol's history.
    """
    match = {"tier": tier.label, **_markets([symbol], exchanges)}
    bounds: Document = {}
    if low_us is not None:
        bounds["$gte"] = low_us
    if high_us is not None:
        bounds["$lt"] = high_us
    if bounds:
        match["bucket"] = bounds
    direction = -1 if newest_first else 1
    return [
        {"$match": match},
        {"$sort": {"bucket": direction}},
        {"$limit": limit * rows_per_candle},
        {"$addFields": {"bucket": _bucket("$bucket", timeframe_us, offset_us)}},
        {"$group": {"_id": "$bucket", **ROW_ACCUMULATORS}},
        {"$sort": {"_id": direction}},
        {"$limit": limit},
    ]


def window_stats(
    *,
    symbols: Sequence[str],
    exchanges: Sequence[str],
    raw: Sequence[tuple[int, int]],
    rolled: Sequence[tuple[Rollup, int, int]],
    rollups_collection: str,
) -> Pipeline:
    """Per-symbol aggregates of raw trades in the `raw` [low, high) us ranges plus `rolled` tier buckets, in
    ONE aggregation on the trades collection ($unionWith brings in the rollups)."""
    markets = _markets(symbols, exchanges)
    if raw:
        spelled = _markets(symbols, exchanges, spelled=True)
        trades_match = {"$or": [{**spelled, "timestamp": _ms_range(low, high)} for low, high in raw]}
        exact = {"$or": [{"$and": [{"$gte": ["$time_us", low]}, {"$lt": ["$time_us", high]}]} for low, high in raw]}
        pipeline: Pipeline = [
            {"$match": trades_match},
            *NORMALISED,
            {"$match": {"$expr": exact}},
            # The edge trades of each market as one bucket row, the shape of the rollups joined below.
            {"$group": {"_id": _BY_MARKET, **TRADE_ACCUMULATORS}},
            {"$addFields": {"symbol": "$_id.symbol", "exchange": "$_id.exchange"}},
        ]
    else:
        pipeline = [{"$match": {"symbol": _in([])}}]
    if rolled:
        pieces = [{"tier": tier.label, **markets, "bucket": {"$gte": low, "$lt": high}} for tier, low, high in rolled]
        union = {"coll": rollups_collection, "pipeline": [{"$match": {"$or": pieces}}]}
        pipeline.append({"$unionWith": union})
    pipeline.append({"$group": {"_id": "$symbol", "exchanges": {"$addToSet": "$exchange"}, **ROW_ACCUMULATORS}})
    return pipeline


def symbols(exchanges: Sequence[str]) -> Pipeline:
    """One summary row per symbol from the markets collection, alphabetically."""
    return [
        {"$match": {"exchange": _in(exchanges)} if exchanges else {}},
        {
            "$group": {
                "_id": "$symbol",
                "exchanges": {"$addToSet": "$exchange"},
                "count": {"$sum": "$count"},
                "first_us": {"$min": "$first_us"},
                "last": {"$max": "$last"},
                "price_scale": {"$max": "$price_scale"},
            }
        },
        {"$sort": {"_id": 1}},
    ]


_PAGE_KEY: Document = {"t": TIME_US, "e": EXCHANGE, "l": TRADE_ID_LENGTH, "i": TRADE_ID}
_NEWEST_FIRST: Document = {"key.t": -1, "key.e": -1, "key.l": -1, "key.i": -1}


def _page_filters(
    symbol: str, exchanges: Sequence[str], low_us: int | None, high_us: int | None, after: Document | None
) -> tuple[Document, Document]:
    """(index-friendly match on dates, exact match on the computed key) of a page's candidate trades."""
    match = _markets([symbol], exchanges, spelled=True)
    dates: Document = {}
    exact: Document = {}
    if low_us is not None:
        dates["$gte"] = datetime_of_us(low_us)
        exact["key.t"] = {"$gte": low_us}
    if high_us is not None:
        dates["$lte"] = datetime_of_us(high_us)
        exact.setdefault("key.t", {})["$lte"] = high_us
    if dates:
        match["timestamp"] = dates
    if after is not None:
        exact["key"] = {"$lt": after}
    return match, exact


def page_reach(
    symbol: str, exchanges: Sequence[str], low_us: int | None, high_us: int | None, after: Document | None, limit: int
) -> Pipeline:
    """Step 1 of a trade page: the oldest BSON date among the next `limit` trades, read newest first from
    the (symbol, timestamp) index. Step 2 then only sorts the trades from that millisecond on."""
    match, exact = _page_filters(symbol, exchanges, low_us, high_us, after)
    return [
        {"$match": match},
        {"$sort": {"timestamp": -1}},
        {"$project": {"timestamp": 1, "key": _PAGE_KEY}},
        {"$match": exact},
        {"$limit": limit},
        {"$group": {"_id": None, "oldest": {"$min": "$timestamp"}, "trades": {"$sum": 1}}},
    ]


def trade_page(
    symbol: str, exchanges: Sequence[str], low_us: int | None, high_us: int | None, after: Document | None, limit: int
) -> Pipeline:
    """Step 2 of a trade page: the `limit` trades after `after` (newest first) in [low_us, high_us]."""
    match, exact = _page_filters(symbol, exchanges, low_us, high_us, after)
    return [
        {"$match": match},
        {"$project": {"_id": 0, "exchange": 1, "price": 1, "quantity": 1, "side": 1, "key": _PAGE_KEY}},
        {"$match": exact},
        {"$sort": _NEWEST_FIRST},
        {"$limit": limit},
    ]
