"""Query plans, proven on a real server (make test-mongo): every read and rollup query walks its intended
index (IXSCAN), pages walk it backward, and nothing sorts in memory (no blocking SORT stage).

mongomock has no planner, so on the emulator only the hints the store sends are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from bson import ObjectId

from tests.contract.test_mongo_documents import candle_query, double_documents
from tests.mongo_support import Harness, mongodb_store, mongomock_store
from wadm_grpc.domain.timeframe import MINUTE_US, Rollup, Timeframe
from wadm_grpc.ports import TradeQuery
from wadm_grpc.stores.mongo import pipelines
from wadm_grpc.stores.mongo.commands import BY_ROLLUP_KEY, BY_SYMBOL_TIME
from wadm_grpc.stores.mongo.documents import EPOCH

T0_MS = 1_700_000_000_000


def page_query(**fields: Any) -> TradeQuery:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "exchanges": (), "start_us": None, "end_us": None}
    return TradeQuery(**(base | {"cursor": None, "limit": 50} | fields))


async def test_reads_that_must_walk_one_index_name_it() -> None:
    async with mongomock_store() as mongo:
        await mongo.database["trades"].insert_many([dict(d) for d in double_documents(1, 30, T0_MS, 1000)])
        await mongo.store.refresh_rollups()
        mark = len(mongo.log)
        await mongo.store.candles(candle_query(Timeframe.M5))
        await mongo.store.trades(page_query())
        hints = [c.hint for c in mongo.sent_since(mark) if c.name == "aggregate"]
    assert hints == [None, BY_ROLLUP_KEY, BY_SYMBOL_TIME, BY_SYMBOL_TIME]  # the first counts exchanges


# -- the real server ----------------------------------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[Harness]:
    async with mongodb_store() as mongo:
        documents = double_documents(seed=2, count=3000, start_ms=T0_MS, spacing_ms=7_001)
        await mongo.database["trades"].insert_many([dict(d) for d in documents])
        await mongo.store.refresh_rollups()
        yield mongo


def _stages(plan: Any) -> Iterator[dict[str, Any]]:
    """Every plan stage in an explain() answer (classic and slot-based engines, pipelines and $unionWith)."""
    if isinstance(plan, dict):
        if "stage" in plan:
            yield plan
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


def _winning(explained: dict[str, Any]) -> list[dict[str, Any]]:
    """The winning plans' stages only (rejected plans may well sort)."""
    found = []
    for key in ("winningPlan", "queryPlan"):
        found += [s for plan in _find(explained, key) for s in _stages(plan)]
    return found


def _find(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            else:
                yield from _find(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _find(item, key)


async def explain(mongo: Harness, role: str, pipeline: list[Any], hint: str | None = None) -> list[dict[str, Any]]:
    names = mongo.store._commands.names
    command: dict[str, Any] = {"aggregate": getattr(names, role), "pipeline": pipeline, "cursor": {}}
    if hint is not None:
        command["hint"] = hint
    database = mongo.store._commands._database
    explained = await database.command({"explain": command, "verbosity": "queryPlanner"})
    return _winning(explained)


def assert_walks(stages: list[dict[str, Any]], index: str, *, backward: bool = False) -> None:
    scans = [s for s in stages if s["stage"] == "IXSCAN"]
    assert scans and all(s["indexName"] == index for s in scans), [s["stage"] for s in stages]
    assert not any(s["stage"] in ("SORT", "COLLSCAN") for s in stages), [s["stage"] for s in stages]
    if backward:
        assert all(s["direction"] == "backward" for s in scans)


def assert_indexed(stages: list[dict[str, Any]]) -> None:
    """Every branch of a trades $or walks one of the market-time indexes; nothing scans or sorts."""
    scans = [s for s in stages if s["stage"] == "IXSCAN"]
    assert scans and {s["indexName"] for s in scans} <= {BY_SYMBOL_TIME, "symbol_1_exchange_1_timestamp_1"}
    assert not any(s["stage"] in ("SORT", "COLLSCAN") for s in stages), [s["stage"] for s in stages]


@pytest.mark.parametrize("exchanges", [(), ("a",)], ids=["any-exchange", "one-exchange"])
async def test_pages_walk_the_symbol_time_index_backward(served: Harness, exchanges: tuple[str, ...]) -> None:
    args = ("BTCUSDT", list(exchanges), None, None, None, 100)
    assert_walks(
        await explain(served, "trades", pipelines.page_reach(*args), BY_SYMBOL_TIME), BY_SYMBOL_TIME, backward=True
    )
    page = pipelines.trade_page("BTCUSDT", list(exchanges), (T0_MS + 9_000_000) * 1000, None, None, 100)
    assert_walks(await explain(served, "trades", page[:1], BY_SYMBOL_TIME), BY_SYMBOL_TIME)


@pytest.mark.parametrize("newest_first", [True, False])
async def test_candles_walk_the_rollup_key_in_bucket_order(served: Harness, newest_first: bool) -> None:
    pipeline = pipelines.candles(
        Rollup.M1,
        symbol="BTCUSDT",
        exchanges=[],
        low_us=None,
        high_us=None,
        timeframe_us=5 * MINUTE_US,
        offset_us=0,
        limit=100,
        rows_per_candle=10,
        newest_first=newest_first,
    )
    assert_walks(await explain(served, "rollups", pipeline, BY_ROLLUP_KEY), BY_ROLLUP_KEY, backward=newest_first)


async def test_rollup_maintenance_and_window_stats_use_their_indexes(served: Harness) -> None:
    low = T0_MS * 1000
    ranges = [("BTCUSDT", "a", low, low + 10 * MINUTE_US), ("BTCUSDT", "b", low, low + 3 * MINUTE_US)]
    minute = await explain(served, "trades", pipelines.minute_rollups(ranges))
    assert_indexed(minute)
    tier = await explain(served, "rollups", pipelines.tier_rollups(Rollup.H1, Rollup.M1, ranges))
    assert_walks(tier, BY_ROLLUP_KEY)
    stats = pipelines.window_stats(
        symbols=["BTCUSDT"],
        exchanges=[],
        raw=[(low + 1, low + MINUTE_US)],
        rolled=[],
        rollups_collection=served.store._commands.names.rollups,
    )
    assert_indexed(await explain(served, "trades", stats))  # the edges: an $or of per-range branches
    union = [{"tier": "1m", "symbol": "BTCUSDT", "bucket": {"$gte": low, "$lt": low + 60 * MINUTE_US}}]
    assert_walks(await explain(served, "rollups", [{"$match": {"$or": union}}]), BY_ROLLUP_KEY)
    scan = await explain(served, "trades", pipelines.scan_new_trades(ObjectId.from_datetime(EPOCH), 1000))
    assert_walks(scan, "_id_")
