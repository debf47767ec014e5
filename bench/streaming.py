"""Section `streaming` (issues 3 and 11): N concurrent StreamTrades while trades are ingested at a fixed rate.

Each case runs the EMPTY servicer (bench/empty_server.py), whose PublishTrades pushes one pre-built
message per symbol and batch to the same streams (the ceiling of grpc.aio + this client), and then the
real server on a fresh, empty store. How one run works: bench/stream_load.py. The capacity cases of
issue 11 put the consumers in CLIENT_PROCESSES processes (bench/stream_processes.py), and the last one
serves 2,000 streams from `--workers 2` with the Redis bus while the bench publishes into a writer process.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cache_workers import _free_port, redis_server
from bench.datasets import Datasets
from bench.processes import ServerProcess, empty_server, wadm_server
from bench.report import SectionResult, Table, ratio, times, whole
from bench.stream_load import (
    DRAIN_MAX_SECONDS,
    MEASURE_SECONDS,
    STREAMS_PER_CHANNEL,
    SYMBOLS,
    TRADES_PER_SECOND,
    StreamRun,
    measure,
)
from bench.stream_processes import measure_in_processes

# Issue 11's targets.
TARGET_STREAMS = 1_000
TARGET_P99_MS = 100.0
WORKER_STREAMS = 2_000
CLIENT_PROCESSES = 4
EMPTY = "empty servicer"
WORKERS = "wadm --workers 2 + Redis"


@dataclass(frozen=True)
class Case:
    """N streams, seconds between batches, consumer processes (1: in the bench process), server workers."""

    streams: int
    tick_seconds: float
    client_processes: int = 1
    workers: int = 1


# The 250 ms case carries the same trades in 5x fewer, larger batches, so 5x fewer stream messages: it
# tells the cost per message apart from the cost per trade.
CASES = (
    Case(100, 0.05),
    Case(TARGET_STREAMS, 0.05),
    Case(TARGET_STREAMS, 0.25),
    Case(TARGET_STREAMS, 0.05, CLIENT_PROCESSES),
    Case(WORKER_STREAMS, 0.05, CLIENT_PROCESSES, workers=2),
)
Servers = AbstractAsyncContextManager[tuple[ServerProcess, ServerProcess]]
ServerFactory = Callable[[], Servers]


@asynccontextmanager
async def _one(
    factory: AbstractAsyncContextManager[ServerProcess],
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    async with factory as server:
        yield server, server


@asynccontextmanager
async def _workers(directory: Path, case: int) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Two workers on one port serving a read-only snapshot, and the writer the bench publishes into, all
    on one Redis bus (a DuckDB file has one writer; the workers get the writer's trades from Redis)."""
    from wadm_grpc.stores.duckdb.store import DuckDBTradeStore

    snapshot = directory / f"streams-{case}-snapshot.duckdb"
    await DuckDBTradeStore(snapshot).close()  # an empty store for the read-only workers
    async with AsyncExitStack() as stack:
        redis_url = await stack.enter_async_context(redis_server())
        env = {"WADM_REDIS_URL": redis_url}
        writer = await stack.enter_async_context(wadm_server("writer", directory / f"streams-{case}.duckdb", env))
        workers_env = env | {"WADM_READ_ONLY": "true", "WADM_WORKERS": "2", "WADM_PORT": str(_free_port())}
        workers = await stack.enter_async_context(wadm_server(WORKERS, snapshot, workers_env, workers=2))
        yield workers, writer


def _servers(directory: Path, index: int, case: Case) -> list[tuple[str, ServerFactory]]:
    store = directory / f"streams-{index}.duckdb"
    if case.workers > 1:
        return [(EMPTY, lambda: _one(empty_server("empty"))), (WORKERS, lambda: _workers(directory, index))]
    return [
        (EMPTY, lambda: _one(empty_server("empty"))),
        ("wadm", lambda: _one(wadm_server("wadm", store))),
    ]


async def run(data: Datasets) -> SectionResult:
    """For each case: the empty servicer, then the real server on a fresh, empty store."""
    return await _run_cases(CASES, "streaming")


async def run_capacity(data: Datasets) -> SectionResult:
    """Section `capacity`: only issue 11's cases (the consumers in client processes), for a quick rerun."""
    return await _run_cases([case for case in CASES if case.client_processes > 1], "capacity")


async def _run_cases(cases: Sequence[Case], section: str) -> SectionResult:
    runs: list[StreamRun] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        for index, case in enumerate(cases):
            for name, factory in _servers(Path(directory), index, case):
                loads.append(os.getloadavg()[0])
                async with factory() as (server, publisher):
                    if case.client_processes > 1 or publisher is not server:
                        result = await measure_in_processes(
                            server,
                            case.streams,
                            case.tick_seconds,
                            client_processes=case.client_processes,
                            publisher=publisher,
                        )
                    else:
                        result = await measure(server, case.streams, case.tick_seconds)
                result.server = name
                runs.append(result)
                print(
                    f"  {name}, {case.streams} streams, a batch every {case.tick_seconds * 1000:.0f} ms, "
                    f"{case.client_processes} client process(es): done (load average {loads[-1]:.1f} before)",
                    flush=True,
                )
    return _report(runs, loads, section)


