"""A batch joined from others (TradeBatch.of_parts): the same trades in order, its parts' prepared rows
reused by the DuckDB store, and chunks sliced from the parts without joining their columns."""

from __future__ import annotations

import pyarrow as pa

from tests.support import make_trades
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns, exchanges_of, join, symbols_of
from wadm_grpc.stores.duckdb import batches

T0 = 1_723_161_600_000_000


def parts() -> tuple[list[TradeBatch], list[object]]:
    trades = make_trades(seed=3, count=25, start_us=T0, spacing_us=1_000)
    return [TradeBatch(TradeColumns.of_trades(trades[i : i + 10])) for i in range(0, 25, 10)], list(trades)


def test_a_joined_batch_holds_the_parts_trades_in_order_and_joins_columns_only_when_asked() -> None:
    pieces, trades = parts()
    joined = join(pieces)
    assert isinstance(joined, TradeBatch)
    assert len(joined) == 25 and joined._columns is None
    assert joined.sliced(10, 15).trades == trades[10:15]  # within one part: still not joined
    assert joined._columns is None
    assert joined.sliced(8, 12).trades == trades[8:12]  # across parts
    assert list(joined) == trades
    assert join([joined, pieces[0]]).parts == (*pieces, pieces[0])  # flat, not nested


def test_the_duckdb_rows_of_a_joined_batch_are_its_parts_prepared_rows() -> None:
    pieces, _ = parts()
    joined = TradeBatch.of_parts(pieces)
    batches.prepare(joined)
    assert all(isinstance(part.rows, pa.Table) for part in pieces)
    assert batches.trades_table(joined).equals(batches.columns_table(joined.columns))
    assert batches.trades_table(pieces[1]) is pieces[1].rows


def test_a_joined_batchs_symbols_and_exchanges_are_read_part_by_part() -> None:
    trades = make_trades(seed=4, count=30, start_us=T0, spacing_us=1_000, symbols=("A", "B"), exchanges=("x", "y"))
    joined = TradeBatch.of_parts([TradeBatch(TradeColumns.of_trades(trades[i : i + 10])) for i in range(0, 30, 10)])
    assert symbols_of(joined) == {t.symbol for t in trades} == symbols_of(trades)
    assert exchanges_of(joined) == {t.exchange for t in trades} == exchanges_of(trades)
    assert joined._columns is None  # the parts' columns were not joined for it
