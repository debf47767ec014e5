"""Resume, for both buses: a subscription opened at a position replays exactly what came after it, then
goes on live; past retention (or another history) it is OUT_OF_RANGE with where data is available from."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.contract.test_bus_contract import BUFFER_TRADES, T0, marker, receive_until, redis_bus
from tests.support import make_trades
from wadm_grpc.bus.memory import RESUME_EXPIRED, InProcessTradeBus
from wadm_grpc.bus.redis import DEFAULT_STREAM_KEY, RedisTradeBus
from wadm_grpc.domain.errors import InvalidArgumentError, OutOfRangeError, UnavailableError
from wadm_grpc.domain.stream_position import StreamPosition
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns
from wadm_grpc.redis_connection import redis_client
from wadm_grpc.services.resume_tokens import ResumeTokens

if TYPE_CHECKING:
    from tests.redis_support import RedisServer

BTC = frozenset({"BTCUSDT"})
DEADLINE_SECONDS = 10.0

Bus = InProcessTradeBus | RedisTradeBus


def btc(seed: int, count: int = 10) -> list[Trade]:
    return list(make_trades(seed=seed, count=count * 3, start_us=T0 + seed * 10**9, spacing_us=1))[:count]


async def position_after(bus: Bus, trades: list[Trade]) -> StreamPosition:
    """Subscribe, receive `trades` and a marker, and return the position there (the subscription closed)."""
    first = bus.subscribe(BTC, frozenset())
    await bus.publish([*trades, marker(100)])
    await receive_until(first, marker(100))
    position = first.position()
    first.close()
    return position


async def test_a_resumed_subscription_gets_exactly_what_it_missed_then_live(bus: Bus) -> None:
    position = await position_after(bus, btc(1))
    missed = btc(2)
    await bus.publish(missed)  # nobody listens
    again = bus.subscribe(BTC, frozenset())
    await bus.resume(again, position)
    live = btc(3)
    await bus.publish([*live, marker(1)])

    assert [t.trade_id for t in await receive_until(again, marker(1))] == [
        t.trade_id for t in [*missed, *live, marker(1)] if t.symbol == "BTCUSDT"
    ]


async def test_an_idle_position_resumes_at_the_bus_position(bus: Bus) -> None:
    position = await position_after(bus, btc(1))
    idle = bus.subscribe(frozenset({"XRPUSDT"}), frozenset())
    await bus.publish(btc(2))  # not for the idle subscriber
    if isinstance(bus, RedisTradeBus):
        await bus._flushed(bus._local.mark_seq())
    assert await idle.get(0) is None
    later = idle.idle_position()
    assert later != position
    idle.close()
    again = bus.subscribe(BTC, frozenset())
    await bus.resume(again, later)
    await bus.publish([marker(2)])
    assert await receive_until(again, marker(2)) == [marker(2)]  # btc(2) came before the idle position


async def test_resume_while_the_outbox_still_holds_the_missed_trades(redis_server: RedisServer) -> None:
    bus = redis_bus(redis_server)
    await bus.start()
    try:
        position = await position_after(bus, btc(1))
        missed = btc(2)
        await bus.publish(missed)
        assert bus.stats().pending_trades > 0  # not in Redis yet: the resume must wait for them
        again = bus.subscribe(BTC, frozenset())
        await bus.resume(again, position)
        await bus.publish([marker(3)])
        got = await receive_until(again, marker(3))
        assert got == [*[t for t in missed if t.symbol == "BTCUSDT"], marker(3)]
    finally:
        await bus.close()


async def test_a_position_of_one_process_resumes_on_another(redis_server: RedisServer) -> None:
    a, b = redis_bus(redis_server), redis_bus(redis_server)
    await a.start()
    await b.start()
    try:
        on_a = a.subscribe(BTC, frozenset())
        seen = btc(1)
        await b.publish([*seen, marker(1)])
        await a.publish([*btc(4), marker(4)])  # a's own chunks too: not yet in Redis when the position is taken
        received = await receive_until(on_a, marker(4))
        if marker(1) not in received:  # b's chunk comes through Redis: take the position after both
            received += await receive_until(on_a, marker(1))
        position = on_a.position()
        on_a.close()
        missed = [*btc(2), marker(2)]
        await a.publish(missed)
        await b.publish([*btc(3), marker(3)])
        await a.close()  # a goes away; the client resumes on b

        on_b = b.subscribe(BTC, frozenset())
        await b.resume(on_b, position)
        got = await receive_until(on_b, marker(3))
        from_a = [t for t in missed if t.symbol == "BTCUSDT"]
        from_b = [t for t in [*btc(3), marker(3)] if t.symbol == "BTCUSDT"]
        # Each publisher's trades in its order (the two interleave as they reached Redis), once each.
        assert [t for t in got if t in from_a] == from_a
        assert [t for t in got if t in from_b] == from_b
        assert len(got) == len(from_a) + len(from_b)
        assert not set(got) & set(received)
    finally:
        await a.close()
        await b.close()


async def test_past_the_in_process_log_is_out_of_range() -> None:
    bus = InProcessTradeBus(buffer_trades=BUFFER_TRADES, retention_trades=5)
    position = await position_after(bus, btc(1))
    for n in range(10):
        await bus.publish([marker(n)])  # ten chunks: the log keeps the last five trades
    again = bus.subscribe(BTC, frozenset())
    with pytest.raises(OutOfRangeError) as caught:
        await bus.resume(again, position)
    assert caught.value.reason == RESUME_EXPIRED
    assert caught.value.metadata["available_from"].endswith("Z")
    assert bus.subscriber_count == 0


async def test_a_position_of_another_history_is_out_of_range(bus: Bus) -> None:
    await position_after(bus, btc(1))
    again = bus.subscribe(BTC, frozenset())
    with pytest.raises(OutOfRangeError):
        await bus.resume(again, StreamPosition("another-process", (0, 0), (("another-process", 3),)))


async def test_past_the_redis_retention_is_out_of_range(redis_server: RedisServer) -> None:
    bus = redis_bus(redis_server, retention_seconds=0.05)
    await bus.start()
    raw = redis_client(redis_server.url)
    try:
        position = await position_after(bus, btc(1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        n = 0
        while True:  # publish until Redis trimmed the entries after the position
            n += 1
            await bus.publish([marker(n)])
            await bus._flushed(bus._local.mark_seq())
            if await raw.xlen(DEFAULT_STREAM_KEY) < n + 1:  # 1 + n entries written: some were trimmed
                break
            assert loop.time() < deadline, "nothing was trimmed"
            await asyncio.sleep(0.02)  # time must pass for a time-based retention
        again = bus.subscribe(BTC, frozenset())
        with pytest.raises(OutOfRangeError) as caught:
            await bus.resume(again, position)
        assert caught.value.reason == RESUME_EXPIRED
        assert "available_from" in caught.value.metadata
    finally:
        await raw.aclose()
        await bus.close()


def test_a_forged_or_edited_token_is_invalid_argument() -> None:
    tokens = ResumeTokens(b"key")
    token = tokens.issue(StreamPosition("e", (1, 2), (("o", 3),)))
    assert tokens.open(token) == StreamPosition("e", (1, 2), (("o", 3),))
    for bad in ("", "x", token[:-2], token.replace(".", "x.", 1), ResumeTokens(b"other").issue(tokens.open(token))):
        with pytest.raises(InvalidArgumentError) as caught:
            tokens.open(bad)
        assert [v.field for v in caught.value.violations] == ["resume_token"]


async def test_a_big_batch_is_chunked_and_a_position_between_chunks_resumes_exactly(bus: Bus) -> None:
    many = [t for t in make_trades(seed=5, count=2_500, start_us=T0, spacing_us=1) if t.symbol == "BTCUSDT"]
    big = [*many, *many, *many][:2_500]  # only BTCUSDT: ids repeat, which the bus does not mind
    first = bus.subscribe(BTC, frozenset())
    await bus.publish(TradeBatch(TradeColumns.of_trades(big)))  # as ingest hands it over: columns
    part = await first.get(1, 1_000)
    assert part == big[:1_000]  # one chunk per message
    position = first.position()
    first.close()

    again = bus.subscribe(BTC, frozenset())
    await bus.resume(again, position)
    await bus.publish([marker(7)])
    assert await receive_until(again, marker(7)) == [*big[1_000:], marker(7)]


async def test_resume_without_redis_is_unavailable(redis_server: RedisServer) -> None:
    bus = redis_bus(redis_server)
    await bus.start()
    try:
        position = await position_after(bus, btc(1))
        await asyncio.to_thread(redis_server.kill)
        again = bus.subscribe(BTC, frozenset())
        with pytest.raises(UnavailableError) as caught:
            await bus.resume(again, position)
        assert caught.value.retry_after_seconds > 0
        assert bus.subscriber_count == 0
    finally:
        await bus.close()
