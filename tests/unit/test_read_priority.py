"""Reads first: ingest steps wait (bounded) for a quiet moment between uncached reads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from wadm_grpc.bootstrap import bootstrap
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Side
from wadm_grpc.domain.trade_input import ReceivedColumns
from wadm_grpc.services.read_priority import ReadActivity
from wadm_grpc.services.shedding import StoreQueryGate
from wadm_grpc.stores.duckdb import DuckDBTradeStore

T0 = 1_723_161_600_000_000
LONG = 30.0  # a bound no test waits for: the wait ends because the reads end


def columns(count: int) -> ReceivedColumns:
    return ReceivedColumns(
        exchange=["binance"] * count,
        symbol=["BTCUSDT"] * count,
        trade_id=[str(i + 1) for i in range(count)],
        price=["100.50"] * count,
        quantity=["0.001"] * count,
        side=[Side.BUY] * count,
        time_us=[T0 + i for i in range(count)],
    )


def in_thread(work: object) -> tuple[threading.Thread, threading.Event, list[object]]:
    """Run `work()` on a thread of its own; the event is set once it returned (its result in the list)."""
    done, result = threading.Event(), []

    def run() -> None:
        result.append(work())  # type: ignore[operator]
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, result


def test_without_reads_ingest_does_not_wait() -> None:
    activity = ReadActivity(max_wait_seconds=LONG, quiet_seconds=0)
    assert activity.wait_quiet() is True
    assert activity.yields == 0


def test_ingest_waits_until_the_running_reads_end() -> None:
    activity = ReadActivity(max_wait_seconds=LONG, quiet_seconds=0)
    activity.begin()
    activity.begin()
    thread, done, result = in_thread(activity.wait_quiet)
    assert not done.wait(0.05)  # blocked while reads run
    activity.end()
    assert not done.wait(0.05)  # one read still runs
    activity.end()
    assert done.wait(LONG)
    thread.join()
    assert result == [True] and activity.running == 0
    assert activity.yields == 1 and activity.yielded_seconds > 0


def test_ingest_waits_at_most_its_bound_under_reads_that_never_stop() -> None:
    activity = ReadActivity(max_wait_seconds=0.05, quiet_seconds=0)
    activity.begin()
    thread, done, result = in_thread(activity.wait_quiet)
    assert done.wait(LONG)  # not starved: it went on after its bound
    thread.join()
    assert result == [False]
    assert activity.yielded_seconds >= 0.05
    activity.end()


async def test_the_gate_counts_each_read_while_it_holds_a_slot() -> None:
    activity = ReadActivity(max_wait_seconds=LONG)
    gate = StoreQueryGate(max_running=2, max_queued=0, max_wait_seconds=1, activity=activity)
    release, started, seen = asyncio.Event(), asyncio.Event(), []

    async def read() -> str:
        seen.append(activity.running)
        started.set()
        await release.wait()
        return "done"

    holder = asyncio.create_task(gate.run(read))
    await started.wait()
    assert seen == [1] and activity.running == 1
    release.set()
    assert await holder == "done"
    assert activity.running == 0


async def test_large_batches_yield_to_reads_on_their_worker_thread_never_on_the_event_loop(tmp_path: Path) -> None:
    app = await bootstrap(
        Settings(page_token_key=b"k", ingest_yield_seconds=LONG),
        store=DuckDBTradeStore(tmp_path / "t.duckdb"),
        clock=ManualClock(T0 + 60_000_000),
    )
    activity = app.gate.activity if app.gate is not None else None
    assert activity is not None
    activity.quiet_seconds = 0
    try:
        activity.begin()  # an uncached read is running
        assert app.ingest.validate_received(columns(10)) is not None  # on the event loop: no wait

        validated = asyncio.ensure_future(asyncio.to_thread(app.ingest.validate_received, columns(2000)))
        await asyncio.sleep(0.05)
        assert not validated.done()  # the worker thread waits for the read
        activity.end()
        batch = await asyncio.wait_for(validated, LONG)
        assert batch is not None and len(batch) == 2000
        assert activity.yields >= 1
    finally:
        await app.close()


async def test_no_yield_is_wired_when_it_is_turned_off(tmp_path: Path) -> None:
    app = await bootstrap(
        Settings(page_token_key=b"k", ingest_yield_seconds=0),
        store=DuckDBTradeStore(tmp_path / "t.duckdb"),
        clock=ManualClock(T0 + 60_000_000),
    )
    try:
        assert app.gate is not None and app.gate.activity is None
        assert await asyncio.to_thread(app.ingest.validate_received, columns(2000)) is not None
    finally:
        await app.close()
