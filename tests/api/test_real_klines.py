"""Candles built from real Binance trades equal Binance's official klines, digit for digit."""

from __future__ import annotations

from tests.conftest import Running
from tests.support import UM_TRADES, read_kline_rows
from wadm_grpc import importer

# Minutes fully covered by the trades file (the first kline starts before the capture).
COVERED = slice(1, 6)
FIELDS = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "quote_volume": "quote_volume",
    "count": "trade_count",
    "taker_buy_volume": "taker_buy_volume",
    "taker_buy_quote_volume": "taker_buy_quote_volume",
}


async def publish_file(running: Running) -> tuple[int, int]:
    """Send the trades CSV through PublishTrades, exactly as `python -m wadm_grpc import` does."""
    return await importer.publish_file(running.target, UM_TRADES, "binance", "BTCUSDT")


async def kline_candles(running: Running) -> list[dict[str, str]]:
    klines = read_kline_rows()[COVERED]
    response = await running.client.get_candles(
        "BTCUSDT",
        "1m",
        start=int(klines[0]["open_time"]) * 1000,
        end=int(klines[-1]["open_time"]) * 1000,
    )
    return [
        {field: str(getattr(candle, attribute)) for field, attribute in FIELDS.items()}
        | {"open_time": str(candle.open_time.ToMilliseconds()), "close_time": str(candle.close_time.ToMilliseconds())}
        for candle in response.candles
    ]


async def test_candles_equal_official_klines_digit_for_digit(served: Running) -> None:
    accepted, duplicates = await publish_file(served)
    assert (accepted, duplicates) == (21313, 0)

    got = await kline_candles(served)

    expected = [
        {field: row[field] for field in FIELDS} | {"open_time": row["open_time"], "close_time": row["close_time"]}
        for row in read_kline_rows()[COVERED]
    ]
    assert got == expected


async def test_republishing_leaves_every_candle_unchanged(served: Running) -> None:
    await publish_file(served)
    before = await kline_candles(served)
    hourly_before = await served.client.get_candles("BTCUSDT", "1h")

    accepted, duplicates = await publish_file(served)

    assert (accepted, duplicates) == (0, 21313)
    assert await kline_candles(served) == before
    assert await served.client.get_candles("BTCUSDT", "1h") == hourly_before
    symbols = await served.client.list_symbols()
    assert [(s.symbol, s.trade_count) for s in symbols.symbols] == [("BTCUSDT", 21313)]
