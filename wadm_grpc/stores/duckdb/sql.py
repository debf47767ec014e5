"""DuckDB SQL: schema, rollup rebuilds and reads, all over one canonical "bucket row" shape.

Trades and every rollup tier are read through the same columns (open/high/low/close with the time and
id of the opening and closing trade, volumes, count, precisions), so one aggregation serves rollup
rebuilds, candles and window stats alike. All tiers live in ONE table, `rollups`, keyed by tier: ingest
then touches every tier with one read and one write. The tier "all" holds one row per market (symbol,
exchange) covering its whole history: ListSymbols and the time bounds of a market come from there.

Sums never overflow: a DECIMAL(38, 18) sum fails at 10^20, reached by 10,000 trades of 10^16, so every
summed value (volume, quote, buy_volume, buy_quote) is kept as two integer limbs, `<name>_whole` (HUGEINT,
the part before the point) and `<name>_fraction` (BIGINT, the 18 decimals as an integer below 10^18).
Integer sums are exact and cheap (cheaper than DECIMAL sums); AGGREGATES carries whole fractions over, so
every bucket row is normalised. HUGEINT holds 1.7 x 10^38: about 10^22 trades at the largest value.
"""

from __future__ import annotations

from wadm_grpc.domain.decimals import MAX_SCALE
from wadm_grpc.domain.timeframe import Rollup

DECIMAL = "DECIMAL(38, 18)"
# 3: sums as whole/fraction limbs (2 had DECIMAL(38, 18) sums, which overflowed).
SCHEMA_VERSION = 3
# Summed values, each stored as limbs; FRACTION_UNITS fraction units make one whole unit.
SUMS = ("volume", "quote", "buy_volume", "buy_quote")
FRACTION_UNITS: int = 10**MAX_SCALE
# The per-market tier: one row per (symbol, exchange), bucket 0.
MARKET_TIER = "all"
TIERS = (*(tier.label for tier in Rollup), MARKET_TIER)

TRADES_DDL = f"""
CREATE TABLE IF NOT EXISTS trades (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    trade_id VARCHAR NOT NULL,
    time_us BIGINT NOT NULL,
    price {DECIMAL} NOT NULL,
    quantity {DECIMAL} NOT NULL,
    quote {DECIMAL} NOT NULL,
    price_scale UTINYINT NOT NULL,
    quantity_scale UTINYINT NOT NULL,
    is_buy BOOLEAN NOT NULL,
    PRIMARY KEY (exchange, symbol, trade_id)
)"""

ROLLUPS_DDL = f"""
CREATE TABLE IF NOT EXISTS rollups (
    tier VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    exchange VARCHAR NOT NULL,
    bucket BIGINT NOT NULL,
    open {DECIMAL} NOT NULL,
    open_us BIGINT NOT NULL,
    open_id VARCHAR NOT NULL,
    high {DECIMAL} NOT NULL,
    low {DECIMAL} NOT NULL,
    close {DECIMAL} NOT NULL,
    close_us BIGINT NOT NULL,
    close_id VARCHAR NOT NULL,
    volume_whole HUGEINT NOT NULL,
    volume_fraction BIGINT NOT NULL,
    quote_whole HUGEINT NOT NULL,
    quote_fraction BIGINT NOT NULL,
    trade_count BIGINT NOT NULL,
    buy_volume_whole HUGEINT NOT NULL,
    buy_volume_fraction BIGINT NOT NULL,
    buy_quote_whole HUGEINT NOT NULL,
    buy_quote_fraction BIGINT NOT NULL,
    price_scale UTINYINT NOT NULL,
    quantity_scale UTINYINT NOT NULL,
    quote_scale UTINYINT NOT NULL,
    PRIMARY KEY (tier, symbol, exchange, bucket)
)"""

SCHEMA_DDL = "CREATE TABLE IF NOT EXISTS wadm_schema (version INTEGER NOT NULL)"
# Tables replaced by a migration: version 1's (one table per tier, a separate markets table), and the
# rollups themselves (rebuilt from the trades in the current layout).
REPLACED_TABLES = ("rollup_1m", "rollup_1h", "rollup_1d", "markets", "rollups")


LIMBS = ("whole", "fraction")


