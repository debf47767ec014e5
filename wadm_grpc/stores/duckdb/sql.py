"""DuckDB SQL: schema, rollup maintenance and reads, all over one canonical "bucket row" shape.

Trades and every rollup tier are read through the same columns (open/high/low/close with the time and
id of the opening and closing trade, volumes, count, precisions), so one aggregation serves rollup
maintenance, candles and window stats alike.
"""

from __future__ import annotations

from wadm_grpc.domain.timeframe import Rollup

DECIMAL = "DECIMAL(38, 18)"

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

MARKETS_DDL = f"""
CREATE TABLE IF NOT EXISTS markets (
    symbol VARCHAR NOT NULL,
    exchange VARCHAR NOT NULL,
    first_us BIGINT NOT NULL,
    last_us BIGINT NOT NULL,
    last_id VARCHAR NOT NULL,
    trade_count BIGINT NOT NULL,
    last_price {DECIMAL} NOT NULL,
    price_scale UTINYINT NOT NULL,
    PRIMARY KEY (symbol, exchange)
)"""


def rollup_table(tier: Rollup) -> str:
    """Table holding one tier's buckets."""
    return f"rollup_{tier.label}"


def rollup_ddl(tier: Rollup) -> str:
    """One row per (symbol, exchange, bucket) with trades."""
    return f"""
CREATE TABLE IF NOT EXISTS {rollup_table(tier)} (
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
    volume {DECIMAL} NOT NULL,
    quote {DECIMAL} NOT NULL,
    trade_count BIGINT NOT NULL,
    buy_volume {DECIMAL} NOT NULL,
    buy_quote {DECIMAL} NOT NULL,
    price_scale UTINYINT NOT NULL,
    quantity_scale UTINYINT NOT NULL,
    quote_scale UTINYINT NOT NULL,
    PRIMARY KEY (symbol, exchange, bucket)
)"""


# Trades seen as one-trade buckets.
TRADES_AS_BUCKETS = """
SELECT symbol, exchange, time_us AS bucket,
       price AS open, time_us AS open_us, trade_id AS open_id, price AS high, price AS low,
       price AS close, time_us AS close_us, trade_id AS close_id,
       quantity AS volume, quote, 1 AS trade_count,
       CASE WHEN is_buy THEN quantity ELSE 0 END AS buy_volume,
       CASE WHEN is_buy THEN quote ELSE 0 END AS buy_quote,
       price_scale, quantity_scale, price_scale + quantity_scale AS quote_scale
FROM trades"""

# Trades order by (time, exchange, trade id), numeric ids numerically: shorter ids first.
_OPEN_KEY = "(open_us, exchange, length(open_id), open_id)"
_CLOSE_KEY = "(close_us, exchange, length(close_id), close_id)"

# The canonical aggregation of bucket rows (exact: DECIMAL sums, arg_min/arg_max by trade order).
AGGREGATES = f"""
arg_min(open, {_OPEN_KEY}) AS open, min(open_us) AS open_us, arg_min(open_id, {_OPEN_KEY}) AS open_id,
max(high) AS high, min(low) AS low,
arg_max(close, {_CLOSE_KEY}) AS close, max(close_us) AS close_us, arg_max(close_id, {_CLOSE_KEY}) AS close_id,
sum(volume) AS volume, sum(quote) AS quote, sum(trade_count) AS trade_count,
sum(buy_volume) AS buy_volume, sum(buy_quote) AS buy_quote,
max(price_scale) AS price_scale, max(quantity_scale) AS quantity_scale, max(quote_scale) AS quote_scale"""

# Column order of AGGREGATES as read back into Python (after any leading key columns).
AGGREGATE_COLUMNS = (
    "open open_us open_id high low close close_us close_id volume quote trade_count "
    "buy_volume buy_quote price_scale quantity_scale quote_scale"
).split()


def source_of(tier: Rollup) -> tuple[str, str]:
    """(bucket rows, table whose `bucket` column they come from) feeding `tier`: trades feed 1m, and so on."""
    if tier is Rollup.M1:
        return f"({TRADES_AS_BUCKETS})", "trades"
    lower = Rollup.M1 if tier is Rollup.H1 else Rollup.H1
    return rollup_table(lower), rollup_table(lower)


def refresh_rollup(tier: Rollup, *, everything: bool = False) -> str:
    """Recompute `tier`'s buckets listed in the registered table `touched` (symbol, exchange, bucket).

    Parameters: lowest and highest touched bucket start (for zone-map pruning of the source). With
    `everything`, rebuild every bucket from its source instead (no table, no parameters).
    """
    rows, _ = source_of(tier)
    size = tier.micros
    only_touched = f"""
SEMI JOIN touched AS t
  ON s.symbol = t.symbol AND s.exchange = t.exchange AND s.bucket - s.bucket % {size} = t.bucket
WHERE s.bucket >= ? AND s.bucket < ? + {size}"""
    return f"""
INSERT OR REPLACE INTO {rollup_table(tier)}
SELECT s.symbol, s.exchange, s.bucket - s.bucket % {size} AS rollup_bucket, {AGGREGATES}
FROM {rows} AS s {"" if everything else only_touched}
GROUP BY s.symbol, s.exchange, rollup_bucket"""


def refresh_markets(*, everything: bool = False) -> str:
    """Recompute the markets in the registered table `touched` (or all of them) from the 1d tier."""
    only_touched = """
SEMI JOIN (SELECT DISTINCT symbol, exchange FROM touched) AS t ON r.symbol = t.symbol AND r.exchange = t.exchange"""
    return f"""
INSERT OR REPLACE INTO markets
SELECT r.symbol, r.exchange, min(open_us), max(close_us), arg_max(close_id, {_CLOSE_KEY}), sum(trade_count),
       arg_max(close, {_CLOSE_KEY}), max(price_scale)
FROM {rollup_table(Rollup.D1)} AS r {"" if everything else only_touched}
GROUP BY r.symbol, r.exchange"""


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
SELECT bucket - (bucket - {offset_us}) % {timeframe_us} AS open_time, {AGGREGATES}
FROM {rollup_table(tier)}
WHERE symbol = ? AND {in_list("exchange", exchanges)} AND bucket >= ? AND bucket < ?
GROUP BY open_time
ORDER BY open_time {order}
LIMIT ?"""


def market_bounds(exchanges: int) -> str:
    """First and last trade time of a symbol on the selected exchanges. Parameters: symbol, exchanges..."""
    return f"""
SELECT min(first_us), max(last_us) FROM markets WHERE symbol = ? AND {in_list("exchange", exchanges)}"""


def symbols(exchanges: int) -> str:
    """One row per symbol. Parameters: exchanges..."""
    return f"""
SELECT symbol, list(exchange ORDER BY exchange), sum(trade_count), min(first_us), max(last_us),
       arg_max(last_price, (last_us, exchange, length(last_id), last_id)), max(price_scale)
FROM markets
WHERE {in_list("exchange", exchanges)}
GROUP BY symbol
ORDER BY symbol"""
