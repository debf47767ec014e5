"""Latency of calls to several servers from one client process, in interleaved rounds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from bench.datasets import Dataset, Datasets
from bench.processes import ServerProcess, wadm_server
from bench.report import percentile
from wadm_client import RawWadmClient


@dataclass
class Served:
    """One dataset behind its own real server, and the bench's client of it."""

    dataset: Dataset
    server: ServerProcess
    client: RawWadmClient


# The store path is what these sections measure: the server's read cache is off.
UNCACHED = {"WADM_CACHE": "false"}


@asynccontextmanager
async def dataset_servers(
    data: Datasets, names: Sequence[str], extra_env: dict[str, str] | None = None
) -> AsyncIterator[list[Served]]:
    """A real server subprocess per dataset (read cache off, plus `extra_env`), all up at once; killed on exit."""
    sets = [await data.get(name) for name in names]
    async with AsyncExitStack() as stack:
        served = []
        for dataset in sets:
            server = await stack.enter_async_context(
                wadm_server(f"wadm-{dataset.name}", dataset.path, UNCACHED | (extra_env or {}))
            )
            client = await stack.enter_async_context(RawWadmClient.connect(server.target, timeout_seconds=30))
            served.append(Served(dataset, server, client))
        yield served


@dataclass
class Samples:
    """Latencies (seconds) of one kind of call, and what each answer held (e.g. how many candles)."""

    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        """p50 in seconds."""
        return percentile(self.seconds, 50)

    @property
    def p90(self) -> float:
        """p90 in seconds."""
        return percentile(self.seconds, 90)

    def size_text(self) -> str:
        """The answer size, or its range when it varied."""
        if not self.sizes:
            return "-"
        low, high = min(self.sizes), max(self.sizes)
        return str(low) if low == high else f"{low}-{high}"


Call = Callable[[], Awaitable[int]]


async def interleaved_rounds(
    calls: dict[Hashable, Call], *, warmup_rounds: int, rounds: int, max_seconds: float
) -> tuple[dict[Hashable, Samples], int]:
    """Each round makes every call once, one at a time, in an order reversed every other round, so drift
    and caches hit all servers alike. Each call returns the size of its answer. Stops after `rounds`
    measured rounds or `max_seconds`, whichever first; returns the samples and the rounds measured.
    """
    samples = {key: Samples() for key in calls}
    keys = list(calls)
    deadline = time.perf_counter() + max_seconds
    measured = 0
    for index in range(warmup_rounds + rounds):
        for key in keys if index % 2 == 0 else reversed(keys):
            started = time.perf_counter()
            size = await calls[key]()
            elapsed = time.perf_counter() - started
            if index >= warmup_rounds:
                samples[key].seconds.append(elapsed)
                samples[key].sizes.append(size)
        measured += index >= warmup_rounds
        if time.perf_counter() > deadline:
            break
    return samples, measured
