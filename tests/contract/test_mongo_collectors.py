"""Collectors' documents as they are written: any case of exchange, symbol and side, ids written as doubles,
one normalisation in every path (rollups, window stats, pages, the live feed), computed once per document.

Runs on mongomock (always) and on the real server at MONGODB_URI (make test-mongo)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tests.contract.test_mongo_documents import as_trade, candle_query, collector_document
from tests.mongo_support import HARNESSES, Harness, NumericDecimal128
from tests.reference import aggregate, exact
from wadm_grpc.domain.timeframe import MINUTE_US, Rollup, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import TradeQuery
from wadm_grpc.stores.mongo import live, pipelines

T0_MS = 1_700_000_040_000  # a minute start


@pytest.fixture(params=HARNESSES)
async def mongo(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with request.param() as harness:
        yield harness


def spelled(trade_id: Any, side: str, exchange: str, symbol: str, offset_ms: int) -> dict[str, Any]:
    document = collector_document(trade_id, 61800.5, 0.25, side, T0_MS + offset_ms, exchange=exchange)
    return document | {"symbol": symbol}


MIXED = [
    spelled(123456789.0, "Buy", "Bybit", "btcusdt", 0),  # a JavaScript collector: the id is a double
    spelled(123456790.0, "SELL", "BYBIT", "BTCUSDT", 1),
    spelled("abc", "buy", "bybit", "Btcusdt", 2),
]


def normalised(document: dict[str, Any]) -> Trade:
    return as_trade(
        document
        | {
            "exchange": document["exchange"].lower(),
            "symbol": document["symbol"].upper(),
            "side": document["side"].lower(),
            "trade_id": live.trade_id_of(document["trade_id"]),
        }
    )


async def test_collectors_spellings_and_double_ids_are_normalised_in_every_read(mongo: Harness) -> None:
    await mongo.database["trades"].insert_many([dict(d) for d in MIXED])
    await mongo.store.refresh_rollups()
    trades = [normalised(d) for d in MIXED]

    [(bucket, candle)] = await mongo.store.candles(candle_query(Timeframe.M1, exchanges=("bybit",)))
    assert bucket == T0_MS * 1000
    assert exact(candle) == exact(aggregate(trades))
    assert str(candle.buy_volume) == "0.50"  # "Buy" and "buy" are buys
    assert candle.first_trade_us == T0_MS * 1000

    stats = await mongo.store.window_stats(["BTCUSDT"], ("bybit",), T0_MS * 1000, T0_MS * 1000 + 30_000_000)
    assert exact(stats["BTCUSDT"].ohlcv) == exact(aggregate(trades))

    page = await mongo.store.trades(
        TradeQuery(symbol="BTCUSDT", exchanges=("bybit",), start_us=None, end_us=None, cursor=None, limit=10)
    )
    assert [(t.trade_id, t.exchange, t.side) for t in page] == [
        ("abc", "bybit", Side.BUY),
        ("123456790", "bybit", Side.SELL),
        ("123456789", "bybit", Side.BUY),
    ]
    [summary] = await mongo.store.symbols(())
    assert (summary.symbol, summary.exchanges, summary.trade_count) == ("BTCUSDT", ("bybit",), 3)


def test_the_live_feed_normalises_as_the_pipelines_do() -> None:
    assert [live.collector_trade(d) for d in MIXED] == [normalised(d) for d in MIXED]


def _count(pipeline: object, operator: str) -> int:
    return json.dumps(pipeline, default=str).count(f'"{operator}"')


def test_decimals_and_scales_are_computed_once_per_document_before_grouping() -> None:
    ranges = [("BTCUSDT", "bybit", T0_MS * 1000, T0_MS * 1000 + MINUTE_US)]
    stats = pipelines.window_stats(
        symbols=["BTCUSDT"], exchanges=[], raw=[(0, MINUTE_US)], rolled=[(Rollup.M1, 0, 1)], rollups_collection="r"
    )
    for pipeline in (pipelines.minute_rollups(ranges), stats):
        groups = [stage for stage in pipeline if "$group" in stage]
        assert _count(pipeline, "$toDecimal") == 2  # price and quantity, once each
        assert all(_count(group, "$toDecimal") == 0 and _count(group, "$trunc") == 0 for group in groups)
        assert _count(pipeline, "$trunc") == 2 * 18  # the two scales, once each
        assert _count(pipeline, "$toLong") == 1  # ids written as doubles become integers before text


def test_a_double_id_becomes_text_through_an_integer() -> None:
    # $toString of a double is %g on a server ("1.23457e+08"): the pipelines convert with $toLong first.
    key = json.dumps(pipelines.trade_page("BTCUSDT", [], None, None, None, 10), default=str)
    assert '{"$toString": {"$toLong": "$trade_id"}}' in key


@pytest.mark.parametrize("harness", HARNESSES[:1])
async def test_the_emulator_writes_doubles_as_a_server_does(harness: Any) -> None:
    async with harness() as mongo:
        await mongo.database["trades"].insert_many([{"x": 123456789.0, "symbol": "Z"}])
        rows = await mongo.database["trades"].aggregate(
            [{"$project": {"s": {"$toString": "$x"}, "t": {"$type": "$x"}}}]
        )
        [row] = await rows.to_list(None)
    assert (row["s"], row["t"]) == ("1.23457e+08", "double")


def test_markets_are_matched_in_the_spellings_collectors_use() -> None:
    assert pipelines.spellings("bybit") == ["BYBIT", "Bybit", "bybit"]
    assert pipelines.spellings("ETHUSDT") == ["ETHUSDT", "Ethusdt", "ethusdt"]


def test_the_emulator_compares_decimals_with_doubles_exactly() -> None:
    # The double 0.1 is 0.1000000000000000055511151231257827...: above the decimal 0.1, as a server compares.
    tenth = NumericDecimal128(Decimal("0.1"))
    assert tenth < 0.1 and tenth != 0.1 and not tenth >= 0.1
    assert NumericDecimal128(Decimal("0.5")) == 0.5
    assert str(tenth + 0.1) == "0.200000000000000"  # arithmetic converts the double to 15 digits first
