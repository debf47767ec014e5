"""Aggregate: the same value whether built from Decimals or from a store's text (parsed when first read)."""

from __future__ import annotations

from decimal import Decimal

from wadm_grpc.api.grpc import convert
from wadm_grpc.domain.aggregate import Aggregate, AggregateText, CandleSeries
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

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
    decimals = {name: Decimal(value) for name, value in text._asdict().items()}
    return Aggregate(**decimals, trade_count=trade_count, first_trade_us=1, last_trade_us=2)


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
    assert [start <= series.last_closed_open_us for start, _ in series.rows] == [True, False]
    later = CandleSeries(Timeframe.M1, series.rows, 2 * size)
    assert [start <= later.last_closed_open_us for start, _ in later.rows] == [True, True]


def test_a_candle_rendered_from_text_is_the_one_rendered_from_its_decimals_and_changes_with_it() -> None:
    size = Timeframe.M1.micros

    def wire(rows: list[tuple[int, Aggregate]], now_us: int) -> md.GetCandlesResponse:
        body = convert.candles_response("BTCUSDT", md.TIMEFRAME_1M, CandleSeries(Timeframe.M1, rows, now_us))
        return md.GetCandlesResponse.FromString(body)

    of_text = [(0, Aggregate.of_text(TEXT, 7, 1, 2)), (size, Aggregate.of_text(TEXT, 7, 1, 2))]
    first = wire(of_text, now_us=size)  # the first closed, the second open
    assert first == wire([(start, _of_decimals()) for start, _ in of_text], now_us=size)
    assert [c.closed for c in first.candles] == [True, False] and first.candles[0].vwap == "60002.083333"
    assert [c.closed for c in wire(of_text, now_us=2 * size).candles] == [True, True]  # rendered again
    late = TEXT._replace(high="60020.00", volume="1.750", quote_volume="105003.32500")  # a late trade
    changed = wire([(0, Aggregate.of_text(late, 8, 1, 3))], now_us=size).candles[0]
    assert (changed.high, changed.volume, changed.trade_count, changed.taker_sell_volume) == (
        "60020.00",
        "1.750",
        8,
        "1.500",
    )
    assert changed.vwap == "60001.900000"  # 105003.325 / 1.75
