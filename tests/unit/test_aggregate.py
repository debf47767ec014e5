"""Aggregate: the same value whether built from Decimals or from a store's text (parsed when first read)."""

from __future__ import annotations

from decimal import Decimal

from wadm_grpc.domain.aggregate import Aggregate, AggregateText, CandleSeries
from wadm_grpc.domain.timeframe import Timeframe

TEXT = AggregateText(
    open="60000.10",
    high="60010.50",
    low="59990.00",
    close="60001.25",
    volume="1.500",
    quote_volume="90003.12500",
    buy_volume="0.250",
    buy_quote_volume="15000.02500",
)


def _of_decimals(text: AggregateText = TEXT, trade_count: int = 7) -> Aggregate:
    return Aggregate(
        open=Decimal(text.open),
        high=Decimal(text.high),
        low=Decimal(text.low),
        close=Decimal(text.close),
        volume=Decimal(text.volume),
        quote_volume=Decimal(text.quote_volume),
        trade_count=trade_count,
        buy_volume=Decimal(text.buy_volume),
        buy_quote_volume=Decimal(text.buy_quote_volume),
        first_trade_us=1,
        last_trade_us=2,
    )


def test_an_aggregate_of_text_equals_the_one_of_its_decimals_field_for_field() -> None:
    of_text, of_decimals = Aggregate.of_text(TEXT, 7, 1, 2), _of_decimals()
    assert of_text == of_decimals and hash(of_text) == hash(of_decimals)
    assert repr(of_text) == repr(of_decimals)
    for name in AggregateText._fields:
        value = getattr(of_text, name)
        assert isinstance(value, Decimal) and str(value) == getattr(TEXT, name)  # the text's digits, exactly
    assert of_text.text is TEXT and of_decimals.text is None
    assert of_text != Aggregate.of_text(TEXT, 8, 1, 2)


def test_derived_values_are_the_sells_and_the_vwap_at_the_price_precision_plus_four() -> None:
    for aggregate in (Aggregate.of_text(TEXT, 7, 1, 2), _of_decimals()):
        sells, sell_quote, vwap = aggregate.derived()
        assert (sells, sell_quote) == (aggregate.sell_volume, aggregate.sell_quote_volume)
        assert str(sells) == "1.250" and str(sell_quote) == "75003.10000"
        assert vwap == aggregate.vwap and str(vwap) == "60002.083333"  # 90003.125 / 1.5, 2 + 4 digits


def test_no_volume_has_no_vwap() -> None:
    empty = Aggregate.of_text(TEXT._replace(volume="0.000", quote_volume="0.00000"), 0, 0, 0)
    assert empty.derived()[2] is None and empty.vwap is None


def test_a_candle_is_closed_once_its_bucket_has_ended() -> None:
    size = Timeframe.M1.micros
    aggregate = _of_decimals()
    series = CandleSeries(Timeframe.M1, [(0, aggregate), (size, aggregate)], now_us=2 * size - 1)
    assert [candle.closed for candle in series.candles()] == [True, False]
    assert [candle.closed for candle in CandleSeries(Timeframe.M1, series.rows, 2 * size).candles()] == [True, True]
