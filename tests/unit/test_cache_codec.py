"""Cached answers round-trip exactly through their bytes."""

from __future__ import annotations

from tests.reference import aggregate
from tests.support import binance_trades
from wadm_grpc.domain.aggregate import Aggregate, Candle, WindowStats
from wadm_grpc.domain.orderbook import simulate
from wadm_grpc.domain.stats import MarketStats, StatsWindow
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.services.cache_codec import decode, encode


def test_domain_answers_round_trip_digit_for_digit() -> None:
    trades = binance_trades()[:500]
    ohlcv = aggregate(trades)
    candles = [Candle(Timeframe.W1, 1, ohlcv, closed=False), Candle(Timeframe.M1, 2, ohlcv.gap_after(), True)]
    stats = MarketStats(StatsWindow.H4, 1, 2, WindowStats("BTCUSDT", ("binance", "bybit"), ohlcv))
    book = simulate(trades, 10)

    assert decode(list[Candle], encode(candles)) == candles
    assert decode(MarketStats | None, encode(stats)) == stats
    assert decode(MarketStats | None, encode(None)) is None
    assert decode(type(book), encode(book)) == book
    rows = [(5, ohlcv)]
    assert decode(list[tuple[int, Aggregate]], encode(rows)) == rows
    assert str(decode(Aggregate, encode(ohlcv)).quote_volume) == str(ohlcv.quote_volume)
