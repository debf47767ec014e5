"""The bucket row: per-trade expressions, and the accumulators that group trades and rows into rows.

Rollup documents (and grouped trades) share one "bucket row" shape:

    {symbol, exchange, bucket, first: KEY, last: KEY, high, low, count, price_scale, quantity_scale, quote_scale,
     volume_int, volume_frac, quote_int, quote_frac, buy_volume_int, ..., buy_quote_frac}
    with KEY = {t: time us, e: exchange, l: id length, i: id, p: price}

Sums are kept as two limbs, because a Decimal128 sum rounds at 34 significant digits (a sum >= 10^16 of values
with 18 decimals): `_int`, the sum of the values' integer parts ($floor: each < 10^16, so the sum is an exact
Decimal128 integer below 10^34 for fewer than 10^18 trades) and `_frac`, the sum of their fraction parts (each
< 1 with <= 18 decimals: exact for fewer than 10^16 trades). Limbs add up across rows and tiers unchanged; only
Python joins them, exactly (documents.exact_sum).

TRADE_ACCUMULATORS groups trade documents into rows (1m rollups, window edges); ROW_ACCUMULATORS groups rows
into coarser rows (1h from 1m, 1d from 1h, candles, window stats), so every aggregate is computed the same
way. Open and close are the $min/$max of KEY: embedded documents compare field by field, which is the trade
order (time, exchange, numeric-aware id).
"""

from __future__ import annotations

from typing import Any

from wadm_grpc.domain.decimals import MAX_SCALE
from wadm_grpc.stores.mongo.documents import EPOCH, Document

Expression = Any

# -- per-trade expressions (collector documents lack the fields this store adds) -----------------------------

# Collector documents only have the millisecond BSON date.
TIME_US: Expression = {"$ifNull": ["$time_us", {"$multiply": [{"$subtract": ["$timestamp", EPOCH]}, 1_000]}]}
# JavaScript collectors write integer ids as doubles, which a server's $toString writes as %g ("1.23457e+08").
TRADE_ID: Expression = {
    "$cond": [
        {"$eq": [{"$type": "$trade_id"}, "double"]},
        {"$toString": {"$toLong": "$trade_id"}},
        {"$toString": "$trade_id"},
    ]
}
TRADE_ID_LENGTH: Expression = {"$strLenCP": TRADE_ID}
# Collectors' spelling of the market and side: exchange and side lowercase, symbol uppercase, in every path
# (the live feed's documents.collector_trade too).
EXCHANGE: Expression = {"$toLower": "$exchange"}
SYMBOL: Expression = {"$toUpper": "$symbol"}


def _scale(decimal: Expression) -> Expression:
    """Digits after the point of a decimal value: how many of x, 10x, 100x... are not integers."""
    terms = []
    for power in range(MAX_SCALE):
        shifted = {"$multiply": [decimal, 10**power]}
        terms.append({"$cond": [{"$ne": [{"$trunc": shifted}, shifted]}, 1, 0]})
    return {"$add": terms}


# A trade document as every accumulator reads it, computed once per document before $group: decimals
# ($toDecimal of a collector's double: 15 significant digits, exact for any price written from a decimal of
# <= 15 digits), the microsecond time, the id as text, the spelling normalised; then (a second stage, which
# reads the first's fields) the scales as written ("61800.30" -> 2) or the value's own, and the quote.
NORMALISED: list[Document] = [
    {
        "$set": {
            "exchange": EXCHANGE,
            "symbol": SYMBOL,
            "side": {"$toLower": "$side"},
            "price": {"$toDecimal": "$price"},
            "quantity": {"$toDecimal": "$quantity"},
            "time_us": TIME_US,
            "trade_id": TRADE_ID,
        }
    },
    {
        "$set": {
            "price_scale": {"$ifNull": ["$price_scale", _scale("$price")]},
            "quantity_scale": {"$ifNull": ["$quantity_scale", _scale("$quantity")]},
            "quote": {"$ifNull": ["$quote", {"$multiply": ["$price", "$quantity"]}]},
            "id_length": {"$strLenCP": "$trade_id"},
        }
    },
]
PRICE: Expression = "$price"
QUANTITY: Expression = "$quantity"
QUOTE: Expression = "$quote"
IS_BUY: Expression = {"$eq": ["$side", "buy"]}
# A trade's place in the order of trades, with its price: the open is the least, the close the greatest.
TRADE_KEY: Expression = {"t": "$time_us", "e": "$exchange", "l": "$id_length", "i": "$trade_id", "p": PRICE}

# The decimal sums of a row, each kept as the limbs f"{name}_int" and f"{name}_frac"...
SUMS = ("volume", "quote", "buy_volume", "buy_quote")
# ...of these per-trade values.
_SUMMED: dict[str, Expression] = {
    "volume": QUANTITY,
    "quote": QUOTE,
    "buy_volume": {"$cond": [IS_BUY, QUANTITY, 0]},
    "buy_quote": {"$cond": [IS_BUY, QUOTE, 0]},
}


def _integer_part(value: Expression) -> Expression:
    """floor(value): an exact Decimal128 integer (values are positive, so this is their integer part)."""
    return {"$floor": value}


def _fraction_part(value: Expression) -> Expression:
    """value - floor(value): exact (no more digits than value), in [0, 1)."""
    return {"$subtract": [value, {"$floor": value}]}


def _trade_limbs() -> Document:
    """The limb accumulators over trade documents."""
    accumulators: Document = {}
    for name, value in _SUMMED.items():
        accumulators[f"{name}_int"] = {"$sum": _integer_part(value)}
        accumulators[f"{name}_frac"] = {"$sum": _fraction_part(value)}
    return accumulators


def _row_limbs() -> Document:
    """The limb accumulators over bucket rows: limbs add up unchanged."""
    return {f"{name}_{limb}": {"$sum": f"${name}_{limb}"} for name in SUMS for limb in ("int", "frac")}


# The aggregation of bucket rows (rollup documents)...
ROW_ACCUMULATORS: Document = {
    "first": {"$min": "$first"},
    "last": {"$max": "$last"},
    "high": {"$max": "$high"},
    "low": {"$min": "$low"},
    "count": {"$sum": "$count"},
    "price_scale": {"$max": "$price_scale"},
    "quantity_scale": {"$max": "$quantity_scale"},
    "quote_scale": {"$max": "$quote_scale"},
    **_row_limbs(),
}
# ...and the same aggregation straight from trade documents (after the NORMALISED stages).
TRADE_ACCUMULATORS: Document = {
    "first": {"$min": TRADE_KEY},
    "last": {"$max": TRADE_KEY},
    "high": {"$max": PRICE},
    "low": {"$min": PRICE},
    "count": {"$sum": 1},
    "price_scale": {"$max": "$price_scale"},
    "quantity_scale": {"$max": "$quantity_scale"},
    "quote_scale": {"$max": {"$add": ["$price_scale", "$quantity_scale"]}},
    **_trade_limbs(),
}
ROW_FIELDS = tuple(ROW_ACCUMULATORS)
# Rollup documents of the format before limbs have a single-value `volume` (and no limbs): see rebuild.py.
OLD_FORMAT_ROLLUP: Document = {"volume": {"$exists": True}}
