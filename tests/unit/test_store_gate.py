"""StoreQueryGate: a bound on running store reads, a short queue, the call's deadline respected."""

from __future__ import annotations

import asyncio
import time

import pytest

from wadm_grpc.domain.errors import UnavailableError
from wadm_grpc.services.shedding import SHED_REASON, StoreQueryGate, call_deadline


async def _hold(gate: StoreQueryGate, release: asyncio.Event, started: asyncio.Event) -> str:
    async def read() -> str:
        started.set()
        await release.wait()
        return "done"

    return await gate.run(read)


async def _instant() -> str:
    return "quick"


async def test_a_read_beyond_running_and_queued_is_refused_at_once() -> None:
    shed: list[str] = []
    gate = StoreQueryGate(max_running=1, max_queued=1, max_wait_seconds=30, on_shed=shed.append)
    release, started = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(gate, release, started))
    await started.wait()
    queued = asyncio.create_task(gate.run(_instant))
    await asyncio.sleep(0)  # let it queue
    assert gate.waiting == 1
    with pytest.raises(UnavailableError) as refused:
        await gate.run(_instant)
    assert refused.value.reason == SHED_REASON and refused.value.retry_after_seconds > 0
    assert gate.shed == 1 and len(shed) == 1
    release.set()
    assert await holder == "done"
    assert await queued == "quick"  # the queued read ran once a slot was free


async def test_a_queued_read_gives_up_at_its_calls_deadline() -> None:
    gate = StoreQueryGate(max_running=1, max_queued=10, max_wait_seconds=30)
    release, started = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(gate, release, started))
    await started.wait()
    call_deadline.set(time.monotonic() + 0.05)
    began = time.monotonic()
    with pytest.raises(UnavailableError):
        await gate.run(_instant)
    assert time.monotonic() - began < 10  # the deadline, not the 30 s queue limit
    call_deadline.set(time.monotonic() - 1)
    with pytest.raises(UnavailableError):  # no time left: refused without queueing
        await gate.run(_instant)
    release.set()
    await holder
    assert gate.waiting == 0


async def test_a_load_holding_a_slot_passes_its_own_store_reads_through() -> None:
    gate = StoreQueryGate(max_running=1, max_queued=0, max_wait_seconds=0.01)

    async def load() -> str:
        return await gate.run(_instant)  # one slot, held by this load: would be refused if it queued

    assert await gate.run(load) == "quick"
    assert gate.shed == 0
