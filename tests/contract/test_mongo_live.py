"""Collectors' trades reach live subscribers through a MongoDB change stream.

mongomock has no change streams, so the stream here is a test double with the shape of PyMongo's
AsyncChangeStream (async context manager and iterator, try_next, resume_token). On a real replica set
(`MONGODB_URI=... make test-mongo`) the same code runs against the server; see docs/mongo.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Decimal128
from pymongo.errors import OperationFailure

from tests.conftest import Running
from wadm_grpc.bootstrap import start_collector_feed
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.stores.mongo import live

PAUSE = {"pause": True}  # the stream holds nothing more for now: the batch ends here


def change(number: int, **document: Any) -> dict[str, Any]:
    fields = {
        "exchange": "Bybit",
        "symbol": "ethusdt",
        "trade_id": number,
        "price": 2683.8,
        "quantity": Decimal128("0.0345"),
        "side": "sell",
        "timestamp": datetime(2024, 8, 8, 23, 54, 15, 611000, tzinfo=UTC),
    }
    return {"_id": f"token-{number}", "fullDocument": fields | document}


class FakeStream:
    def __init__(self, events: list[dict[str, Any] | BaseException]) -> None:
        self._events = events
        self.resume_token: Any = None

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while self._events and self._events[0] is PAUSE:
            self._events.pop(0)
        if not self._events:
            raise StopAsyncIteration
        event = self._events.pop(0)
        if isinstance(event, BaseException):
            raise event
        self.resume_token = {"_data": event["_id"]}
        return event

    async def try_next(self) -> dict[str, Any] | None:
        if not self._events or self._events[0] is PAUSE or isinstance(self._events[0], BaseException):
            return None
        return await self.__anext__()


class FakeCommands:
    def __init__(self, streams: list[list[dict[str, Any] | BaseException]], saved: Any = None) -> None:
        self.streams = streams
        self.state: dict[str, Any] = {} if saved is None else {"resume_token": saved}
        self.watched: list[tuple[list[Any], Any]] = []

    async def find_one(self, role: str, query: dict[str, Any]) -> dict[str, Any] | None:
        return dict(self.state) if self.state else None

    async def update_one(self, role: str, query: dict[str, Any], update: dict[str, Any]) -> None:
        self.state.update(update["$set"])

    async def watch_trades(self, pipeline: list[Any], *, resume_after: Any) -> FakeStream:
        self.watched.append((pipeline, resume_after))
        return FakeStream(self.streams.pop(0))


async def collect(commands: FakeCommands) -> list[list[Trade]]:
    return [batch async for batch in live.collector_trades(commands, state_key="trades:change_stream")]  # type: ignore[arg-type]


async def test_collector_inserts_arrive_in_batches_and_the_resume_token_is_kept() -> None:
    commands = FakeCommands([[change(1), change(2), PAUSE, change(3, price=Decimal128("2683.80"))]], saved="old")

    batches = await collect(commands)

    assert [[t.trade_id for t in batch] for batch in batches] == [["1", "2"], ["3"]]
    first = batches[0][0]
    assert (first.exchange, first.symbol, str(first.price), str(first.quantity)) == (
        "bybit",
        "ETHUSDT",
        "2683.8",
        "0.0345",
    )
    assert (first.side, first.time_us) == (Side.SELL, 1_723_161_255_611_000)
    assert str(batches[1][0].price) == "2683.80"
    assert commands.watched == [(live.COLLECTOR_INSERTS, "old")]  # resumed from the saved position
    assert live.COLLECTOR_INSERTS[0]["$match"]["fullDocument.time_us"] == {"$exists": False}  # not our own
    assert commands.state["resume_token"] == {"_data": "token-3"}


async def test_without_change_streams_the_feed_says_so_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    refused = OperationFailure("The $changeStream stage is only supported on replica sets", code=40573)
    commands = FakeCommands([[refused]])

    with caplog.at_level(logging.WARNING):
        assert await collect(commands) == []

    assert "change streams are unavailable" in caplog.text


async def test_a_resume_point_lost_from_the_oplog_restarts_from_now() -> None:
    lost = OperationFailure("resume point no longer in the oplog", code=live.CHANGE_STREAM_HISTORY_LOST)
    commands = FakeCommands([[lost], [change(7)]], saved="ancient")

    batches = await collect(commands)

    assert [[t.trade_id for t in b] for b in batches] == [["7"]]
    assert [resume for _, resume in commands.watched] == ["ancient", None]


async def test_the_feed_reaches_stream_subscribers(served: Running) -> None:
    arrived = [Trade("bybit", "ETHUSDT", "c-1", live.decimal_of(2683.8), live.decimal_of(0.5), Side.BUY, 1)]

    async def collector_trades() -> AsyncIterator[list[Trade]]:
        yield arrived

    stream = served.client.market.StreamTrades(md.StreamTradesRequest(symbols=["ETHUSDT"]))
    await served.bus.wait_for_subscribers(1)
    served.app.store.collector_trades = collector_trades  # type: ignore[attr-defined]

    assert start_collector_feed(served.app)
    async with asyncio.timeout(30):
        event = await stream.read()

    assert [(t.trade_id, t.price) for t in event.trades.trades] == [("c-1", "2683.8")]
    stream.cancel()
