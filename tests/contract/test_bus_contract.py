"""The TradeBus contract: the in-process bus and the Redis bus pass the same suite.

Plus, Redis only: two buses on one Redis (as two server processes) deliver each trade exactly once to the
subscribers of both, in order, with exact decimals; and the reader resumes after Redis restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import pytest

from tests.support import make_trades
from wadm_grpc.bus.redis import DEFAULT_STREAM_KEY, RedisTradeBus, encode_trades
from wadm_grpc.domain.errors import ResourceExhaustedError, UnavailableError
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import Subscription, TradeBus
from wadm_grpc.redis_connection import redis_client

if TYPE_CHECKING:
    from tests.redis_support import RedisServer


T0 = 1_700_000_000_000_000
BUFFER_TRADES = 100
DEADLINE_SECONDS = 10.0
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


class CountingBus(TradeBus, Protocol):
    @property
    def subscriber_count(self) -> int: ...


def redis_bus(server: RedisServer, **options: float) -> RedisTradeBus:
    """A Redis bus as a server process would have it (fast reconnects, to keep the restart test short)."""
    settings: dict[str, float] = {"buffer_trades": BUFFER_TRADES, "retry_seconds": 0.02} | options
    return RedisTradeBus(server.url, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisTradeBus, RedisTradeBus]]:
    """Two Redis buses on one Redis, as two server processes (subscribers buffer BUFFER_TRADES)."""
    a, b = redis_bus(redis_server), redis_bus(redis_server)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def marker(n: int = 0, symbol: str = "BTCUSDT", exchange: str = "binance") -> Trade:
    """A trade published last: once it arrives, everything published before it has too."""
    return Trade(exchange, symbol, f"marker-{n}", Decimal("1"), Decimal("1"), Side.BUY, T0 + 10**12 + n)


async def receive_until(subscription: Subscription, last: Trade) -> list[Trade]:
    """Everything `subscription` receives up to and including `last` (fails after DEADLINE_SECONDS)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    received: list[Trade] = []
    while last not in received:
        remaining = deadline - loop.time()
        assert remaining > 0, f"{last.trade_id} not received; got {len(received)} trades"
        received += await subscription.get(remaining) or []
    return received


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` with a bounded deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_each_symbol_arrives_in_ingest_order(bus: CountingBus) -> None:
    trades = make_trades(seed=3, count=90, start_us=T0, spacing_us=1000, symbols=SYMBOLS)
    subscriptions = {symbol: bus.subscribe(frozenset({symbol}), frozenset()) for symbol in SYMBOLS}

    for start in range(0, len(trades), 7):
        await bus.publish(trades[start : start + 7])
    for symbol in SYMBOLS:
        await bus.publish([marker(symbol=symbol)])

    for symbol, subscription in subscriptions.items():
        expected = [t for t in trades if t.symbol == symbol] + [marker(symbol=symbol)]
        assert await receive_until(subscription, marker(symbol=symbol)) == expected


async def test_subscribers_get_only_their_symbols_and_exchanges(bus: CountingBus) -> None:
    exchanges = ("binance", "bybit")
    trades = make_trades(seed=4, count=60, start_us=T0, spacing_us=1000, symbols=SYMBOLS, exchanges=exchanges)
    btc_on_bybit = bus.subscribe(frozenset({"BTCUSDT"}), frozenset({"bybit"}))
    eth_anywhere = bus.subscribe(frozenset({"ETHUSDT", "DOGEUSDT"}), frozenset())

    await bus.publish(trades)
    await bus.publish([marker(1, "BTCUSDT", "bybit"), marker(2, "ETHUSDT", "kraken")])

    assert await receive_until(btc_on_bybit, marker(1, "BTCUSDT", "bybit")) == [
        t for t in trades if t.symbol == "BTCUSDT" and t.exchange == "bybit"
    ] + [marker(1, "BTCUSDT", "bybit")]
    assert await receive_until(eth_anywhere, marker(2, "ETHUSDT", "kraken")) == [
        t for t in trades if t.symbol == "ETHUSDT"
    ] + [marker(2, "ETHUSDT", "kraken")]


async def test_a_slow_subscriber_is_cut_off_without_affecting_others(bus: CountingBus) -> None:
    trades = make_trades(seed=5, count=3 * BUFFER_TRADES, start_us=T0, spacing_us=1000)
    slow = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    fast = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    received: list[Trade] = []

    for start in range(0, len(trades), 10):
        await bus.publish(trades[start : start + 10])
        received += await fast.get(0) or []
    await bus.publish([marker()])

    with pytest.raises(ResourceExhaustedError) as cut:
        await slow.get(0)
    assert cut.value.retry_after_seconds > 0
    assert received + await receive_until(fast, marker()) == [*trades, marker()]
    assert bus.subscriber_count == 1


async def test_batches_announced_back_to_back_never_cut_off_a_subscriber_that_keeps_up(bus: CountingBus) -> None:
    # Two ingest calls of one group commit are announced before any stream task runs: 3/4 of a buffer each.
    first, second = (make_trades(seed=s, count=3 * BUFFER_TRADES // 4, start_us=T0, spacing_us=1000) for s in (6, 7))
    second = [dataclasses.replace(t, trade_id=f"b{t.trade_id}") for t in second]
    subscription = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())

    await bus.publish(first)
    await bus.publish(second)

    assert await subscription.get(0) == [*first, *second]
    await bus.publish([marker()])  # it took everything: still subscribed
    assert await receive_until(subscription, marker()) == [marker()]


async def test_close_ends_every_subscription_as_unavailable(bus: CountingBus) -> None:
    subscriptions = [bus.subscribe(frozenset({symbol}), frozenset()) for symbol in SYMBOLS]
    assert bus.subscriber_count == len(SYMBOLS)

    await bus.close()

    for subscription in subscriptions:
        with pytest.raises(UnavailableError):
            await subscription.get(1)
    assert bus.subscriber_count == 0
    with pytest.raises(UnavailableError):
        bus.subscribe(frozenset({"BTCUSDT"}), frozenset())


async def test_the_bus_ending_a_subscription_tells_its_consumer_at_once(bus: CountingBus) -> None:
    # A stream blocked in a write to its client learns through on_end, not by reading (services/streaming.py).
    ended: list[str] = []
    slow = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    slow.on_end(lambda: ended.append("slow"))
    other = bus.subscribe(frozenset({"ETHUSDT"}), frozenset())
    other.on_end(lambda: ended.append("other"))
    leaving = bus.subscribe(frozenset({"ETHUSDT"}), frozenset())
    leaving.on_end(lambda: ended.append("leaving"))

    leaving.close()  # the consumer's own close is no news to it
    for start in range(0, 3 * BUFFER_TRADES, BUFFER_TRADES):
        trades = make_trades(seed=8, count=BUFFER_TRADES, start_us=T0, spacing_us=1000)
        await bus.publish([dataclasses.replace(t, trade_id=f"{start}-{t.trade_id}") for t in trades])
    assert ended == ["slow"]  # cut off, the moment its buffer overflowed

    await bus.close()
    assert ended == ["slow", "other"]


async def test_a_closed_subscription_receives_nothing_more(bus: CountingBus) -> None:
    leaving = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    staying = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())

    leaving.close()
    leaving.close()
    await bus.publish([marker()])

    assert await receive_until(staying, marker()) == [marker()]
    assert await leaving.get(0) is None
    assert bus.subscriber_count == 1


async def test_a_trade_published_in_one_process_reaches_both_exactly_once(
    pair: tuple[RedisTradeBus, RedisTradeBus],
) -> None:
    a, b = pair
    on_a = a.subscribe(frozenset({"BTCUSDT"}), frozenset())
    on_b = b.subscribe(frozenset({"BTCUSDT"}), frozenset())
    trades = make_trades(seed=6, count=60, start_us=T0, spacing_us=1000)

    await a.publish(trades[:30])
    await a.publish(trades[30:])
    await a.publish([marker(1)])
    assert await receive_until(on_b, marker(1)) == [*trades, marker(1)]
    # Once B's own marker comes back to A through Redis, A's reader has passed A's entries too.
    await b.publish([marker(2)])

    assert await receive_until(on_a, marker(2)) == [*trades, marker(1), marker(2)]
    assert await receive_until(on_b, marker(2)) == [marker(2)]
    await until(lambda: (a.stats().published_trades, a.stats().received_trades) == (61, 1))
    await until(lambda: (b.stats().published_trades, b.stats().received_trades) == (1, 61))


async def test_a_batch_larger_than_one_stream_entry_arrives_whole_and_in_order(redis_server: RedisServer) -> None:
    a, b = redis_bus(redis_server), redis_bus(redis_server, buffer_trades=10_000)
    await a.start()
    await b.start()
    try:
        on_b = b.subscribe(frozenset({"BTCUSDT", "ETHUSDT"}), frozenset())
        trades = make_trades(seed=11, count=2_500, start_us=T0, spacing_us=1, symbols=("BTCUSDT", "ETHUSDT"))

        await a.publish(trades)
        await a.publish([marker()])

        assert await receive_until(on_b, marker()) == [*trades, marker()]
    finally:
        await a.close()
        await b.close()


async def test_decimals_cross_processes_digit_for_digit(pair: tuple[RedisTradeBus, RedisTradeBus]) -> None:
    a, b = pair
    on_b = b.subscribe(frozenset({"XBTUSD"}), frozenset())
    odd = [
        Trade("kraken", "XBTUSD", "a-1", Decimal("61800.30"), Decimal("0.006"), Side.BUY, T0 + 1),
        Trade("kraken", "XBTUSD", "a-2", Decimal("0.000000010000"), Decimal("1000000.000000"), Side.SELL, T0 + 2),
        Trade("kraken", "XBTUSD", "a-3", Decimal("12345678901234567890.1"), Decimal("1"), Side.BUY, T0 + 3),
    ]

    await a.publish(odd)
    received = await receive_until(on_b, odd[-1])

    assert [(str(t.price), str(t.quantity), t) for t in received] == [(str(t.price), str(t.quantity), t) for t in odd]


async def test_a_slow_subscriber_of_another_process_is_cut_off_alone(
    pair: tuple[RedisTradeBus, RedisTradeBus],
) -> None:
    a, b = pair
    slow = b.subscribe(frozenset({"BTCUSDT"}), frozenset())
    fast = b.subscribe(frozenset({"BTCUSDT"}), frozenset())
    trades = make_trades(seed=7, count=2 * BUFFER_TRADES, start_us=T0, spacing_us=1000)
    received: list[Trade] = []

    for start in range(0, len(trades), 10):
        await a.publish(trades[start : start + 10])
        received += await receive_until(fast, trades[start + 9])

    assert received == trades
    with pytest.raises(ResourceExhaustedError):
        await slow.get(0)
    assert b.subscriber_count == 1


async def test_an_entry_written_twice_is_delivered_once_and_a_malformed_one_is_skipped(
    redis_server: RedisServer, pair: tuple[RedisTradeBus, RedisTradeBus]
) -> None:
    _, b = pair
    on_b = b.subscribe(frozenset({"BTCUSDT"}), frozenset())
    trades = make_trades(seed=12, count=5, start_us=T0, spacing_us=1)
    raw = redis_client(redis_server.url)
    try:
        # A writer re-sends its unacknowledged entries after a failed pipeline: same origin, same sequence.
        for fields in (
            {"o": "writer-x", "n": 1, "t": encode_trades(trades[:3])},
            {"o": "writer-x", "n": 1, "t": encode_trades(trades[:3])},
            {"o": "writer-x", "n": 2, "t": b"not json"},
            {"o": "writer-x", "n": 3, "t": encode_trades([*trades[3:], marker()])},
        ):
            await raw.xadd(DEFAULT_STREAM_KEY, fields)  # type: ignore[arg-type]
    finally:
        await raw.aclose()

    assert await receive_until(on_b, marker()) == [*trades, marker()]


async def test_publishing_survives_a_redis_restart_and_the_reader_resumes(
    redis_server: RedisServer, pair: tuple[RedisTradeBus, RedisTradeBus]
) -> None:
    a, b = pair
    on_a = a.subscribe(frozenset({"BTCUSDT"}), frozenset())
    on_b = b.subscribe(frozenset({"BTCUSDT"}), frozenset())
    before, during, after = (make_trades(seed=s, count=20, start_us=T0 + s * 10**9, spacing_us=1) for s in (8, 9, 10))
    await a.publish([*before, marker(1)])
    assert await receive_until(on_b, marker(1)) == [*before, marker(1)]

    await asyncio.to_thread(redis_server.kill)
    await a.publish([*during, marker(2)])  # ingest goes on: no error, local subscribers served at once
    assert await on_a.get(0) == [*before, marker(1), *during, marker(2)]
    await until(lambda: a.stats().publish_errors > 0 and b.stats().read_errors > 0)
    await asyncio.to_thread(redis_server.restart)
    await a.publish([*after, marker(3)])

    assert await receive_until(on_b, marker(3)) == [*during, marker(2), *after, marker(3)]
    assert await receive_until(on_a, marker(3)) == [*after, marker(3)]
    await until(lambda: a.stats().pending_trades == 0)
    assert a.stats().dropped_trades == 0


async def test_an_outage_longer_than_the_outbox_drops_the_oldest_and_counts_them(redis_server: RedisServer) -> None:
    bus = redis_bus(redis_server, outbox_trades=25)
    await bus.start()
    try:
        await asyncio.to_thread(redis_server.kill)
        for start in range(0, 40, 10):
            await bus.publish(make_trades(seed=start, count=10, start_us=T0 + start, spacing_us=1))

        assert (bus.stats().pending_trades, bus.stats().dropped_trades) == (20, 20)
    finally:
        await bus.close(flush_timeout_seconds=0)


async def test_a_changed_subscription_keeps_its_remaining_symbols_exactly(bus: CountingBus) -> None:
    trades = make_trades(seed=9, count=120, start_us=T0, spacing_us=1000, symbols=SYMBOLS)
    subscription = bus.subscribe(frozenset({"BTCUSDT", "ETHUSDT"}), frozenset())
    await bus.publish(trades[:40])
    await bus.publish([marker(1)])
    assert await receive_until(subscription, marker(1)) == [t for t in trades[:40] if t.symbol != "SOLUSDT"] + [
        marker(1)
    ]

    await bus.publish(trades[40:80])  # may still be on its way (Redis) when the change comes
    subscription.change(frozenset({"BTCUSDT", "SOLUSDT"}), frozenset())
    await bus.publish(trades[80:])
    await bus.publish([marker(2)])
    after = await receive_until(subscription, marker(2))

    assert [t for t in after if t.symbol == "BTCUSDT"] == [t for t in trades[40:] if t.symbol == "BTCUSDT"] + [
        marker(2)
    ]
    assert not [t for t in after if t.symbol == "ETHUSDT"]  # buffered ones dropped too
    sol = [t for t in after if t.symbol == "SOLUSDT"]
    sol_after_change = [t for t in trades[80:] if t.symbol == "SOLUSDT"]
    assert sol[len(sol) - len(sol_after_change) :] == sol_after_change
    subscription.close()
