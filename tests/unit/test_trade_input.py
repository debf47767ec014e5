"""Validation of incoming trades and the Binance CSV reader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_input import TradeInput, parse_trades
from wadm_grpc.feeds.binance_csv import read_trades, symbol_from_filename

NOW = 1_723_161_300_000_000


def parse(inputs: list[TradeInput]) -> list[Trade]:
    return parse_trades(inputs, latest_us=NOW + 60_000_000)


def raw(**changes: object) -> TradeInput:
    fields: dict[str, object] = {
        "exchange": "Binance",
        "symbol": "btcusdt",
        "trade_id": "42",
        "price": "61800.30",
        "quantity": "0.006",
        "side": Side.BUY,
        "time_us": 1_723_161_256_322_000,
    }
    return TradeInput(**(fields | changes))  # type: ignore[arg-type]


def test_valid_trades_are_normalised() -> None:
    [trade] = parse([raw()])
    assert (trade.exchange, trade.symbol, str(trade.price), str(trade.quote_quantity)) == (
        "binance",
        "BTCUSDT",
        "61800.30",
        "370.80180",
    )


def test_every_bad_field_of_every_trade_is_named() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        parse([raw(), raw(price="x", side=None), raw(trade_id=" ", time_us=0, exchange="")])
    assert {v.field for v in raised.value.violations} == {
        "trades[1].price",
        "trades[1].side",
        "trades[2].trade_id",
        "trades[2].time",
        "trades[2].exchange",
    }


def test_products_that_cannot_be_stored_exactly_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="product would not be exact"):
        parse([raw(price="1.0000000001", quantity="1.000000001")])


def test_binance_csv_with_or_without_header_and_both_time_units() -> None:
    text = (
        "id,price,qty,quote_qty,time,is_buyer_maker\n"
        "1,2.5,3,7.5,1723161255611,true\n"
        "2,2.5,1,2.5,1723161255611123,False\n"
    )
    [batch] = list(read_trades(io.StringIO(text), exchange="binance", symbol="ETHUSDT"))
    assert [(t.trade_id, t.side, t.time_us) for t in batch] == [
        ("1", Side.SELL, 1_723_161_255_611_000),
        ("2", Side.BUY, 1_723_161_255_611_123),
    ]
    [headless] = list(read_trades(io.StringIO(text.split("\n", 1)[1]), exchange="binance", symbol="ETHUSDT"))
    assert len(headless) == 2
    assert symbol_from_filename(Path("ETHUSDT-trades-2024-08-08.csv")) == "ETHUSDT"


def test_times_ahead_of_the_server_clock_are_refused() -> None:
    assert parse([raw(time_us=NOW + 60_000_000)])  # within the skew
    for time_us in (NOW + 60_000_001, 2**63):
        with pytest.raises(InvalidArgumentError) as raised:
            parse([raw(time_us=time_us)])
        assert raised.value.violations[0].field == "trades[0].time"
        assert "future" in raised.value.violations[0].description


def test_trade_ids_are_kept_verbatim_and_surrounding_whitespace_is_refused() -> None:
    assert parse([raw(trade_id="a 77")])[0].trade_id == "a 77"
    for padded in (" 77 ", "77 ", "\t77"):
        with pytest.raises(InvalidArgumentError) as raised:
            parse([raw(trade_id=padded)])
        assert raised.value.violations[0].field == "trades[0].trade_id"


def test_every_value_is_below_ten_to_the_sixteen() -> None:
    assert parse([raw(price="1", quantity="9999999999999999.99")])
    assert parse([raw(price="0.000000000000000001", quantity="1")])
    for price, quantity in (("10000000000000000", "1"), ("1", "10000000000000000"), ("100000000", "100000000")):
        with pytest.raises(InvalidArgumentError) as raised:
            parse([raw(price=price, quantity=quantity)])
        assert raised.value.violations[0].field in ("trades[0].price", "trades[0].quantity")
