"""Arrow tables handed to DuckDB for ingest (a registered Arrow table is the fast path in)."""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa

from wadm_grpc.domain.decimals import MAX_SCALE, scale_of
from wadm_grpc.domain.trade import Side, Trade

# DECIMAL(38, 18) on the Arrow side.
ARROW_DECIMAL = pa.decimal128(38, MAX_SCALE)
TRADE_COLUMNS = "exchange symbol trade_id time_us price quantity quote price_scale quantity_scale is_buy".split()


def trades_table(trades: Collection[Trade]) -> pa.Table:
    """Trades as rows of the `trades` table (columns in TRADE_COLUMNS order)."""
    return pa.table(
        {
            "exchange": pa.array([t.exchange for t in trades], pa.string()),
            "symbol": pa.array([t.symbol for t in trades], pa.string()),
            "trade_id": pa.array([t.trade_id for t in trades], pa.string()),
            "time_us": pa.array([t.time_us for t in trades], pa.int64()),
            "price": pa.array([t.price for t in trades], ARROW_DECIMAL),
            "quantity": pa.array([t.quantity for t in trades], ARROW_DECIMAL),
            "quote": pa.array([t.quote_quantity for t in trades], ARROW_DECIMAL),
            "price_scale": pa.array([scale_of(t.price) for t in trades], pa.uint8()),
            "quantity_scale": pa.array([scale_of(t.quantity) for t in trades], pa.uint8()),
            "is_buy": pa.array([t.side is Side.BUY for t in trades], pa.bool_()),
        }
    )