def _report(runs: Sequence[StreamRun], loads: Sequence[float], section: str) -> SectionResult:
    table = Table(
        f"StreamTrades: {TRADES_PER_SECOND} trades/s ingested over {len(SYMBOLS)} symbols for "
        f"{MEASURE_SECONDS:.0f} s; latency = ingest (publish) to client",
        [
            *("server", "streams", "batch every", "clients", "subscribed", "ingest/s", "delivered/s", "needed/s"),
            *("p50 ms", "p99 ms", "max ms", "ingest lag", "lost", "cut off"),
        ],
    )
    for r in runs:
        table.add(
            r.server,
            f"{r.streams:,}",
            f"{r.tick_seconds * 1000:.0f} ms",
            _clients(r),
            f"{r.subscribed:,}",
            whole(r.ingest_rate),
            whole(r.delivered_rate),
            whole(r.required_rate),
            f"{r.latency_ms(50):.1f}",
            f"{r.latency_ms(99):.1f}",
            f"{max(r.latencies_us, default=0) / 1000:.0f}",
            "-" if math.isnan(r.ingest_lag_seconds) else f"{r.ingest_lag_seconds:.1f} s",
            f"{r.lost:,}" if r.lost is not None else f"? ({r.outcome}: {r.undelivered:,} not yet delivered)",
            ", ".join(f"{n} {code}" for code, n in r.cut_off.items()) or "0",
        )
    table.notes += [
        "ingest lag: from the end of the publishing window to the PublishTrades answer (every batch stored)",
        "lost: trades of a subscribed stream's symbol it never received (open streams), once ingest and deliveries "
        f"settled (waiting up to {DRAIN_MAX_SECONDS:.0f} s while deliveries keep coming)",
        "cut off: streams the server ended, by status code",
        "clients: the consumers in the bench process (in-process) or in N client processes",
        f"{WORKERS}: the streams served by 2 worker processes on one port (read-only snapshot) while the bench "
        "publishes into a third, writer process; all three on one Redis bus; server CPU sums the three",
    ]
    ceilings = {(r.streams, r.tick_seconds, r.client_processes): r for r in runs if r.server == EMPTY}
    versus = Table(
        "StreamTrades: each run beside the empty servicer at the same N; CPU in % of one core",
        [
            *("server", "streams", "batch every", "clients", "delivered/s vs empty", "p50 vs empty", "p99 vs empty"),
            "msgs/s",
            *("server CPU", "client CPU", "server RSS"),
        ],
    )
    for r in runs:
        ceiling = ceilings.get((r.streams, r.tick_seconds, r.client_processes))
        versus.add(
            r.server,
            f"{r.streams:,}",
            f"{r.tick_seconds * 1000:.0f} ms",
            _clients(r),
            times(ratio(r.delivered_rate, ceiling.delivered_rate)) if ceiling else "-",
            times(ratio(r.latency_ms(50), ceiling.latency_ms(50))) if ceiling else "-",
            times(ratio(r.latency_ms(99), ceiling.latency_ms(99))) if ceiling else "-",
            whole(r.messages / r.delivery_seconds),
            f"{r.server_cpu_percent:.0f}%",
            f"{r.client_cpu_percent:.0f}%",
            f"{r.server_rss_mib:.0f} MiB",
        )
    figures: dict[str, object] = {
        "trades_per_second": TRADES_PER_SECOND,
        "measure_seconds": MEASURE_SECONDS,
        "streams_per_channel": STREAMS_PER_CHANNEL,
        "runs": [
            {"server": r.server, **r.figures(), "load_average_1m_before": load}
            for r, load in zip(runs, loads, strict=True)
        ],
    }
    return SectionResult(section, [table, versus, _targets(runs, loads, ceilings)], figures)


def _clients(run: StreamRun) -> str:
    return "in-process" if run.client_processes == 1 else f"{run.client_processes} processes"


def _targets(
    runs: Sequence[StreamRun], loads: Sequence[float], ceilings: dict[tuple[int, float, int], StreamRun]
) -> Table:
    """Issue 11: 1,000 streams at p99 <= 100 ms on one process, 0 lost; 2,000 on --workers 2 + Redis, 0 lost."""
    table = Table(
        f"Issue 11 capacity targets ({TRADES_PER_SECOND} trades/s in 50 ms batches over {len(SYMBOLS)} symbols)",
        [
            *("server", "streams", "clients", "p50 ms", "p99 ms", "target p99", "empty p99 ms", "p99 vs empty"),
            *("lost", "met", "load avg"),
        ],
    )
    for r, load in zip(runs, loads, strict=True):
        if r.server == EMPTY or r.tick_seconds != 0.05 or r.streams < TARGET_STREAMS:
            continue
        ceiling = ceilings.get((r.streams, r.tick_seconds, r.client_processes))
        p99 = r.latency_ms(99)
        target = f"<= {TARGET_P99_MS:.0f} ms, 0 lost" if r.streams == TARGET_STREAMS else "0 lost (p99 reported)"
        met = r.lost == 0 and (r.streams != TARGET_STREAMS or p99 <= TARGET_P99_MS)
        table.add(
            r.server,
            f"{r.streams:,}",
            _clients(r),
            f"{r.latency_ms(50):.1f}",
            f"{p99:.1f}",
            target,
            f"{ceiling.latency_ms(99):.1f}" if ceiling else "-",
            times(ratio(p99, ceiling.latency_ms(99))) if ceiling else "-",
            f"{r.lost:,}" if r.lost is not None else "?",
            "yes" if met else "no",
            f"{load:.1f}",
        )
    table.notes.append(
        "load avg: the 1-minute load average before the run; above 2 (the cores) other work shares the machine "
        "and the latencies measure it too"
    )
    return table
