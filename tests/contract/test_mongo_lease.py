"""One rollup writer across processes: the lease, dirty buckets for the leader, fencing by generation.

Two stores on one database stand for two processes (two workers, or two replicas); their clock is the test's,
so a lease expires when the test says. Runs on mongomock (always) and on the real server (make test-mongo).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.mongo_support import DATABASES, OpenStore
from tests.reference import aggregate, exact
from wadm_grpc.domain.timeframe import MINUTE_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import CandleQuery
from wadm_grpc.stores.mongo import MongoTradeStore

T0_US = 1_700_000_040_000_000  # a minute start
LEASE_SECONDS = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=DATABASES)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, OpenStore]]:
    async with request.param() as (db, _, open_store):
        yield db, open_store


def trade(number: int, minute: int = 0, side: Side = Side.BUY) -> Trade:
    price, quantity = Decimal(61800 + number) / 10, Decimal(number) / 1000
    return Trade("binance", "BTCUSDT", f"t{number}", price, quantity, side, T0_US + minute * MINUTE_US + number)


async def minute_candles(store: MongoTradeStore) -> dict[int, tuple[str, ...]]:
    query = CandleQuery("BTCUSDT", (), Timeframe.M1, None, None, 1000, True)
    return {bucket: exact(candle) for bucket, candle in await store.candles(query)}


def reference(trades: list[Trade]) -> dict[int, tuple[str, ...]]:
    minutes: dict[int, list[Trade]] = {}
    for t in trades:
        minutes.setdefault(t.time_us - t.time_us % MINUTE_US, []).append(t)
    return {bucket: exact(aggregate(group)) for bucket, group in minutes.items()}


async def two_stores(open_store: OpenStore, clock: Clock) -> tuple[MongoTradeStore, MongoTradeStore]:
    options = {"clock": clock, "lease_seconds": LEASE_SECONDS}
    leader = await open_store(lease_owner="a", **options)
    follower = await open_store(lease_owner="b", **options)
    return leader, follower


async def test_one_store_leads_the_other_records_dirty_buckets(database: tuple[Any, OpenStore]) -> None:
    db, open_store = database
    clock = Clock()
    leader, follower = await two_stores(open_store, clock)
    assert (leader.lease_generation, follower.lease_generation) == (1, None)

    await follower.insert_trades([trade(1), trade(2, minute=3)])

    assert len(await db["trade_rollup_dirty"].find({}).to_list(None)) == 2
    assert await follower.refresh_rollups() == type(follower.last_refresh)()  # a follower recomputes nothing
    report = await leader.refresh_rollups()
    assert report.dirty_buckets == 2
    assert await minute_candles(follower) == reference([trade(1), trade(2, minute=3)])
    assert await db["trade_rollup_dirty"].find({}).to_list(None) == []


async def test_a_paused_leaders_late_write_cannot_overwrite_the_new_leaders(
    database: tuple[Any, OpenStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, open_store = database
    clock = Clock()
    stale, other = await two_stores(open_store, clock)
    paused, resume = asyncio.Event(), asyncio.Event()
    replace: Callable[..., Any] = stale._commands.replace

    async def pause_before_writing(role: str, replacements: Any) -> int:
        if role == "rollups" and not resume.is_set():
            paused.set()
            await resume.wait()  # the recomputation read its trades, and stalls before writing
        return int(await replace(role, replacements))

    monkeypatch.setattr(stale._commands, "replace", pause_before_writing)
    ingest = asyncio.create_task(stale.insert_trades([trade(1)]))
    async with asyncio.timeout(30):
        await paused.wait()

    await other.insert_trades([trade(2), trade(3, side=Side.SELL)])  # same minute, while the leader stalls
    clock.advance(LEASE_SECONDS + 1)  # the stalled leader could not renew
    await other.refresh_rollups()
    assert other.lease_generation == 2
    resume.set()
    async with asyncio.timeout(30):
        await ingest

    want = reference([trade(1), trade(2), trade(3, side=Side.SELL)])
    assert await minute_candles(other) == want  # generation 1's late write was refused
    assert stale.lease_generation is None
    await other.refresh_rollups()
    assert await minute_candles(stale) == want


async def test_when_the_leader_dies_the_follower_takes_over_and_recomputes_every_dirty_bucket(
    database: tuple[Any, OpenStore],
) -> None:
    db, open_store = database
    clock = Clock()
    leader, follower = await two_stores(open_store, clock)
    trades = [trade(n, minute=n % 7) for n in range(1, 40)]
    await follower.insert_trades(trades)
    leader._lease.release = _never  # type: ignore[method-assign]  # killed: it never gives the lease up

    clock.advance(LEASE_SECONDS / 2)
    assert await follower.refresh_rollups() == type(follower.last_refresh)()  # the lease is not expired yet
    clock.advance(LEASE_SECONDS / 2 + 1)
    report = await follower.refresh_rollups()

    assert follower.lease_generation == 2
    assert report.dirty_buckets == 7
    assert await minute_candles(follower) == reference(trades)
    assert await db["trade_rollup_dirty"].find({}).to_list(None) == []
    lease = await db["trade_rollup_state"].find(follower._lease.key).to_list(None)
    assert [(d["owner"], d["generation"]) for d in lease] == [("b", 2)]


async def test_a_lost_race_for_the_lease_is_visible_and_a_closed_leader_hands_over(
    database: tuple[Any, OpenStore],
) -> None:
    _, open_store = database
    clock = Clock()
    leader, follower = await two_stores(open_store, clock)
    assert await follower._lease.hold() is None  # the filter matched nothing: E11000 on the upsert

    await leader.close()
    assert await follower._lease.hold() == 2  # no need to wait for the expiry


async def _never() -> None:
    return None