def _limbs(name: str) -> str:
    return ", ".join(f"{name}_{limb}" for limb in LIMBS)


BUCKET_COLUMNS = (
    "symbol, exchange, bucket, open, open_us, open_id, high, low, close, close_us, close_id, "
    f"{_limbs('volume')}, {_limbs('quote')}, trade_count, {_limbs('buy_volume')}, {_limbs('buy_quote')}, "
    "price_scale, quantity_scale, quote_scale"
)


def _trade_limbs(value: str, name: str) -> str:
    """A trade's DECIMAL(38, 18) `value` as the limbs `name`_whole, `name`_fraction (values are
    positive: trunc() keeps the part before the point)."""
    whole = f"CAST(trunc({value}) AS HUGEINT)"
    fraction = f"CAST(({value} - trunc({value})) * {FRACTION_UNITS} AS BIGINT)"
    return f"{whole} AS {name}_whole, {fraction} AS {name}_fraction"


def _buys_only(name: str) -> str:
    return ", ".join(f"CASE WHEN is_buy THEN {name}_{limb} ELSE 0 END AS buy_{name}_{limb}" for limb in LIMBS)


def trades_as_buckets(source: str = "trades") -> str:
    """The trades of `source` (the trades table, or rows of its shape) seen as one-trade buckets (each
    value split into limbs once: statement planning, not execution, is most of a read's cost, so the
    fewer expressions the better)."""
    return f"""
SELECT symbol, exchange, time_us AS bucket,
       price AS open, time_us AS open_us, trade_id AS open_id, price AS high, price AS low,
       price AS close, time_us AS close_us, trade_id AS close_id,
       {_limbs("volume")}, {_limbs("quote")}, 1 AS trade_count, {_buys_only("volume")}, {_buys_only("quote")},
       price_scale, quantity_scale, price_scale + quantity_scale AS quote_scale
FROM (
    SELECT symbol, exchange, time_us, trade_id, price, is_buy, price_scale, quantity_scale,
           {_trade_limbs("quantity", "volume")}, {_trade_limbs("quote", "quote")}
    FROM {source}
)"""


# Trades order by (time, exchange, trade id), numeric ids numerically: shorter ids first.
_OPEN_KEY = "(open_us, exchange, length(open_id), open_id)"
_CLOSE_KEY = "(close_us, exchange, length(close_id), close_id)"


def _sum_limbs(name: str) -> str:
    """Sum of the limbs `name`_whole/`name`_fraction, normalised: whole fraction units carried over."""
    fractions = f"sum({name}_fraction)"
    return (
        f"sum({name}_whole) + {fractions} // {FRACTION_UNITS} AS {name}_whole, "
        f"{fractions} % {FRACTION_UNITS} AS {name}_fraction"
    )


# The canonical aggregation of bucket rows (exact: integer sums, arg_min/arg_max by trade order), in the
# column order of `rollups`.
AGGREGATES = f"""
arg_min(open, {_OPEN_KEY}) AS open, min(open_us) AS open_us, arg_min(open_id, {_OPEN_KEY}) AS open_id,
max(high) AS high, min(low) AS low,
arg_max(close, {_CLOSE_KEY}) AS close, max(close_us) AS close_us, arg_max(close_id, {_CLOSE_KEY}) AS close_id,
{_sum_limbs("volume")}, {_sum_limbs("quote")}, sum(trade_count) AS trade_count,
{_sum_limbs("buy_volume")}, {_sum_limbs("buy_quote")},
max(price_scale) AS price_scale, max(quantity_scale) AS quantity_scale, max(quote_scale) AS quote_scale"""


def fixed(column: str, scale: str) -> str:
    """`column` (DECIMAL(38, 18)) as text with exactly `scale` decimals, for Python to read as a Decimal.

    Formatting in SQL is vectorised; building Python Decimals from DECIMAL values row by row is not (it
    dominated the cost of a 500-candle answer). DuckDB prints DECIMAL(38, 18) with all 18 decimals, and the
    dropped digits are zeros: the scale is that of the trades the value came from.
    """
    text = f"CAST({column} AS VARCHAR)"
    return f"CASE WHEN {scale} = 0 THEN split_part({text}, '.', 1) ELSE left({text}, length({text}) - 18 + {scale}) END"


