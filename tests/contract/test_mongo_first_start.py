"""First start on the collectors' existing collection: history the unique index refuses, said in one line
(reads still served, ingest refused); the whole-history catch-up in the background, with progress logged.

Runs on mongomock (always) and on the real server at MONGODB_URI (make test-mongo)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import ASCENDING, IndexModel

from tests.contract.test_mongo_documents import as_trade, candle_query, double_documents
from tests.mongo_support import DATABASES, OpenStore
from tests.reference import buckets, exact
from wadm_grpc.domain.errors import FailedPreconditionError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.domain.trade import Side, Trade

T0_MS = 1_700_000_000_000


@pytest.fixture(params=DATABASES)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, OpenStore]]:
    async with request.param() as (db, _, open_store):
        yield db, open_store


def candles_of(rows: list[tuple[int, Any]]) -> list[tuple[int, tuple[str, ...]]]:
    return [(bucket, exact(candle)) for bucket, candle in rows]


async def test_duplicates_in_the_history_are_named_in_one_line_and_reads_go_on(
    database: tuple[Any, OpenStore], caplog: pytest.LogCaptureFixture
) -> None:
    db, open_store = database
    documents = double_documents(seed=3, count=30, start_ms=T0_MS, spacing_ms=1_000)
    await db["trades"].insert_many([dict(d) for d in documents] + [dict(documents[4]), dict(documents[9])])

    with caplog.at_level(logging.ERROR, logger="wadm_grpc.stores.mongo"):
        store = await open_store()
        await store.caught_up()

    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    line = error.getMessage()
    assert "holds 2 (exchange, symbol, trade_id) keys with more than one document" in line
    assert f"{documents[4]['exchange']} BTCUSDT {documents[4]['trade_id']}" in line
    assert "delete the extra documents (keep one per key) and restart" in line
    assert error.exc_info is None and "\n" not in line  # one line, no traceback
    got = await store.candles(candle_query(Timeframe.M1))
    assert got  # reads are served from what could be rolled up
    with pytest.raises(FailedPreconditionError, match="cannot be built"):
        await store.insert_trades([Trade("a", "BTCUSDT", "new", 1, 1, Side.BUY, T0_MS * 1000)])  # type: ignore[arg-type]


async def test_a_same_named_index_that_is_not_unique_is_named_with_what_to_do(
    database: tuple[Any, OpenStore], caplog: pytest.LogCaptureFixture
) -> None:
    db, open_store = database
    keys = [("exchange", ASCENDING), ("symbol", ASCENDING), ("trade_id", ASCENDING)]
    await db["trades"].create_indexes([IndexModel(keys)])

    with caplog.at_level(logging.ERROR, logger="wadm_grpc.stores.mongo"):
        store = await open_store()

    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "index named exchange_1_symbol_1_trade_id_1 that is not unique" in line
    assert "dropIndex('exchange_1_symbol_1_trade_id_1')" in line
    with pytest.raises(FailedPreconditionError):
        await store.insert_trades([Trade("a", "BTCUSDT", "new", 1, 1, Side.BUY, T0_MS * 1000)])  # type: ignore[arg-type]


async def test_the_history_is_rolled_up_in_the_background_with_progress_logged(
    database: tuple[Any, OpenStore], caplog: pytest.LogCaptureFixture
) -> None:
    db, open_store = database
    documents = double_documents(seed=5, count=600, start_ms=T0_MS, spacing_ms=30_011)
    await db["trades"].insert_many([dict(d) for d in documents])

    with caplog.at_level(logging.INFO, logger="wadm_grpc.stores.mongo"):
        store = await open_store(scan_batch=100)
        assert not store.catch_up.done  # start() returned: the server can serve while the history rolls up
        during = await store.candles(candle_query(Timeframe.H1))  # answers from what is rolled up so far
        await store.caught_up()

    want = buckets([as_trade(d) for d in documents], Timeframe.H1.bucket_start)
    assert len(during) <= len(want)
    assert candles_of(await store.candles(candle_query(Timeframe.H1))) == candles_of(list(want.items()))
    assert store.catch_up.scanned_trades == 600
    progress = [r.getMessage() for r in caplog.records if "rollup catch-up:" in r.getMessage()]
    assert progress[-1] == "rollup catch-up: 600 trades rolled up so far" and len(progress) >= 6
    assert any("reads answer from the rollups written so far" in r.getMessage() for r in caplog.records)
    told = [r.getMessage() for r in caplog.records if r.getMessage().startswith("serving reads from the rollups")]
    assert told == ["serving reads from the rollups written so far: the catch-up has rolled up 0 trades yet"]
