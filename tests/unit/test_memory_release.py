"""Freed memory is handed back to the OS after a burst of ended streams, not after each one."""

from __future__ import annotations

import asyncio

import pytest

from wadm_grpc import memory_release
from wadm_grpc.services.streaming import StreamStats


class Streams:
    """Stands in for StreamService: only its counters matter here."""

    def __init__(self) -> None:
        self.ended = 0

    def stats(self) -> StreamStats:
        return StreamStats(live_streams=0, cut_off_streams=0, ended_streams=self.ended)


async def test_memory_is_released_once_per_burst_of_ended_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[int] = []
    streams = Streams()
    burst_seen = asyncio.Event()
    loop = asyncio.get_running_loop()

    def trim() -> None:  # runs on a worker thread
        released.append(streams.ended)
        loop.call_soon_threadsafe(burst_seen.set)

    monkeypatch.setattr(memory_release, "_malloc_trim", lambda: trim)
    task = asyncio.create_task(
        memory_release.release_after_stream_bursts(streams, burst_streams=3, check_seconds=0)  # type: ignore[arg-type]
    )
    try:
        streams.ended = 2  # below the burst: nothing to do
        for _ in range(20):
            await asyncio.sleep(0)
        assert released == []
        streams.ended = 5  # a burst, settled once no more streams end between two checks
        async with asyncio.timeout(10):
            await burst_seen.wait()
        assert released == [5]
        burst_seen.clear()
        streams.ended = 40  # a long churn: released without waiting for it to settle
        async with asyncio.timeout(10):
            await burst_seen.wait()
        assert released == [5, 40]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_glibc_malloc_trim_is_found_here() -> None:
    assert memory_release._malloc_trim() is not None
