"""PublishTrades reads ahead: what queued up while the store was busy is handled as one backlog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wadm_grpc.api.grpc.ingest import backlogs


async def test_items_that_queue_up_while_the_consumer_is_busy_come_as_one_list() -> None:
    released = asyncio.Event()
    sent = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        await released.wait()  # the consumer is busy with item 0 meanwhile
        for item in range(1, 6):
            yield item
        sent.set()

    got = []
    async for ready in backlogs(source(), limit=10):
        got.append(ready)
        if ready == [0]:
            released.set()
            await sent.wait()  # "store" item 0 until everything else has been read

    assert got == [[0], [1, 2, 3, 4, 5]]


async def test_read_ahead_is_bounded() -> None:
    async def source() -> AsyncIterator[int]:
        for item in range(10):
            yield item

    got = [ready async for ready in backlogs(source(), limit=3)]

    assert [item for ready in got for item in ready] == list(range(10))
    assert max(len(ready) for ready in got) <= 4  # the bound, plus the one read while the queue was full


async def test_a_failed_read_is_raised_after_what_was_read() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("connection reset")

    got: list[int] = []

    async def consume() -> None:
        async for ready in backlogs(source(), limit=3):
            got.extend(ready)

    with pytest.raises(RuntimeError, match="connection reset"):
        await consume()
    assert got == [1]


async def test_closing_early_with_a_full_queue_stops_the_reader() -> None:
    async def endless() -> AsyncIterator[int]:
        item = 0
        while True:
            yield item
            item += 1

    incoming = backlogs(endless(), limit=4)
    assert (await anext(incoming))[0] == 0
    await asyncio.sleep(0)  # the reader fills the queue and waits on it
    readers = {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}

    closing = asyncio.create_task(incoming.aclose())
    done, _ = await asyncio.wait({closing}, timeout=10)

    assert closing in done, "closing hung on the reader"
    assert readers
    assert all(reader.done() for reader in readers)
