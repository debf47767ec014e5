"""The Mongo store's sums are exact for any sequence of accepted trades, however many digits they add up to.

Decimal128 has 34 significant digits: a real server rounds a sum of 18-decimal values once it reaches 10^16.
The emulator rounds exactly as a server does (tests/mongo_support.py, shim 1), so these tests fail wherever a
server would round. Every figure is compared with the naive reference aggregation (tests/reference.py).

Runs on mongomock (always) and on the real server at MONGODB_URI (make test-mongo)."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128

from tests.mongo_support import DECIMAL128_ARITHMETIC, HARNESSES, Harness, NumericDecimal128
from tests.reference import aggregate, buckets, exact
from wadm_grpc.domain.decimals import MAX_INTEGER_DIGITS
from wadm_grpc.domain.timeframe import DAY_US, HOUR_US, MINUTE_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_input import MAX_TIME_US, TradeInput, parse_trade
from wadm_grpc.ports import CandleQuery
from wadm_grpc.stores.mongo import rebuild
from wadm_grpc.stores.mongo.documents import DecimalPrecisionError, computed_decimal

T0 = 1_700_000_040_000_000  # 2023-11-14T22:14:00Z, a minute start mid-week
SYMBOL = "EXACTUSDT"
EXCHANGES = ("binance", "bybit", "okx")
# Trades at the bounds the domain accepts: values below 10^16, at most 18 decimals (price and quantity together).
BOUNDARY_VALUES = [
    ("1", "9999999999999999.99"),
    ("1", "0.000000000000000001"),
    ("0.000000000000000001", "1"),
    ("9999999999999999.999999999999999999", "1"),
    ("0.999999999999999999", "9"),
    ("1234.567890123456789", "8.123"),
    ("99999999.99999999", "99999999.99"),
]


@pytest.fixture(params=HARNESSES)
async def mongo(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with request.param() as harness:
        yield harness


def boundary_trades(seed: int, count: int) -> list[Trade]:
    """`count` seeded trades at the bounds, most in the minute at T0, on three exchanges; a few later ones
    (next minutes, hours, days) so that every tier and timeframe has several buckets."""
    rng = random.Random(seed)
    trades = []
    for index in range(count):
        price, quantity = rng.choice(BOUNDARY_VALUES)
        spread_us = 9 * DAY_US if index % 400 == 0 else MINUTE_US
        time_us = T0 + rng.randrange(spread_us)
        side = rng.choice((Side.BUY, Side.SELL))
        item = TradeInput(rng.choice(EXCHANGES), SYMBOL, str(index + 1), price, quantity, side, time_us)
        trades.append(parse_trade(item, latest_us=MAX_TIME_US, field="trade"))  # what PublishTrades accepts
    return trades


def candle_query(timeframe: Timeframe, exchanges: tuple[str, ...] = (), **fields: Any) -> CandleQuery:
    base = CandleQuery(SYMBOL, exchanges, timeframe, None, None, 1000, True)
    return dataclasses.replace(base, **fields)


@pytest.mark.timeout(360)  # 10,000 trades through mongomock's pure-Python pipelines, on a shared 2-core machine
async def test_every_read_of_trades_at_the_bounds_is_exact(mongo: Harness) -> None:
    trades = boundary_trades(seed=31, count=10_000)
    for start in range(0, len(trades), 5_000):  # the busy minute is recomputed over both batches
        assert await mongo.store.insert_trades(trades[start : start + 5_000]) == trades[start : start + 5_000]

    busy_minute = aggregate(t for t in trades if t.time_us < T0 + MINUTE_US)
    assert len(str(int(busy_minute.volume))) > MAX_INTEGER_DIGITS + 2  # far beyond one Decimal128 sum
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1, Timeframe.W1):
        got = await mongo.store.candles(candle_query(timeframe))
        want = buckets(trades, timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], timeframe
        got = await mongo.store.candles(candle_query(timeframe, ("bybit",)))
        want = buckets([t for t in trades if t.exchange == "bybit"], timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], (timeframe, "bybit")

    windows = [
        (T0 + 17_500_001, T0 + 8 * DAY_US + 3 * HOUR_US + 7 * MINUTE_US + 12_345),  # raw edges + 1m, 1h, 1d
        (T0 - 1, T0 + MINUTE_US - 2),  # raw trades only: most of the busy minute
        (T0, T0 + 9 * DAY_US),  # whole buckets only
    ]
    for start, end in windows:
        stats = await mongo.store.window_stats([SYMBOL, "NOTRADES"], (), start, end)
        assert list(stats) == [SYMBOL]
        assert stats[SYMBOL].exchanges == EXCHANGES
        assert exact(stats[SYMBOL].ohlcv) == exact(aggregate(t for t in trades if start <= t.time_us <= end))

    (summary,) = await mongo.store.symbols(())
    everything = aggregate(trades)
    assert (summary.symbol, summary.exchanges, summary.trade_count) == (SYMBOL, EXCHANGES, len(trades))
    assert (summary.first_trade_us, summary.last_trade_us) == (everything.first_trade_us, everything.last_trade_us)
    assert str(summary.last_price) == str(everything.close)

    # The market still takes valid trades, and reads them.
    later = [Trade("okx", SYMBOL, f"later-{i}", Decimal("0.5"), Decimal("0.25"), Side.BUY, T0 + i) for i in range(3)]
    assert await mongo.store.insert_trades(later) == later
    ((_, minute),) = await mongo.store.candles(candle_query(Timeframe.M1, start_us=T0, limit=1, newest_first=False))
    assert exact(minute) == exact(aggregate(t for t in [*trades, *later] if t.time_us < T0 + MINUTE_US))


def old_format(document: dict[str, Any]) -> dict[str, Any]:
    """A rollup document as the store's first version wrote it: one Decimal128 per sum, summed by the server
    (so rounded to 34 digits), no limbs."""
    old = {k: v for k, v in document.items() if not k.endswith(("_int", "_frac"))}
    for name in ("volume", "quote", "buy_volume", "buy_quote"):
        if f"{name}_int" in document:
            total = Decimal(str(document[f"{name}_int"])) + Decimal(str(document[f"{name}_frac"]))
            old[name] = Decimal128(DECIMAL128_ARITHMETIC.plus(total))
    return old


async def test_rollups_of_the_old_format_are_rebuilt_at_start(mongo: Harness) -> None:
    trades = boundary_trades(seed=32, count=800)
    await mongo.store.insert_trades(trades)
    names = mongo.store._commands.names
    rollups, state = mongo.database[names.rollups], mongo.database[names.state]
    documents = await rollups.find({}).to_list(None)
    await rollups.delete_many({})
    await rollups.insert_many([old_format(d) for d in documents])
    await state.delete_many({"_id": f"{names.trades}:rollup_format"})  # the first version wrote no format

    await mongo.store.start()  # as after an upgrade: rebuilds in the background
    await mongo.store.caught_up()

    rebuilt = await rollups.find({}).to_list(None)
    assert len(rebuilt) == len(documents)
    assert not [d for d in rebuilt if "volume" in d]
    (marker,) = await state.find({"_id": f"{names.trades}:rollup_format"}).to_list(None)
    assert {k: v for k, v in marker.items() if k != "_id"} == {"version": 2}
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
        got = await mongo.store.candles(candle_query(timeframe))
        want = buckets(trades, timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], timeframe
    (summary,) = await mongo.store.symbols(())
    assert summary.trade_count == len(trades)

    mark = len(mongo.log)
    await mongo.store.start()  # up to date: one look at the format marker, no rebuild
    await mongo.store.caught_up()
    sent = [c.name for c in mongo.sent_since(mark) if c.name not in ("createIndexes", "findAndModify")]
    assert sent == ["find", "aggregate", "find", "aggregate"]  # format marker; dirty marks, watermark, scan


async def test_an_interrupted_rebuild_resumes_where_it_stopped(
    mongo: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    trades = boundary_trades(seed=33, count=600)
    await mongo.store.insert_trades(trades)
    names = mongo.store._commands.names
    rollups, state = mongo.database[names.rollups], mongo.database[names.state]
    documents = await rollups.find({}).to_list(None)
    await rollups.delete_many({})
    await rollups.insert_many([old_format(d) for d in documents])
    await state.delete_many({"_id": f"{names.trades}:rollup_format"})
    mongo.store._scan_batch = 200
    real_scan = rebuild.scan_and_refresh

    async def crash_after_one_batch(db: Any, since: Any, batch: int, save: Any, *args: Any) -> Any:
        async def save_then_crash(last_id: Any) -> None:
            await save(last_id)
            raise ConnectionError("the process died")

        return await real_scan(db, since, batch, save_then_crash, *args)

    monkeypatch.setattr(rebuild, "scan_and_refresh", crash_after_one_batch)
    caplog.set_level(logging.WARNING, logger="wadm_grpc.stores.mongo")
    await mongo.store.start()
    await mongo.store.caught_up()
    assert "rollup catch-up failed; the periodic refresh retries" in caplog.messages  # logged, not raised
    monkeypatch.undo()

    await mongo.store.start()
    await mongo.store.caught_up()

    assert "rollups rebuilt from 400 trades" in caplog.messages  # the 200 of the first batch are not read again
    assert not await rollups.find({"volume": {"$exists": True}}).to_list(None)
    for timeframe in (Timeframe.M1, Timeframe.D1):
        got = await mongo.store.candles(candle_query(timeframe))
        want = buckets(trades, timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], timeframe


def test_the_emulator_rounds_sums_as_a_server_does() -> None:
    """IEEE 754-2008 decimal128: 34 significant digits, half-even; exponents clamped to [-6176, 6111]."""
    big, tiny = NumericDecimal128(Decimal("9999999999999999.99")), NumericDecimal128(Decimal("1E-18"))

    assert str(big + tiny) == "9999999999999999.990000000000000001"  # 34 digits: still exact
    assert str((big + big) + tiny) == "19999999999999999.98000000000000000"  # 35 needed: the 1E-18 is lost
    assert str(NumericDecimal128(Decimal("0.5")) + Decimal128("2.5E-34")) == "0.5000000000000000000000000000000002"
    assert str(NumericDecimal128(Decimal("0.5")) + Decimal128("7.5E-34")) == "0.5000000000000000000000000000000008"
    assert str(NumericDecimal128(Decimal("1E+6111")) * 10) == "1.0E+6112"  # clamped: coefficient padded
    assert str(NumericDecimal128(Decimal("61800.30")).__floor__()) == "61800"


@pytest.mark.parametrize(
    ("value", "scale", "rounded"),
    [
        ("19999999999999999.98000000000000000", 18, True),  # 34 digits, last one 0: may have been rounded
        ("19999999999999999.98000000000000001", 18, True),
        ("1999999999999999.998000000000000001", 18, False),  # all 18 decimals present
        ("9999999999999999999999999999999999", 0, False),  # an integer sum below 10^34
        ("1.000000000000000000000000000000000E+34", 0, True),
        ("12345.67", 2, False),
    ],
)
def test_a_rounded_sum_is_never_served(value: str, scale: int, rounded: bool) -> None:
    stored: Any = Decimal128(value)
    if rounded:
        with pytest.raises(DecimalPrecisionError):
            computed_decimal(stored, scale)
    else:
        assert computed_decimal(stored, scale) == Decimal(value)
