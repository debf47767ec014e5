"""Arrow tables handed to DuckDB for ingest (a registered Arrow table is the fast path in)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from wadm_grpc.domain.decimals import MAX_SCALE, multiply
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns, columns_of

# DECIMAL(38, 18) on the Arrow side.
ARROW_DECIMAL = pa.decimal128(38, MAX_SCALE)
# Wide enough for the exact product of two trade values (Arrow multiplies decimals without rounding,
# into a precision of both plus one, at most 76).
_PRICE = pa.decimal256(38, MAX_SCALE)
_QUANTITY = pa.decimal256(37, MAX_SCALE)
TRADE_COLUMNS = "exchange symbol trade_id time_us price quantity quote price_scale quantity_scale is_buy".split()


def text_scales(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Digits after the point of each plain decimal string, as the trades table's UTINYINT."""
    point = pc.find_substring(text, ".")
    scale = pc.if_else(pc.less(point, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(text), point), 1))
    return pc.cast(scale, pa.uint8())


def columns_table(columns: TradeColumns) -> pa.Table:
    """Validated trade columns as rows of the `trades` table, computed column-wise: decimals parsed
    from their text, price x quantity multiplied exactly (validation bounds it below 10^16 with at
    most 18 decimals, so it fits DECIMAL(38, 18) without rounding; a trade stored without that
    validation, beyond Arrow's widths, is multiplied in Python)."""
    price_text = pa.array(columns.price, pa.string())
    quantity_text = pa.array(columns.quantity, pa.string())
    price = pc.cast(price_text, _PRICE)
    try:
        quantity = pc.cast(quantity_text, _QUANTITY)
        quote = pc.cast(pc.multiply(price, quantity), ARROW_DECIMAL)
    except pa.ArrowInvalid:  # beyond the bounds of a validated trade (stored directly): one by one
        quote = pa.array(
            [multiply(Decimal(p), Decimal(q)) for p, q in zip(columns.price, columns.quantity, strict=True)],
            ARROW_DECIMAL,
        )
    return pa.table(
        {
            "exchange": pa.array(columns.exchange, pa.string()),
            "symbol": pa.array(columns.symbol, pa.string()),
            "trade_id": pa.array(columns.trade_id, pa.string()),
            "time_us": pa.array(columns.time_us, pa.int64()),
            "price": pc.cast(price, ARROW_DECIMAL),
            "quantity": pc.cast(quantity_text, ARROW_DECIMAL),
            "quote": quote,
            "price_scale": text_scales(price_text),
            "quantity_scale": text_scales(quantity_text),
            "is_buy": pa.array(columns.is_buy, pa.bool_()),
        }
    )


def trades_table(trades: Sequence[Trade]) -> pa.Table:
    """Trades as rows of the `trades` table (columns in TRADE_COLUMNS order): those `prepare` built ahead
    are taken as they are."""
    if isinstance(trades, TradeBatch):
        if trades.parts:
            return pa.concat_tables([trades_table(part) for part in trades.parts])
        if isinstance(trades.rows, pa.Table):
            return trades.rows
    return columns_table(columns_of(trades))


def prepare(trades: Sequence[Trade]) -> None:
    """Build a validated batch's rows now (on the caller's thread), so its write does not."""
    if isinstance(trades, TradeBatch):
        for part in trades.parts or (trades,):
            if part.rows is None:
                part.rows = columns_table(part.columns)
