"""The TradeStore contract: every store (DuckDB, Mongo on mongomock, Mongo on a real server) passes it."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from tests.reference import aggregate, buckets, exact
from tests.support import MINUTE_US, binance_trades, make_trades, read_kline_rows
from wadm_grpc.domain.timeframe import DAY_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade, TradeCursor
from wadm_grpc.ports import CandleQuery, TradeQuery, TradeStore

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, mid-week, mid-hour


def query(timeframe: Timeframe, **fields: object) -> CandleQuery:
    defaults: dict[str, object] = {
        "symbol": "BTCUSDT",
        "exchanges": (),
        "timeframe": timeframe,
        "start_us": None,
        "end_us": None,
        "limit": 1000,
        "newest_first": True,
    }
    return CandleQuery(**(defaults | fields))  # type: ignore[arg-type]


def as_exact(rows: list[tuple[int, object]]) -> list[tuple[int, tuple[str, ...]]]:
    return [(start, exact(agg)) for start, agg in rows]  # type: ignore[arg-type]


async def test_insert_returns_only_new_trades_in_input_order(store: TradeStore) -> None:
    trades = make_trades(seed=1, count=50, start_us=T0, spacing_us=1_000_000, exchanges=("binance", "bybit"))

    first = await store.insert_trades(trades[:30])
    again = await store.insert_trades(list(reversed(trades)) + trades[:5])

    assert first == trades[:30]
    assert again == list(reversed(trades[30:]))
    assert await store.insert_trades(trades) == []


async def test_trades_come_back_digit_for_digit(store: TradeStore) -> None:
    odd = [
        Trade("kraken", "XBTUSD", "a-1", Decimal("61800.30"), Decimal("0.006"), Side.BUY, T0 + 123),
        Trade("kraken", "XBTUSD", "a-2", Decimal("0.000000010000"), Decimal("1000000.000000"), Side.SELL, T0 + 456),
        Trade("kraken", "XBTUSD", "a-3", Decimal("12345678901234567890.1"), Decimal("1"), Side.BUY, T0 + 789),
    ]
    await store.insert_trades(odd)

    page = await store.trades(TradeQuery("XBTUSD", (), None, None, None, 10))

    assert [(str(t.price), str(t.quantity), t.side, t.time_us, t.trade_id) for t in page] == [
        (str(t.price), str(t.quantity), t.side, t.time_us, t.trade_id) for t in reversed(odd)
    ]


@pytest.mark.parametrize("timeframe", list(Timeframe), ids=lambda t: t.label)
async def test_candles_equal_the_reference_aggregation(store: TradeStore, timeframe: Timeframe) -> None:
    # 3,000 trades over ~26 days on two exchanges: every timeframe gets several buckets.
    trades = make_trades(seed=7, count=3000, start_us=T0, spacing_us=751_000_011, exchanges=("binance", "bybit"))
    for start in range(0, len(trades), 700):
        await store.insert_trades(trades[start : start + 700])

    got = await store.candles(query(timeframe))
    expected = list(buckets(trades, timeframe.bucket_start).items())[-1000:]

    assert as_exact(got) == as_exact(expected)  # type: ignore[arg-type]
    only_bybit = await store.candles(query(timeframe, exchanges=("bybit",)))
    expected_bybit = buckets([t for t in trades if t.exchange == "bybit"], timeframe.bucket_start)
    assert as_exact(only_bybit) == as_exact(list(expected_bybit.items())[-1000:])  # type: ignore[arg-type]


async def test_weeks_start_on_monday_utc(store: TradeStore) -> None:
    sunday_night = 1_700_438_399_000_000  # 2023-11-19T23:59:59Z, a Sunday
    await store.insert_trades(make_trades(seed=2, count=2, start_us=sunday_night, spacing_us=2_000_000))

    weeks = await store.candles(query(Timeframe.W1))

    assert [start for start, _ in weeks] == [1_699_833_600_000_000, 1_700_438_400_000_000]  # Mon 13th, Mon 20th


async def test_candle_bounds_and_limits_follow_binance(store: TradeStore) -> None:
    trades = make_trades(seed=3, count=200, start_us=T0, spacing_us=MINUTE_US)  # one trade a minute
    await store.insert_trades(trades)
    starts = [Timeframe.M1.bucket_start(t.time_us) for t in trades]

    newest = await store.candles(query(Timeframe.M1, limit=5))
    oldest_from = await store.candles(query(Timeframe.M1, start_us=starts[10] - 1, limit=5, newest_first=False))
    newest_to = await store.candles(query(Timeframe.M1, end_us=starts[50] + 1, limit=5))
    between = await store.candles(
        query(Timeframe.M1, start_us=starts[20], end_us=starts[22], limit=5, newest_first=False)
    )

    assert [s for s, _ in newest] == starts[-5:]
    assert [s for s, _ in oldest_from] == starts[10:15]
    assert [s for s, _ in newest_to] == starts[46:51]
    assert [s for s, _ in between] == starts[20:23]


async def test_sparse_history_still_finds_the_newest_candles(store: TradeStore) -> None:
    old = make_trades(seed=4, count=3, start_us=T0, spacing_us=MINUTE_US)
    late = make_trades(seed=5, count=2, start_us=T0 + 400 * DAY_US, spacing_us=MINUTE_US)
    late = [dataclasses.replace(t, trade_id=f"late-{t.trade_id}") for t in late]
    await store.insert_trades(old + late)

    got = await store.candles(query(Timeframe.M1, limit=4))

    assert len(got) == 4
    assert [s for s, _ in got][-2:] == [Timeframe.M1.bucket_start(t.time_us) for t in late]


async def test_a_late_trade_updates_its_buckets_in_every_tier(store: TradeStore) -> None:
    trades = make_trades(seed=6, count=500, start_us=T0, spacing_us=7_000_000)
    await store.insert_trades(trades[100:])
    await store.insert_trades(trades[:100])  # late: older than everything stored
    late_low = dataclasses.replace(trades[250], trade_id="late-low", price=Decimal("0.01"))
    await store.insert_trades([late_low])
    everything = [*trades, late_low]

    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
        got = await store.candles(query(timeframe))
        assert as_exact(got) == as_exact(list(buckets(everything, timeframe.bucket_start).items()))  # type: ignore[arg-type]


async def test_symbols_summarise_what_is_stored(store: TradeStore) -> None:
    trades = make_trades(
        seed=8,
        count=300,
        start_us=T0,
        spacing_us=1_000_000,
        symbols=("ETHUSDT", "BTCUSDT"),
        exchanges=("okx", "kraken"),
    )
    await store.insert_trades(trades)

    summaries = await store.symbols(())
    only_okx = await store.symbols(("okx",))

    assert [s.symbol for s in summaries] == ["BTCUSDT", "ETHUSDT"]
    for summary in summaries:
        mine = [t for t in trades if t.symbol == summary.symbol]
        assert summary.exchanges == ("kraken", "okx")
        assert summary.trade_count == len(mine)
        assert (summary.first_trade_us, summary.last_trade_us) == (mine[0].time_us, mine[-1].time_us)
        assert str(summary.last_price) == str(aggregate(mine).close)
    assert sum(s.trade_count for s in only_okx) == sum(1 for t in trades if t.exchange == "okx")


async def test_window_stats_are_exact_for_unaligned_windows_in_one_round_trip(store: TradeStore) -> None:
    symbols = tuple(f"SYM{i}USDT" for i in range(20))
    trades = make_trades(seed=9, count=4000, start_us=T0, spacing_us=97_000_001, symbols=symbols, exchanges=("a", "b"))
    await store.insert_trades(trades)
    start, end = T0 + 3 * DAY_US + 12_345_678, T0 + 4 * DAY_US + 7 * 3_600_000_000 + 59_999_999

    before = store.round_trips  # type: ignore[attr-defined]
    got = await store.window_stats([*symbols, "NOTRADED"], (), start, end)
    assert store.round_trips - before == 1  # type: ignore[attr-defined]

    inside = [t for t in trades if start <= t.time_us <= end]
    assert set(got) == set(symbols)
    for symbol in symbols:
        mine = [t for t in inside if t.symbol == symbol]
        assert exact(got[symbol].ohlcv) == exact(aggregate(mine)), symbol
        assert got[symbol].exchanges == tuple(sorted({t.exchange for t in mine}))
    only_a = await store.window_stats(symbols[:2], ("a",), start, end)
    assert exact(only_a[symbols[0]].ohlcv) == exact(
        aggregate([t for t in inside if t.symbol == symbols[0] and t.exchange == "a"])
    )


async def test_trade_pages_walk_newest_first_exactly_once(store: TradeStore) -> None:
    trades = make_trades(seed=10, count=257, start_us=T0, spacing_us=333_333, exchanges=("x", "y"))
    # Several trades at the same microsecond, told apart by exchange and numeric-aware id.
    same_time = [
        dataclasses.replace(t, time_us=T0 + 5_000_000, trade_id=str(300 + i**3)) for i, t in enumerate(trades[:12])
    ]
    everything = trades + same_time
    await store.insert_trades(everything)
    expected = sorted(everything, key=lambda t: t.order_key, reverse=True)

    walked: list[Trade] = []
    cursor = None
    while True:
        page = await store.trades(TradeQuery("BTCUSDT", (), None, None, cursor, 10))
        walked += page
        if len(page) < 10:
            break
        cursor = TradeCursor(page[-1].time_us, page[-1].exchange, page[-1].trade_id)

    assert walked == expected
    window = await store.trades(TradeQuery("BTCUSDT", ("y",), T0 + 10_000_000, T0 + 20_000_000, None, 1000))
    assert window == [t for t in expected if t.exchange == "y" and T0 + 10_000_000 <= t.time_us <= T0 + 20_000_000]


async def test_real_binance_trades_make_the_official_klines(store: TradeStore) -> None:
    await store.insert_trades(binance_trades())
    klines = read_kline_rows()[1:6]

    got = await store.candles(
        query(
            Timeframe.M1,
            start_us=int(klines[0]["open_time"]) * 1000,
            end_us=int(klines[-1]["open_time"]) * 1000,
            newest_first=False,
        )
    )

    fields = ("open", "high", "low", "close", "volume", "quote_volume", "count")
    assert [
        (str(a.open), str(a.high), str(a.low), str(a.close), str(a.volume), str(a.quote_volume), str(a.trade_count))
        for _, a in got
    ] == [tuple(row[f] for f in fields) for row in klines]
    assert [(str(a.buy_volume), str(a.buy_quote_volume)) for _, a in got] == [
        (row["taker_buy_volume"], row["taker_buy_quote_volume"]) for row in klines
    ]


async def test_sums_beyond_28_digits_stay_exact(store: TradeStore) -> None:
    big = [
        Trade("x", "BIGUSD", str(i), Decimal("1000000.123456789"), Decimal("100000.123456789"), Side.BUY, T0 + i)
        for i in range(3)
    ]
    await store.insert_trades(big)

    candles = {tf: await store.candles(query(tf, symbol="BIGUSD")) for tf in (Timeframe.M1, Timeframe.H1, Timeframe.D1)}
    stats = await store.window_stats(["BIGUSD"], (), T0, T0 + 10)

    expected = exact(aggregate(big))
    assert expected[5] == "300000407407.449424736250571563"  # 30 significant digits
    assert {tf: [exact(a) for _, a in rows] for tf, rows in candles.items()} == {tf: [expected] for tf in candles}
    assert exact(stats["BIGUSD"].ohlcv) == expected


async def test_weeks_of_early_1970_start_on_the_monday_before(store: TradeStore) -> None:
    friday = 1 * DAY_US + 3_600_000_000  # 1970-01-02T01:00:00Z; the week began Monday 1969-12-29
    await store.insert_trades(make_trades(seed=17, count=1, start_us=friday, spacing_us=1))

    weeks = await store.candles(query(Timeframe.W1))

    assert [start for start, _ in weeks] == [-3 * DAY_US]
