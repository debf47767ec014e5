"""Trades at the edges of the documented bounds, aggregated through the public API, equal a Decimal reference.

The bounds (README "Numbers"): every price, quantity and price x quantity below 10^16, at most 18 decimals
each and 18 for price and quantity together. Sums of any number of such trades (per bucket, window, market,
across exchanges) must be exact on every store, and must never make a read fail or a later trade refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import reference
from tests.conftest import Running
from wadm_client import make_trade
from wadm_grpc.api.grpc import convert
from wadm_grpc.domain.aggregate import Candle, WindowStats
from wadm_grpc.domain.decimals import EXACT, MAX_INTEGER_DIGITS, MAX_SCALE, to_wire
from wadm_grpc.domain.stats import MarketStats, StatsWindow, window_bounds
from wadm_grpc.domain.timeframe import DAY_US, MINUTE_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

NOW = 1_723_162_200_000_000  # the served fixture's clock
EXCHANGES = ("exa", "exb", "exc")
_symbols = itertools.count()


@st.composite
def prices_and_quantities(draw: st.DrawFn) -> tuple[Decimal, Decimal]:
    """A (price, quantity) within the bounds, most of them at an edge: huge, tiny, or all 18 decimals."""
    price_scale = draw(st.sampled_from([0, 18, 9, 16, 2]) | st.integers(0, MAX_SCALE))
    quantity_scale = draw(st.sampled_from([MAX_SCALE - price_scale, 0]) | st.integers(0, MAX_SCALE - price_scale))
    # In units of the last decimal: price < 10^16, quantity < 10^16 and price x quantity < 10^16.
    most_price = 10 ** (MAX_INTEGER_DIGITS + price_scale) - 1
    price_units = draw(st.sampled_from([1, most_price]) | st.integers(1, most_price))
    most_quantity = min(
        (10 ** (MAX_INTEGER_DIGITS + price_scale + quantity_scale) - 1) // price_units,
        10 ** (MAX_INTEGER_DIGITS + quantity_scale) - 1,
    )
    quantity_units = draw(st.sampled_from([1, most_quantity]) | st.integers(1, most_quantity))
    return Decimal(price_units).scaleb(-price_scale, EXACT), Decimal(quantity_units).scaleb(-quantity_scale, EXACT)


@st.composite
def markets(draw: st.DrawFn) -> list[Trade]:
    """Trades of one fresh symbol on three exchanges, bunched into few minutes, hours and days of the last week."""
    symbol = f"EDGE{next(_symbols)}USDT"
    minutes = draw(st.lists(st.integers(0, 6 * 24 * 60), min_size=1, max_size=4))
    trades = []
    for index in range(draw(st.integers(1, 40))):
        price, quantity = draw(prices_and_quantities())
        trades.append(
            Trade(
                exchange=draw(st.sampled_from(EXCHANGES)),
                symbol=symbol,
                trade_id=str(index),
                price=price,
                quantity=quantity,
                side=draw(st.sampled_from([Side.BUY, Side.SELL])),
                time_us=NOW - draw(st.sampled_from(minutes)) * MINUTE_US - draw(st.integers(0, MINUTE_US - 1)),
            )
        )
    return trades


def wire(trades: Sequence[Trade]) -> list[object]:
    return [
        make_trade(
            exchange=t.exchange,
            symbol=t.symbol,
            trade_id=t.trade_id,
            price=to_wire(t.price),
            quantity=to_wire(t.quantity),
            side=t.side.value,
            time=t.time_us,
        )
        for t in trades
    ]


async def assert_reads_equal_the_reference(served: Running, trades: Sequence[Trade]) -> None:
    symbol = trades[0].symbol
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1, Timeframe.W1):
        expected = [
            convert.candle(Candle(timeframe, start, ohlcv, closed=start + timeframe.micros <= NOW))
            for start, ohlcv in reference.buckets(trades, timeframe.bucket_start).items()
        ]
        answer = await served.client.get_candles(symbol, convert.TIMEFRAME_VALUES[timeframe], limit=1000)
        assert list(answer.candles) == expected, timeframe
    for window in (StatsWindow.H24, StatsWindow.D7):
        start, end = window_bounds(window, NOW)
        inside = [t for t in trades if start <= t.time_us <= end]
        request = md.GetMultiStatsRequest(symbols=[symbol, "NOSUCHUSDT"], window=convert.WINDOW_VALUES[window])
        multi = await served.client.market.GetMultiStats(request)
        assert multi.results[1].WhichOneof("outcome") == "no_trades"
        if not inside:
            assert multi.results[0].WhichOneof("outcome") == "no_trades"
            continue
        stats = WindowStats(symbol, tuple(sorted({t.exchange for t in inside})), reference.aggregate(inside))
        expected_stats = convert.market_stats(MarketStats(window, start, end, stats))
        assert multi.results[0].stats == expected_stats, window
        single = await served.client.market.GetMarketStats(
            md.GetMarketStatsRequest(symbol=symbol, window=convert.WINDOW_VALUES[window])
        )
        assert single.stats == expected_stats
    [summary] = [s for s in (await served.client.list_symbols()).symbols if s.symbol == symbol]
    assert summary.trade_count == len(trades)
    assert summary.last_price == to_wire(reference.aggregate(trades).close)


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=25,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # shrinking would re-run the server calls for minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(trades=markets())
async def test_random_trades_at_the_bounds_aggregate_exactly(served: Running, trades: list[Trade]) -> None:
    response = await served.client.publish_trades([wire(trades)])

    assert response.accepted_count == len(trades)
    await assert_reads_equal_the_reference(served, trades)


async def test_a_market_whose_sums_pass_every_decimal_type_stays_readable_and_open(served: Running) -> None:
    # The hostile client's CROSSUSDT, at the new bounds: 12,000 maximal trades in one minute on two exchanges
    # sum to 1.2 x 10^20 (past DECIMAL(38, 18)), with 18-decimal quantities past Decimal128's 34 digits.
    big = [
        Trade(exchange, "CROSSUSDT", f"{exchange}-{i}", Decimal("1"), Decimal("9999999999999999.99"), Side.BUY, NOW - i)
        for exchange in ("exa", "exb")
        for i in range(6000)
    ]
    fine = [
        Trade(
            "exa",
            "CROSSUSDT",
            f"fine-{i}",
            Decimal("1"),
            Decimal("9999999999999999.999999999999999999"),
            Side.SELL,
            NOW - i,
        )
        for i in range(3)
    ]
    for start in range(0, len(big), 5000):
        await served.client.publish_trades([wire(big[start : start + 5000])])
    await served.client.publish_trades([wire(fine)])
    later = [Trade("exa", "CROSSUSDT", "later", Decimal("2"), Decimal("1"), Side.BUY, NOW - 365 * DAY_US)]

    response = await served.client.publish_trades([wire(later)])

    assert response.accepted_count == 1
    await assert_reads_equal_the_reference(served, [*big, *fine, *later])
