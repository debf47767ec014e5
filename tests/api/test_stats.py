"""GetMarketStats / GetMultiStats through the real server."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from tests.conftest import Running
from tests.reference import aggregate
from tests.support import make_trades
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.timeframe import HOUR_US
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.services.ingest import IngestService

NOW = 1_723_161_600_000_000
SYMBOLS = tuple(f"C{i:02d}USDT" for i in range(20))


async def seed(ingest: IngestService, clock: ManualClock) -> list[Trade]:
    # 30 hours of trades for 20 symbols, the newest exactly at the clock.
    trades = make_trades(
        seed=21,
        count=5400,
        start_us=NOW - 30 * HOUR_US + 20_000_000,
        spacing_us=20_000_000,
        symbols=SYMBOLS,
        exchanges=("binance", "okx"),
    )
    await ingest.store_trades(trades)
    clock.set(NOW)
    return trades


async def test_market_stats_match_the_window_exactly(served: Running, clock: ManualClock) -> None:
    trades = await seed(served.app.ingest, clock)

    answer = await served.client.market.GetMarketStats(
        md.GetMarketStatsRequest(symbol="c03usdt", window=md.STATS_WINDOW_4H)
    )

    stats = answer.stats
    expected = aggregate(t for t in trades if t.symbol == "C03USDT" and NOW - 4 * HOUR_US <= t.time_us <= NOW)
    assert (stats.symbol, stats.window, stats.trade_count) == ("C03USDT", md.STATS_WINDOW_4H, expected.trade_count)
    assert (stats.open, stats.high, stats.low, stats.last_price) == tuple(
        str(v) for v in (expected.open, expected.high, expected.low, expected.close)
    )
    assert (stats.volume, stats.quote_volume, stats.taker_buy_volume) == tuple(
        str(v) for v in (expected.volume, expected.quote_volume, expected.buy_volume)
    )
    change = expected.close - expected.open
    assert stats.price_change == str(change)
    assert Decimal(stats.price_change_percent) == round(change / expected.open * 100, 3)
    assert stats.window_close_time.ToMicroseconds() - stats.window_open_time.ToMicroseconds() == 4 * HOUR_US
    assert list(stats.exchanges) == ["binance", "okx"]


async def test_default_window_is_24h(served: Running, clock: ManualClock) -> None:
    await seed(served.app.ingest, clock)

    answer = await served.client.market.GetMarketStats(md.GetMarketStatsRequest(symbol="C00USDT"))

    assert answer.stats.window == md.STATS_WINDOW_24H


async def test_multi_stats_twenty_symbols_one_store_query(served: Running, clock: ManualClock) -> None:
    await seed(served.app.ingest, clock)
    request = md.GetMultiStatsRequest(
        symbols=[*reversed(SYMBOLS), "C05USDT", "NOTRADEDUSDT"][1:], window=md.STATS_WINDOW_1H
    )
    # 19 traded symbols in reverse order, a duplicate, and one symbol without trades: 20 distinct.
    before = served.app.store.round_trips  # type: ignore[attr-defined]

    answer = await served.client.market.GetMultiStats(request)

    assert served.app.store.round_trips - before == 1  # type: ignore[attr-defined]
    assert [r.symbol for r in answer.results] == [*reversed(SYMBOLS[:-1]), "NOTRADEDUSDT"]
    assert [r.WhichOneof("outcome") for r in answer.results] == ["stats"] * 19 + ["no_trades"]
    assert answer.results[-1].no_trades.reason == "no trades in the last 1h"
    single = await served.client.market.GetMarketStats(
        md.GetMarketStatsRequest(symbol="C07USDT", window=md.STATS_WINDOW_1H)
    )
    assert next(r.stats for r in answer.results if r.symbol == "C07USDT") == single.stats


async def test_more_than_twenty_distinct_symbols_is_rejected(served: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.market.GetMultiStats(md.GetMultiStatsRequest(symbols=[f"S{i}" for i in range(21)]))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    twenty_with_duplicates = [f"S{i % 20}" for i in range(40)]
    answer = await served.client.market.GetMultiStats(md.GetMultiStatsRequest(symbols=twenty_with_duplicates))
    assert len(answer.results) == 20
