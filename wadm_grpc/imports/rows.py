"""Row work of an import, column-wise on Arrow batches: skipping what is already stored, and validating.

Validation has two tiers, as ingest does: vectorised checks that every row is plainly valid (stricter than
the rules, with the same bounds), and, for a batch they cannot vouch for, the per-trade rules
(`parse_trades`), which either accept it or name each bad row exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade import Side
from wadm_grpc.domain.trade_batch import columns_of
from wadm_grpc.domain.trade_input import TradeInput, parse_trades
from wadm_grpc.feeds.binance_csv import trade_input
from wadm_grpc.feeds.binance_files import BUYER_MAKER, ID, PRICE, QUANTITY, TIME
from wadm_grpc.services.trade_screen import text_columns_plainly_valid

# An id the store and the file compare as an integer: canonical digits only (no sign, no leading zero).
CANONICAL_ID = r"^(?:0|[1-9][0-9]{0,17})$"
_DIGITS = r"^[0-9]{1,18}$"
_MICROSECOND_STAMPS = 10**14  # as binance_csv: epoch ms stay below this until the year 5138


@dataclass(frozen=True, slots=True)
class StoredRange:
    """Trade ids [low, high] a market is known to hold every one of (a contiguous run of integer ids)."""

    low: int
    high: int


def skip_stored(batch: pa.RecordBatch, stored: StoredRange | None) -> tuple[pa.RecordBatch, int]:
    """The batch without the rows whose canonical integer id lies in `stored`; how many were left out."""
    if stored is None:
        return batch, 0
    ids = batch.column(ID)
    canonical = pc.match_substring_regex(ids, CANONICAL_ID)
    values = pc.cast(pc.if_else(canonical, ids, "-1"), pa.int64())
    inside = pc.and_(canonical, pc.and_(pc.greater_equal(values, stored.low), pc.less_equal(values, stored.high)))
    skipped = pc.sum(inside).as_py() or 0
    if not skipped:
        return batch, 0
    return batch.filter(pc.invert(inside)), skipped


def trade_inputs(batch: pa.RecordBatch, *, exchange: str, symbol: str, first_line: int) -> list[TradeInput]:
    """The batch's rows as TradeInputs (the per-trade path)."""
    columns = [batch.column(name).to_pylist() for name in (ID, PRICE, QUANTITY, TIME, BUYER_MAKER)]
    return [
        trade_input(row, exchange=exchange, symbol=symbol, line=first_line + index)
        for index, row in enumerate(zip(*columns, strict=True))
    ]


def _time_us(text: pa.Array) -> pa.Array:
    stamps = pc.cast(text, pa.int64())
    return pc.if_else(pc.greater_equal(stamps, _MICROSECOND_STAMPS), stamps, pc.multiply(stamps, 1000))


def _plainly_valid(batch: pa.RecordBatch, latest_us: int) -> bool:
    maker = pc.utf8_lower(batch.column(BUYER_MAKER))
    if not pc.all(pc.is_in(maker, pa.array(["true", "false"]))).as_py():
        return False
    times = batch.column(TIME)
    if not pc.all(pc.match_substring_regex(times, _DIGITS)).as_py():
        return False
    stamps = _time_us(times)
    if pc.min(stamps).as_py() <= 0 or pc.max(stamps).as_py() > latest_us:
        return False
    return text_columns_plainly_valid(batch.column(ID), batch.column(PRICE), batch.column(QUANTITY))


def validated(batch: pa.RecordBatch, *, exchange: str, symbol: str, first_line: int, latest_us: int) -> pa.Table:
    """The batch as validated columns (trade_id, price, quantity as exact text, time_us, is_buy), or
    InvalidArgumentError naming each bad row ("line N")."""
    if _plainly_valid(batch, latest_us):
        return pa.table(
            {
                "trade_id": batch.column(ID),
                "price": batch.column(PRICE),
                "quantity": batch.column(QUANTITY),
                "time_us": _time_us(batch.column(TIME)),
                "is_buy": pc.equal(pc.utf8_lower(batch.column(BUYER_MAKER)), "false"),
            }
        )
    inputs = trade_inputs(batch, exchange=exchange, symbol=symbol, first_line=first_line)
    try:
        trades = parse_trades(inputs, latest_us=latest_us)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(error.violations, _with_lines(str(error), first_line)) from error
    columns = columns_of(trades)
    return pa.table(
        {
            "trade_id": pa.array(columns.trade_id, pa.string()),
            "price": pa.array(columns.price, pa.string()),
            "quantity": pa.array(columns.quantity, pa.string()),
            "time_us": pa.array(columns.time_us, pa.int64()),
            "is_buy": pa.array([t.side is Side.BUY for t in trades], pa.bool_()),
        }
    )


def _with_lines(message: str, first_line: int) -> str:
    return f"{message} (trades[0] is line {first_line} of the file)"
