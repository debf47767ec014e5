"""DuckDB reads beyond candles: rolling-window stats (one statement for many symbols) and trade pages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from wadm_grpc.domain.aggregate import Aggregate, AggregateText, WindowStats
from wadm_grpc.domain.decimals import with_scale
from wadm_grpc.domain.timeframe import Rollup, window_pieces
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import TradeQuery
from wadm_grpc.stores.duckdb import sql

Cursor = duckdb.DuckDBPyConnection
# A bounded read first looks as far as should hold what it needs, then widens its window 4x per miss,
# so its cost follows what it returns, not the history underneath.
WIDEN = 4


def widening_windows(
    low: int, high: int, first_span: int, *, step: int = 1, newest_first: bool = True
) -> Iterator[tuple[int, int]]:
    """Consecutive windows [a, b] (multiples of `step` apart) covering [low, high] from one end, each
    WIDEN times longer than the one before; the caller stops once it has read enough."""
    span = max(first_span, step)
    while low <= high:
        if newest_first:
            window = (max(low, high - span + step), high)
            high = window[0] - step
        else:
            window = (low, min(high, low + span - step))
            low = window[1] + step
        yield window
        span *= WIDEN


def aggregate_of(row: Sequence[Any]) -> Aggregate:
    """An Aggregate from sql.AGGREGATE_TEXT's columns, keeping their text for the wire."""
    open_, high, low, close, volume, quote, trade_count, buy_volume, buy_quote, first_us, last_us = row
    text = AggregateText(open_, high, low, close, volume, quote, buy_volume, buy_quote)
    return Aggregate.of_text(text, trade_count, first_us, last_us)


def window_stats(
    cursor: Cursor, symbols: Sequence[str], exchanges: tuple[str, ...], start_us: int, end_us: int
) -> dict[str, WindowStats]:
    """Every symbol's aggregate over [start_us, end_us], in one statement."""
    # One subquery per source (raw trades or a tier) with its ranges OR-ed: planning the statement is
    # most of its cost, and DuckDB still prunes row groups by each range.
    ranges: dict[Rollup | None, list[int]] = {}
    for tier, low, high in window_pieces(start_us, end_us):
        ranges.setdefault(tier, []).extend((low, high))
    parts: list[str] = []
    params: list[Any] = []
    for tier, bounds in ranges.items():
        rows = f"({sql.trades_as_buckets()})" if tier is None else sql.tier_rows(tier.label)
        in_ranges = " OR ".join(["(bucket >= ? AND bucket < ?)"] * (len(bounds) // 2))
        parts.append(
            f"SELECT * FROM {rows} WHERE {sql.in_list('symbol', len(symbols))} "
            f"AND {sql.in_list('exchange', len(exchanges))} AND ({in_ranges})"
        )
        params += [*symbols, *exchanges, *bounds]
    statement = f"""
SELECT symbol, exchanges, {sql.AGGREGATE_TEXT} FROM (
    SELECT symbol, list_sort(list(DISTINCT exchange)) AS exchanges, {sql.AGGREGATES}
    FROM ({" UNION ALL ".join(parts)})
    GROUP BY symbol
)"""
    result: dict[str, WindowStats] = {}
    for symbol, names, *rest in cursor.execute(statement, params).fetchall():
        result[symbol] = WindowStats(symbol=symbol, exchanges=tuple(names), ohlcv=aggregate_of(rest))
    return result


_TRADE_PAGE = """
SELECT exchange, trade_id, time_us, price, quantity, price_scale, quantity_scale, is_buy
FROM trades
WHERE symbol = ? AND {exchanges} AND time_us >= ? AND time_us <= ? AND {after}
ORDER BY time_us DESC, exchange DESC, length(trade_id) DESC, trade_id DESC
LIMIT ?"""


def read_trades(cursor: Cursor, query: TradeQuery) -> list[Trade]:
    """A newest-first page, reading ever wider time windows back from the cursor until it is full."""
    bounds = cursor.execute(sql.market_bounds(len(query.exchanges)), [query.symbol, *query.exchanges]).fetchone()
    if bounds is None or bounds[0] is None:
        return []
    first, last, count = bounds
    low_limit = max(first, query.start_us if query.start_us is not None else first)
    high = min(last, query.end_us if query.end_us is not None else last)
    after, after_params = "TRUE", []
    if query.cursor is not None:
        high = min(high, query.cursor.time_us)
        after = "(time_us, exchange, length(trade_id), trade_id) < (?, ?, ?, ?)"
        c = query.cursor
        after_params = [c.time_us, c.exchange, len(c.trade_id), c.trade_id]
    statement = _TRADE_PAGE.format(exchanges=sql.in_list("exchange", len(query.exchanges)), after=after)
    # First guess: the span that holds `limit` trades at the symbol's average density.
    span = (last - first + 1) * query.limit // max(1, int(count))
    found: list[Trade] = []
    for window_low, window_high in widening_windows(low_limit, high, span):
        if len(found) >= query.limit:
            break
        rows = cursor.execute(
            statement,
            [query.symbol, *query.exchanges, window_low, window_high, *after_params, query.limit - len(found)],
        ).fetchall()
        found += [
            Trade(
                exchange=exchange,
                symbol=query.symbol,
                trade_id=trade_id,
                price=with_scale(price, price_scale),
                quantity=with_scale(quantity, quantity_scale),
                side=Side.BUY if is_buy else Side.SELL,
                time_us=time_us,
            )
            for exchange, trade_id, time_us, price, quantity, price_scale, quantity_scale, is_buy in rows
        ]
    return found
