"""MemorySubscription.get's idle timeout: one timer per subscription, re-armed lazily, and still each call's
own timeout (never early, never late by a previous call's longer one)."""

from __future__ import annotations

import asyncio

from tests.support import make_trades
from wadm_grpc.bus.memory import InProcessTradeBus

T0 = 1_700_000_000_000_000
# Generous bounds: the assertions are about which timeout applies (0.05 s vs 60 s), not about speed.
BOUND_SECONDS = 10.0


async def test_a_short_timeout_after_a_long_one_applies_at_once() -> None:
    bus = InProcessTradeBus()
    subscription = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    waiting = asyncio.ensure_future(subscription.get(60.0))
    await asyncio.sleep(0)  # let it arm its (60 s) timer
    await bus.publish(make_trades(seed=1, count=2, start_us=T0, spacing_us=1))
    assert len(await waiting or []) == 2
    async with asyncio.timeout(BOUND_SECONDS):  # would wait out the first call's 60 s timer
        assert await subscription.get(0.05) is None
    subscription.close()


async def test_a_long_timeout_after_a_short_one_is_not_cut_short() -> None:
    bus = InProcessTradeBus()
    subscription = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    waiting = asyncio.ensure_future(subscription.get(0.05))
    await asyncio.sleep(0)
    await bus.publish(make_trades(seed=2, count=1, start_us=T0, spacing_us=1))
    assert len(await waiting or []) == 1
    loop = asyncio.get_running_loop()
    began = loop.time()
    later = asyncio.ensure_future(subscription.get(0.5))  # the 0.05 s timer is still armed: it must re-arm
    async with asyncio.timeout(BOUND_SECONDS):
        assert await later is None
    assert loop.time() - began >= 0.5
    subscription.close()


async def test_trades_arriving_while_waiting_end_the_wait_and_the_timer_goes_with_the_subscription() -> None:
    bus = InProcessTradeBus()
    subscription = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    for round_ in range(3):  # several waits reuse one timer
        waiting = asyncio.ensure_future(subscription.get(60.0))
        await asyncio.sleep(0)
        await bus.publish(make_trades(seed=3 + round_, count=1, start_us=T0 + round_, spacing_us=1))
        async with asyncio.timeout(BOUND_SECONDS):
            assert len(await waiting or []) == 1
    assert subscription._idle_timer is not None
    subscription.close()
    assert subscription._idle_timer is None
