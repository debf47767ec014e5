"""GetCandles through the real server: Binance bound semantics, gap filling, the closed flag."""

from __future__ import annotations

from collections.abc import Sequence

from tests.conftest import Running
from tests.support import MINUTE_US
from wadm_client import make_trade
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

T0 = 1_723_161_600_000_000  # 2024-08-09T00:00:00Z


def trade(minute: int, price: str, trade_id: int, *, second: int = 0, exchange: str = "binance") -> object:
    return make_trade(
        exchange=exchange,
        symbol="ETHUSDT",
        trade_id=trade_id,
        price=price,
        quantity="1.5",
        side="buy" if trade_id % 2 else "sell",
        time=T0 + minute * MINUTE_US + second * 1_000_000,
    )


def minutes(candles: Sequence[md.Candle]) -> list[int]:
    return [(c.open_time.ToMicroseconds() - T0) // MINUTE_US for c in candles]


async def seed(served: Running, clock: ManualClock) -> None:
    # Trades in minutes 0, 1, 4 and 9 (gaps at 2-3 and 5-8); the clock is inside minute 9.
    trades = [trade(0, "10.00", 1), trade(1, "11.00", 2), trade(4, "12.50", 3), trade(9, "9.75", 4, second=1)]
    await served.client.publish_trades([trades])  # type: ignore[list-item]
    clock.set(T0 + 9 * MINUTE_US + 30_000_000)


async def test_bounds_select_like_binance(served: Running, clock: ManualClock) -> None:
    await seed(served, clock)
    client = served.client

    latest = await client.get_candles("ETHUSDT", "1m", limit=2)
    from_start = await client.get_candles("ETHUSDT", "1m", start=T0 + 1, limit=2)
    up_to_end = await client.get_candles("ETHUSDT", "1m", end=T0 + 4 * MINUTE_US, limit=2)
    both = await client.get_candles("ETHUSDT", "1m", start=T0, end=T0 + 4 * MINUTE_US, limit=2)

    assert minutes(latest.candles) == [4, 9]
    assert minutes(from_start.candles) == [1, 4]
    assert minutes(up_to_end.candles) == [1, 4]
    assert minutes(both.candles) == [0, 1]


async def test_gaps_are_omitted_by_default_and_filled_on_request(served: Running, clock: ManualClock) -> None:
    await seed(served, clock)

    filled = await served.client.get_candles("ETHUSDT", "1m", limit=12, fill_gaps=True)

    # 12 buckets end at the clock's minute 9; the two before the first trade are not invented.
    assert minutes(filled.candles) == list(range(10))
    gap = filled.candles[5]
    assert (gap.open, gap.high, gap.low, gap.close) == ("12.50",) * 4
    assert (gap.volume, gap.quote_volume, gap.trade_count, gap.vwap) == ("0.0", "0.000", 0, "")
    assert filled.candles[4].vwap == "12.500000"


async def test_only_the_bucket_in_progress_is_open(served: Running, clock: ManualClock) -> None:
    await seed(served, clock)

    one_minute = await served.client.get_candles("ETHUSDT", "1m")
    five_minutes = await served.client.get_candles("ETHUSDT", "5m")

    assert [c.closed for c in one_minute.candles] == [True, True, True, False]
    assert [c.closed for c in five_minutes.candles] == [True, False]
    assert five_minutes.candles[0].close_time.ToMicroseconds() == T0 + 5 * MINUTE_US - 1000


async def test_exchange_filter_and_aggregation_across_exchanges(served: Running, clock: ManualClock) -> None:
    await seed(served, clock)
    await served.client.publish_trades([[trade(0, "10.40", 7, second=30, exchange="bybit")]])  # type: ignore[list-item]

    both = await served.client.get_candles("ETHUSDT", "1h")
    bybit = await served.client.get_candles("ETHUSDT", "1h", exchanges=["BYBIT"])

    assert (both.candles[0].trade_count, both.candles[0].high, both.candles[0].volume) == (5, "12.50", "7.5")
    assert (bybit.candles[0].trade_count, bybit.candles[0].open) == (1, "10.40")
    assert both.candles[0].taker_buy_volume == "4.5"  # ids 1, 3 and 7 bought
    assert both.candles[0].taker_sell_volume == "3.0"
