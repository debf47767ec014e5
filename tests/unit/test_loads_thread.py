"""LoadsThread: a cache-miss load holding a gate slot runs off the server's loop; its store reads go back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.ports import CandleQuery
from wadm_grpc.services.shedding import GatedTradeStore, LoadsThread, StoreQueryGate, call_method

QUERY = CandleQuery(
    symbol="BTCUSDT", exchanges=(), timeframe=Timeframe.M1, start_us=None, end_us=None, limit=10, newest_first=True
)


class _LoopRecordingStore:
    """Only `candles` is used: it records the thread and loop it ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, asyncio.AbstractEventLoop]] = []

    async def candles(self, query: CandleQuery) -> list[Any]:
        self.calls.append((threading.current_thread().name, asyncio.get_running_loop()))
        return []


async def test_a_load_runs_on_the_loads_thread_and_its_store_reads_on_the_servers_loop() -> None:
    loads = LoadsThread()
    gate = StoreQueryGate(max_running=1, max_queued=0, max_wait_seconds=0, loads=loads)
    inner = _LoopRecordingStore()
    store = GatedTradeStore(inner, gate)  # type: ignore[arg-type]
    ran: list[tuple[str, str]] = []

    async def load() -> str:
        rows = await store.candles(QUERY)  # passes through: this task holds the slot
        ran.append((threading.current_thread().name, call_method.get()))
        return f"{len(rows)} rows"

    call_method.set("GetCandles")
    try:
        assert await gate.run(load, off_loop=True) == "0 rows"
        assert ran == [("wadm-loads", "GetCandles")]  # off the loop, in the caller's context
        assert inner.calls == [(threading.current_thread().name, asyncio.get_running_loop())]
        assert await gate.run(load) == "0 rows"  # without off_loop: on the caller's loop
        assert ran[-1][0] == threading.current_thread().name
    finally:
        await loads.aclose()


async def test_a_store_with_threads_of_its_own_is_read_on_the_loads_thread_without_going_home() -> None:
    loads = LoadsThread()
    gate = StoreQueryGate(max_running=1, max_queued=0, max_wait_seconds=0, loads=loads)
    inner = _LoopRecordingStore()
    store = GatedTradeStore(inner, gate, reads_at_home=False)  # type: ignore[arg-type]

    async def load() -> int:
        return len(await store.candles(QUERY))

    try:
        assert await gate.run(load, off_loop=True) == 0
        assert inner.calls == [("wadm-loads", loads.loop)]  # no hop to the server's loop and back
    finally:
        await loads.aclose()


async def test_the_servers_loop_runs_while_a_load_holds_its_thread() -> None:
    loads = LoadsThread()
    gate = StoreQueryGate(max_running=1, max_queued=0, max_wait_seconds=0, loads=loads)
    started, release = threading.Event(), threading.Event()

    async def cpu_bound_load() -> str:
        started.set()
        assert release.wait(30)  # holds its thread, as rendering 1,000 candles does
        return "rendered"

    try:
        load = asyncio.create_task(gate.run(cpu_bound_load, off_loop=True))
        assert await asyncio.to_thread(started.wait, 30)
        served = await asyncio.create_task(asyncio.sleep(0, result="served meanwhile"))  # this loop still runs
        assert served == "served meanwhile" and not load.done()
        release.set()
        assert await load == "rendered"
    finally:
        release.set()
        await loads.aclose()


async def test_cancelling_the_call_cancels_its_load_and_frees_the_slot() -> None:
    loads = LoadsThread()
    gate = StoreQueryGate(max_running=1, max_queued=0, max_wait_seconds=0, loads=loads)
    started, cancelled = threading.Event(), threading.Event()

    async def endless_load() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    try:
        call = asyncio.create_task(gate.run(endless_load, off_loop=True))
        assert await asyncio.to_thread(started.wait, 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await asyncio.to_thread(cancelled.wait, 30)
        assert not gate.saturated
    finally:
        await loads.aclose()


async def test_closing_cancels_loads_still_running() -> None:
    loads = LoadsThread()
    started = threading.Event()

    async def endless_load() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    call = asyncio.create_task(loads.run(endless_load))
    assert await asyncio.to_thread(started.wait, 30)
    await loads.aclose()
    with pytest.raises(asyncio.CancelledError):
        await call
