"""Collectors' trades reach live subscribers through a MongoDB change stream.

mongomock has no change streams, so the stream here is a test double with the shape of PyMongo's
AsyncChangeStream (async context manager and iterator, try_next, resume_token). On a real replica set
(`MONGODB_URI=... make test-mongo`) the same code runs against the server; see docs/mongo.md.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Decimal128
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, ServerSelectionTimeoutError

from tests.conftest import Running
from wadm_grpc.bootstrap import start_collector_feed
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.stores.mongo import live

PAUSE = {"pause": True}  # an idle getMore: the stream holds nothing more for now, the batch ends here


def idle(token: str) -> dict[str, Any]:
    """An idle getMore whose post-batch resume token moved on (only this service's own inserts flowed)."""
    return {"pause": True, "token": {"_data": token}}


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


class FakeClock:
    """The feed's clock and sleep: time passes only as the fake stream waits, and as the feed backs off."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeStream:
    """PyMongo's AsyncChangeStream as the feed uses it. `try_next` waits like a getMore: `spacing_seconds`
    for the next change to arrive, or the whole `max_await_time_ms` when the stream is idle (PAUSE)."""

    def __init__(self, events: list[Any], clock: FakeClock, max_await_time_ms: int, spacing_seconds: float) -> None:
        self._events = events
        self._clock = clock
        self._max_await_seconds = max_await_time_ms / 1000
        self._spacing = spacing_seconds
        self.resume_token: Any = None

    @property
    def alive(self) -> bool:
        return bool(self._events)

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def try_next(self) -> dict[str, Any] | None:
        if not self._events:
            return None
        event = self._events.pop(0)
        if isinstance(event, BaseException):
            raise event
        if "pause" in event:
            self._clock.now += self._max_await_seconds
            self.resume_token = event.get("token", self.resume_token)
            return None
        self._clock.now += self._spacing
        self.resume_token = {"_data": event["_id"]}
        return dict(event)


class FakeCommands:
    def __init__(self, streams: list[list[Any]], saved: Any = None, *, spacing_seconds: float = 0.0) -> None:
        self.streams = streams
        self.state: dict[str, Any] = {} if saved is None else {"resume_token": saved}
        self.watched: list[tuple[list[Any], Any]] = []
        self.max_awaits: list[int] = []
        self.saves: list[tuple[float, Any]] = []
        self.clock = FakeClock()
        self.spacing = spacing_seconds

    async def find_one(self, role: str, query: dict[str, Any]) -> dict[str, Any] | None:
        return dict(self.state) if self.state else None

    async def update_one(self, role: str, query: dict[str, Any], update: dict[str, Any]) -> None:
        self.state.update(update["$set"])
        self.saves.append((self.clock.now, update["$set"]["resume_token"]))

    async def watch_trades(self, pipeline: list[Any], *, resume_after: Any, max_await_time_ms: int) -> FakeStream:
        self.watched.append((pipeline, resume_after))
        self.max_awaits.append(max_await_time_ms)
        return FakeStream(self.streams.pop(0), self.clock, max_await_time_ms, self.spacing)


def timing_of(commands: FakeCommands) -> live.FeedTiming:
    return live.FeedTiming(clock=commands.clock, sleep=commands.clock.sleep)


async def collect(commands: FakeCommands) -> list[list[Trade]]:
    feed = live.collector_trades(commands, state_key="trades:change_stream", timing=timing_of(commands))  # type: ignore[arg-type]
    return [batch async for batch in feed]


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


async def test_a_steady_flow_of_collector_trades_is_delivered_within_the_batch_budget() -> None:
    # 100 trades/s for 3 s, then the stream idles: each getMore waits for the next insert.
    commands = FakeCommands([[change(n) for n in range(300)] + [PAUSE]], spacing_seconds=0.01)
    feed = live.collector_trades(commands, state_key="k", timing=timing_of(commands))  # type: ignore[arg-type]
    delivered = [(commands.clock.now, len(batch)) async for batch in feed]

    timing = timing_of(commands)
    assert commands.max_awaits == [timing.max_await_ms] and timing.max_await_ms <= 100
    assert sum(n for _, n in delivered) == 300
    # No trade waits in a batch longer than the budget (plus the getMore that was under way).
    assert all(n <= (timing.batch_budget_seconds + 0.01) / 0.01 + 1 for _, n in delivered)
    assert delivered[0][0] <= timing.batch_budget_seconds + 0.02


async def test_the_feed_survives_outages_with_backoff_and_resumes_from_its_token() -> None:
    outage = [
        [change(1), PAUSE, ServerSelectionTimeoutError("no primary")],
        [NetworkTimeout("getMore timed out")],
        [AutoReconnect("connection reset")],
        [change(2), PAUSE],
    ]
    commands = FakeCommands(outage)

    batches = await collect(commands)

    assert [[t.trade_id for t in b] for b in batches] == [["1"], ["2"]]
    assert [resume for _, resume in commands.watched] == [None] + [{"_data": "token-1"}] * 3
    first = timing_of(commands).first_backoff_seconds
    assert commands.clock.slept == [first, first * 2, first * 4]  # doubling while the outage lasts


async def test_the_backoff_is_capped_and_reset_by_a_delivered_batch() -> None:
    failures: list[list[Any]] = [[NetworkTimeout("down")] for _ in range(12)]
    commands = FakeCommands([*failures, [change(1), PAUSE, NetworkTimeout("down again")], [change(2)]])

    assert [[t.trade_id for t in b] for b in await collect(commands)] == [["1"], ["2"]]

    timing = timing_of(commands)
    assert max(commands.clock.slept) == timing.max_backoff_seconds
    assert commands.clock.slept[-1] == timing.first_backoff_seconds  # after change 1 was delivered


async def test_the_resume_token_is_saved_periodically_while_only_our_own_inserts_flow() -> None:
    timing = live.FeedTiming()
    idles = int(timing.save_token_seconds * 1000 / timing.max_await_ms) * 3
    commands = FakeCommands([[idle(f"own-{n}") for n in range(idles)]], saved={"_data": "start"})

    assert await collect(commands) == []

    assert len(commands.saves) >= 2  # the token kept up with the oplog, with nothing delivered
    assert commands.state["resume_token"]["_data"].startswith("own-")
    times = [at for at, _ in commands.saves]
    assert all(b - a >= timing.save_token_seconds for a, b in itertools.pairwise(times))


async def test_collector_ids_written_as_doubles_are_their_integers() -> None:
    commands = FakeCommands([[change(1, trade_id=123456789.0), change(2, trade_id="abc-7")]])

    [batch] = await collect(commands)

    assert [t.trade_id for t in batch] == ["123456789", "abc-7"]


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
