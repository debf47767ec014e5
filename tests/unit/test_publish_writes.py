"""How one PublishTrades call writes what it validated (api/grpc/ingest.py `_Writes`): one write at a time,
started as soon as the store is free, the next taking everything validated meanwhile (bounded); a failed
write fails the call and nothing validated after it is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from wadm_grpc.api.grpc import ingest
from wadm_grpc.services.ingest import IngestResult


class GatedIngest:
    """store_trades that waits for the test to let each write finish."""

    def __init__(self) -> None:
        self.writes: list[list[Any]] = []
        self.gates: list[asyncio.Future[None]] = []

    async def store_trades(self, trades: Sequence[Any]) -> IngestResult:
        self.writes.append(list(trades))
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        return IngestResult(accepted=len(trades), duplicates=0)

    async def finish(self, index: int, error: BaseException | None = None) -> None:
        if error is None:
            self.gates[index].set_result(None)
        else:
            self.gates[index].set_exception(error)
        for _ in range(5):  # let the writer task go on to its next write
            await asyncio.sleep(0)


def writes_of(fake: GatedIngest) -> ingest._Writes:
    return ingest._Writes(fake, ingest._Tally())  # type: ignore[arg-type]


async def test_a_write_starts_at_once_and_the_next_takes_everything_validated_meanwhile() -> None:
    fake = GatedIngest()
    writes = writes_of(fake)
    await writes.add([1, 2])
    await asyncio.sleep(0)
    assert fake.writes == [[1, 2]]  # the store was free: no waiting for more
    await writes.add([3])
    await writes.add([4, 5])
    assert fake.writes == [[1, 2]]
    await fake.finish(0)
    assert fake.writes == [[1, 2], [3, 4, 5]]  # one write for both messages
    drained = asyncio.ensure_future(writes.drain())
    await fake.finish(1)
    await drained
    assert (writes.tally.accepted, writes.tally.duplicates) == (5, 0)


async def test_what_waits_is_bounded_and_each_write_holds_whole_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MAX_WRITE_TRADES", 4)
    fake = GatedIngest()
    writes = writes_of(fake)
    await writes.add([1])
    await asyncio.sleep(0)
    await writes.add([2, 3])
    await writes.add([4])
    blocked = asyncio.ensure_future(writes.add([5, 6]))  # 3 waiting + 2 > 4: waits for the writer to take them
    for _ in range(5):
        await asyncio.sleep(0)
    assert not blocked.done()
    await fake.finish(0)
    await blocked
    assert fake.writes == [[1], [2, 3, 4]]
    await fake.finish(1)
    assert fake.writes == [[1], [2, 3, 4], [5, 6]]
    drained = asyncio.ensure_future(writes.drain())
    await fake.finish(2)
    await drained
    assert writes.tally.accepted == 6


async def test_a_failed_write_fails_the_call_and_nothing_queued_after_it_is_written() -> None:
    fake = GatedIngest()
    writes = writes_of(fake)
    await writes.add([1])
    await asyncio.sleep(0)
    await writes.add([2])
    await fake.finish(0, RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        await writes.drain()
    assert fake.writes == [[1]]
    assert writes.tally.accepted == 0
    await writes.drain()  # nothing left in flight