def fixed_sum(name: str, scale: str) -> str:
    """The normalised limbs of `name` as text with exactly `scale` decimals (the dropped decimals are
    zeros, as in `fixed`)."""
    fraction = f"lpad(CAST({name}_fraction AS VARCHAR), {MAX_SCALE}, '0')"
    whole = f"CAST({name}_whole AS VARCHAR)"
    return f"CASE WHEN {scale} = 0 THEN {whole} ELSE {whole} || '.' || left({fraction}, {scale}) END"


# AGGREGATES' results as read into Python: decimals as text at their trades' precision.
AGGREGATE_TEXT = ", ".join(
    [
        *(fixed(name, "price_scale") for name in ("open", "high", "low", "close")),
        *(fixed_sum(name, scale) for name, scale in (("volume", "quantity_scale"), ("quote", "quote_scale"))),
        "trade_count",
        *(fixed_sum(name, scale) for name, scale in (("buy_volume", "quantity_scale"), ("buy_quote", "quote_scale"))),
        "open_us",
        "close_us",
    ]
)


def tier_rows(label: str) -> str:
    """The bucket rows of one tier, as a subquery."""
    assert label in TIERS
    return f"(SELECT {BUCKET_COLUMNS} FROM rollups WHERE tier = '{label}')"


def rebuild_tier(label: str) -> str:
    """Recompute one tier from the next finer one (1m from trades; "all" from 1d, one row per market)."""
    if label == MARKET_TIER:
        source, size = tier_rows(Rollup.D1.label), 0
    elif label == Rollup.M1.label:
        source, size = f"({trades_as_buckets()})", Rollup.M1.micros
    else:
        finer = Rollup.M1 if label == Rollup.H1.label else Rollup.H1
        source, size = tier_rows(finer.label), (Rollup.H1 if finer is Rollup.M1 else Rollup.D1).micros
    bucket = "0" if size == 0 else f"s.bucket - s.bucket % {size}"
    return f"""
INSERT INTO rollups
SELECT '{label}', s.symbol, s.exchange, {bucket} AS rollup_bucket, {AGGREGATES}
FROM {source} AS s
GROUP BY s.symbol, s.exchange, rollup_bucket"""


def in_list(column: str, count: int) -> str:
    """`column IN (?, ?, ...)` for `count` parameters, or TRUE when there are none (no filter)."""
    if count == 0:
        return "TRUE"
    return f"{column} IN ({', '.join('?' * count)})"


def candles(tier: Rollup, *, timeframe_us: int, offset_us: int, exchanges: int, newest_first: bool) -> str:
    """Candles from a tier's buckets in [?, ?) (bucket starts), for one symbol. Parameters: symbol,
    exchanges..., low, high, limit."""
    order = "DESC" if newest_first else "ASC"
    return f"""
SELECT open_time, {AGGREGATE_TEXT} FROM (
    SELECT bucket - (bucket + {timeframe_us - offset_us}) % {timeframe_us} AS open_time, {AGGREGATES}
    FROM rollups
    WHERE tier = '{tier.label}' AND symbol = ? AND {in_list("exchange", exchanges)} AND bucket >= ? AND bucket < ?
    GROUP BY open_time
    ORDER BY open_time {order}
    LIMIT ?
)"""


def market_bounds(exchanges: int) -> str:
    """First and last trade time and trade count of a symbol on the selected exchanges.
    Parameters: symbol, exchanges..."""
    return f"""
SELECT min(open_us), max(close_us), sum(trade_count) FROM rollups
WHERE tier = '{MARKET_TIER}' AND symbol = ? AND {in_list("exchange", exchanges)}"""


def symbols(exchanges: int) -> str:
    """One row per symbol. Parameters: exchanges..."""
    return f"""
SELECT symbol, list(exchange ORDER BY exchange), sum(trade_count), min(open_us), max(close_us),
       arg_max(close, {_CLOSE_KEY}), max(price_scale)
FROM rollups
WHERE tier = '{MARKET_TIER}' AND {in_list("exchange", exchanges)}
GROUP BY symbol
ORDER BY symbol"""
