"""The Mongo store on the WADM collectors' documents: doubles and Decimal128, direct inserts picked up by the
incremental rollups, and every read executed by the server (asserted on the commands sent, not only results).

Runs on mongomock (always) and on the real server at MONGODB_URI (make test-mongo)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128

from tests.mongo_support import HARNESSES, Command, Harness
from tests.reference import aggregate, buckets, exact
from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.timeframe import DAY_US, HOUR_US, MINUTE_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns
from wadm_grpc.ports import CandleQuery, TradeQuery
from wadm_grpc.stores.mongo.documents import EPOCH

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
OpenHarness = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture(params=HARNESSES)
def open_mongo(request: pytest.FixtureRequest) -> OpenHarness:
    """Opens a started Mongo store (mongomock, or the real server when MONGODB_URI is set)."""
    opener: OpenHarness = request.param
    return opener


@pytest.fixture
async def mongo(open_mongo: OpenHarness) -> AsyncIterator[Harness]:
    async with open_mongo() as harness:
        yield harness


def collector_document(
    trade_id: int | str, price: Any, quantity: Any, side: str, time_ms: int, *, exchange: str = "binance"
) -> dict[str, Any]:
    """A trade as the WADM collectors write it: no microseconds, no scales, no quote."""
    return {
        "exchange": exchange,
        "symbol": "BTCUSDT",
        "price": price,
        "quantity": quantity,
        "side": side,
        "timestamp": EPOCH + timedelta(milliseconds=time_ms),
        "trade_id": trade_id,
    }


def as_trade(document: dict[str, Any]) -> Trade:
    """What the store must read a collector document as."""

    def number(value: Any) -> Decimal:
        if isinstance(value, Decimal128):
            return value.to_decimal()
        return Decimal(int(value)) if value == int(value) else Decimal(repr(value))  # 2.0 is "2"

    return Trade(
        exchange=document["exchange"],
        symbol=document["symbol"],
        trade_id=str(document["trade_id"]),
        price=number(document["price"]),
        quantity=number(document["quantity"]),
        side=Side(document["side"]),
        time_us=(document["timestamp"] - EPOCH) // timedelta(microseconds=1),
    )


def double_documents(seed: int, count: int, start_ms: int, spacing_ms: int) -> list[dict[str, Any]]:
    """Collector documents with doubles parsed from exchange decimal strings; several per millisecond, so
    int ids must order numerically (9 before 10)."""
    rng = random.Random(seed)
    documents = []
    for index in range(count):
        price = float(f"{61800 + rng.randint(-900, 900) / 10:.1f}")  # 61800.3 is not exact in binary
        quantity = float(f"{rng.randint(1, 90_000) / 10 ** rng.randint(1, 5)}")
        side = rng.choice(("buy", "sell"))
        time_ms = start_ms + (index // 3) * spacing_ms
        documents.append(collector_document(index + 1, price, quantity, side, time_ms, exchange=rng.choice("ab")))
    return documents


def candle_query(timeframe: Timeframe, **fields: Any) -> CandleQuery:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "exchanges": (), "timeframe": timeframe, "start_us": None}
    return CandleQuery(**(base | {"end_us": None, "limit": 1000, "newest_first": True} | fields))


async def snapshot(mongo: Harness) -> list[list[dict[str, Any]]]:
    """Every rollup and market document, without _id, in a stable order."""
    names = mongo.store._commands.names
    found = []
    for name in (names.rollups, names.markets):
        documents = await mongo.database[name].find({}).to_list(None)
        rows = [{k: v for k, v in d.items() if k != "_id"} for d in documents]
        found.append(sorted(rows, key=lambda d: (d.get("tier", ""), d["symbol"], d["exchange"], d.get("bucket", 0))))
    return found


def aggregates_of(commands: list[Command]) -> list[tuple[str, list[str]]]:
    return [(c.collection, c.stages) for c in commands if c.name == "aggregate"]


async def test_collector_doubles_read_as_their_shortest_decimals(mongo: Harness) -> None:
    documents = double_documents(seed=11, count=600, start_ms=T0_MS, spacing_ms=7_001)
    await mongo.database["trades"].insert_many([dict(d) for d in documents])
    expected = [as_trade(d) for d in documents]

    report = await mongo.store.refresh_rollups()

    assert report.scanned_trades == len(documents)
    page = await mongo.store.trades(TradeQuery("BTCUSDT", (), None, None, None, 1000))
    assert [(t.trade_id, str(t.price), str(t.quantity), t.time_us, t.side) for t in page] == [
        (t.trade_id, str(t.price), str(t.quantity), t.time_us, t.side)
        for t in sorted(expected, key=lambda t: t.order_key, reverse=True)
    ]
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
        got = await mongo.store.candles(candle_query(timeframe))
        want = buckets(expected, timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], timeframe
    start, end = T0_MS * 1000 + 1_234_567, T0_MS * 1000 + HOUR_US + 17 * MINUTE_US + 3
    stats = await mongo.store.window_stats(["BTCUSDT"], (), start, end)
    assert exact(stats["BTCUSDT"].ohlcv) == exact(aggregate(t for t in expected if start <= t.time_us <= end))


async def test_decimal128_documents_keep_their_exponent(mongo: Harness) -> None:
    theirs = [
        collector_document("x-7", Decimal128("61800.30"), Decimal128("0.00100"), "buy", T0_MS),
        collector_document("x-10", Decimal128("61800.25"), Decimal128("2"), "sell", T0_MS),
    ]
    await mongo.database["trades"].insert_many([dict(d) for d in theirs])
    ours = Trade("binance", "BTCUSDT", "77", Decimal("61800.10"), Decimal("0.500"), Side.BUY, T0_MS * 1000 + 999)
    await mongo.store.insert_trades([ours])
    await mongo.store.refresh_rollups()

    page = await mongo.store.trades(TradeQuery("BTCUSDT", (), None, None, None, 10))
    stored = await mongo.database["trades"].find({"trade_id": "77"}).to_list(None)

    assert [(t.trade_id, str(t.price), str(t.quantity), t.time_us) for t in page] == [
        ("77", "61800.10", "0.500", T0_MS * 1000 + 999),
        ("x-10", "61800.25", "2", T0_MS * 1000),
        ("x-7", "61800.30", "0.00100", T0_MS * 1000),
    ]
    (document,) = stored
    assert {k: str(v) for k, v in document.items() if k in ("price", "quantity", "quote")} == {
        "price": "61800.10",
        "quantity": "0.500",
        "quote": "30900.05000",
    }
    assert (document["time_us"], document["price_scale"], document["quantity_scale"]) == (T0_MS * 1000 + 999, 2, 3)
    assert isinstance(document["price"], Decimal128)
    # Aggregates are exact; documents without scale fields count at their value's own ("0.00100": 3 digits).
    ((_, candle),) = await mongo.store.candles(candle_query(Timeframe.M1))
    assert (str(candle.open), str(candle.close), str(candle.volume), str(candle.buy_volume)) == (
        "61800.30",
        "61800.10",
        "2.501",
        "0.501",
    )
    assert candle.quote_volume == aggregate([as_trade(d) for d in theirs] + [ours]).quote_volume


async def test_rerunning_the_refresh_changes_nothing(mongo: Harness) -> None:
    await mongo.database["trades"].insert_many(double_documents(seed=12, count=300, start_ms=T0_MS, spacing_ms=9_000))
    await mongo.store.refresh_rollups()
    before, mark, trips = await snapshot(mongo), len(mongo.log), mongo.store.round_trips

    report = await mongo.store.refresh_rollups()

    assert report.scanned_trades == 0
    assert mongo.store.round_trips - trips == 4
    sent = mongo.sent_since(mark)
    # the lease renewal, the dirty marks, the watermark, then the scan: nothing written
    assert [c.name for c in sent] == ["findAndModify", "aggregate", "find", "aggregate"]
    assert aggregates_of(sent)[1:] == [("trades", ["$match", "$sort", "$limit", "$project", "$group"])]
    assert await snapshot(mongo) == before


async def test_rescanning_recent_trades_rewrites_the_same_documents(open_mongo: OpenHarness) -> None:
    async with open_mongo(rescan_seconds=3600) as mongo:
        documents = double_documents(seed=13, count=200, start_ms=T0_MS, spacing_ms=11_000)
        await mongo.database["trades"].insert_many(documents)
        first = await mongo.store.refresh_rollups()
        before = await snapshot(mongo)

        again = await mongo.store.refresh_rollups()

        assert again.scanned_trades == first.scanned_trades == len(documents)
        assert again.written == first.written
        assert await snapshot(mongo) == before


async def test_a_late_collector_trade_updates_its_buckets(mongo: Harness) -> None:
    documents = double_documents(seed=14, count=400, start_ms=T0_MS, spacing_ms=600_007)  # ~3 days
    await mongo.database["trades"].insert_many([dict(d) for d in documents])
    await mongo.store.refresh_rollups()
    late = collector_document(10**9, 0.01, 1.5, "sell", 0)
    late["timestamp"] = documents[200]["timestamp"] + timedelta(milliseconds=1)  # into a rolled-up minute
    mark, trips = len(mongo.log), mongo.store.round_trips

    await mongo.database["trades"].insert_one(dict(late))
    report = await mongo.store.refresh_rollups()

    assert report.scanned_trades == 1
    assert report.written == {"1m": 1, "1h": 1, "1d": 1, "markets": 1}
    sent = mongo.sent_since(mark)
    # lease renewal, dirty marks, watermark, scan, then per tier: recompute (server) + upsert, markets
    # likewise, new watermark.
    assert mongo.store.round_trips - trips == 13
    assert aggregates_of(sent) == [
        ("trade_rollup_dirty", ["$match", "$limit"]),
        ("trades", ["$match", "$sort", "$limit", "$project", "$group"]),
        ("trades", ["$match", "$set", "$set", "$group"]),
        ("trade_rollups", ["$match", "$addFields", "$group"]),
        ("trade_rollups", ["$match", "$addFields", "$group"]),
        ("trade_rollups", ["$match", "$group"]),
    ]
    everything = [as_trade(d) for d in [*documents, late]]
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
        got = await mongo.store.candles(candle_query(timeframe))
        want = buckets(everything, timeframe.bucket_start)
        assert [(s, exact(a)) for s, a in got] == [(s, exact(a)) for s, a in want.items()], timeframe
    (summary,) = await mongo.store.symbols(())
    assert summary.trade_count == len(everything)


async def test_reads_are_pipelines_the_server_runs(mongo: Harness) -> None:
    symbols = [f"SYM{i}USDT" for i in range(20)]
    rng = random.Random(15)
    trades = [
        Trade(rng.choice("ab"), rng.choice(symbols), str(i), Decimal("1.5"), Decimal("2"), Side.BUY, T0_MS * 1000 + i)
        for i in range(0, 3 * DAY_US, 3 * DAY_US // 500)
    ]
    await mongo.store.insert_trades(trades)
    reads: list[tuple[str, Any]] = [
        ("candles", mongo.store.candles(candle_query(Timeframe.H4, symbol=symbols[0], exchanges=("a", "b")))),
        ("stats", mongo.store.window_stats(symbols, (), T0_MS * 1000 + 7, T0_MS * 1000 + 2 * DAY_US + 11)),
        ("page", mongo.store.trades(TradeQuery(symbols[0], (), None, None, None, 5))),
        ("symbols", mongo.store.symbols(())),
    ]
    sent: dict[str, list[tuple[str, list[str]]]] = {}
    for name, read in reads:
        mark = len(mongo.log)
        assert await read
        assert all(c.name == "aggregate" for c in mongo.sent_since(mark)), name  # nothing fetched raw
        sent[name] = aggregates_of(mongo.sent_since(mark))

    assert sent == {
        "candles": [("trade_rollups", ["$match", "$sort", "$limit", "$addFields", "$group", "$sort", "$limit"])],
        "stats": [
            ("trades", ["$match", "$set", "$set", "$match", "$group", "$addFields", "$unionWith", "$match", "$group"])
        ],
        "page": [
            ("trades", ["$match", "$sort", "$project", "$match", "$limit", "$group"]),
            ("trades", ["$match", "$project", "$match", "$sort", "$limit"]),
        ],
        "symbols": [("trade_markets", ["$match", "$group", "$sort"])],
    }


async def test_a_trade_a_collector_already_wrote_is_a_duplicate(mongo: Harness) -> None:
    await mongo.database["trades"].insert_one(collector_document("42", 1.5, 2.0, "buy", T0_MS))
    old = Trade("binance", "BTCUSDT", "42", Decimal("1.5"), Decimal("2"), Side.BUY, T0_MS * 1000)
    new = Trade("binance", "BTCUSDT", "43", Decimal("1.5"), Decimal("2"), Side.BUY, T0_MS * 1000 + 1)

    assert await mongo.store.insert_trades([old, new]) == [new]


async def test_starting_again_keeps_the_indexes(mongo: Harness) -> None:
    mark = len(mongo.log)

    await mongo.store.start()  # indexes already there: no error, nothing to roll up

    assert [c.name for c in mongo.sent_since(mark)].count("createIndexes") == 5


async def test_values_beyond_decimal128_are_refused(mongo: Harness) -> None:
    huge = Trade("binance", "BTCUSDT", "1", Decimal("12345678901234567.123456789012345678"), Decimal("1"), Side.BUY, 1)

    with pytest.raises(InvalidArgumentError) as raised:
        await mongo.store.insert_trades([huge])

    assert {v.field for v in raised.value.violations} == {"trades[0].price", "trades[0].quote"}


async def test_validated_columns_store_the_same_documents_as_trades(open_mongo: OpenHarness) -> None:
    # Issue 12: a TradeBatch (validated columns) becomes documents without Trade objects: the same documents,
    # the same duplicates (within the batch and already stored) and the same rollups as the Trades.
    rng = random.Random(40)
    trades = [
        Trade(
            rng.choice(("binance", "okx")),
            "BTCUSDT",
            str(index // 2 * 2 + 1 if index % 7 == 3 else index),  # some ids twice: first occurrence wins
            Decimal(f"{rng.randint(1, 9_999_999)}").scaleb(-rng.randint(0, 8)),
            Decimal(f"{rng.randint(1, 999_999)}").scaleb(-rng.randint(0, 8)),
            rng.choice((Side.BUY, Side.SELL)),
            T0_MS * 1000 + index * 7_777_777 + rng.randint(0, 999),  # sub-millisecond digits
        )
        for index in range(300)
    ]
    stored_before = trades[:40:3]
    found: list[tuple[list[Trade], list[dict[str, Any]], list[list[dict[str, Any]]]]] = []
    for as_columns in (False, True):
        async with open_mongo() as mongo:
            await mongo.store.insert_trades(stored_before)
            batch = TradeBatch(TradeColumns.of_trades(trades)) if as_columns else trades
            stored = await mongo.store.insert_trades(batch)
            if isinstance(batch, TradeBatch):
                assert batch._trades is None  # no Trade objects were built to store it
            new = list(stored)
            documents = [
                {k: v for k, v in d.items() if k != "_id"}
                for d in await mongo.database["trades"].find({}).to_list(None)
            ]
            key = ("exchange", "symbol", "trade_id")
            found.append((new, sorted(documents, key=lambda d: tuple(d[k] for k in key)), await snapshot(mongo)))
    assert found[0] == found[1]
    assert len(found[1][0]) == len(
        {(t.exchange, t.trade_id) for t in trades} - {(t.exchange, t.trade_id) for t in stored_before}
    )
