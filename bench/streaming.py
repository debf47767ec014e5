"""Section `streaming` (issue 3): N concurrent StreamTrades while trades are ingested at a fixed rate.

Each case runs the EMPTY servicer (bench/empty_server.py), whose PublishTrades pushes one pre-built
message per symbol and batch to the same streams (the ceiling of grpc.aio + this client), and then the
real server on a fresh, empty store. How one run works: bench/stream_load.py.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

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

# (streams, seconds between batches). The 250 ms case carries the same trades in 5x fewer, larger
# batches, so 5x fewer stream messages: it tells the cost per message apart from the cost per trade.
CASES = ((100, 0.05), (1_000, 0.05), (1_000, 0.25))
EMPTY = "empty servicer"
ServerFactory = Callable[[], AbstractAsyncContextManager[ServerProcess]]


def _servers(directory: Path, case: int) -> list[tuple[str, ServerFactory]]:
    store = directory / f"streams-{case}.duckdb"
    return [
        (EMPTY, lambda: empty_server("empty")),
        ("wadm", lambda: wadm_server("wadm", store)),
    ]


async def run(data: Datasets) -> SectionResult:
    """For each N: the empty servicer, then the real server on a fresh, empty store."""
    runs: list[StreamRun] = []
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        for case, (streams, tick) in enumerate(CASES):
            for name, factory in _servers(Path(directory), case):
                async with factory() as server:
                    result = await measure(server, streams, tick)
                result.server = name
                runs.append(result)
                print(f"  {name}, {streams} streams, a batch every {tick * 1000:.0f} ms: done", flush=True)
    return _report(runs)


def _report(runs: Sequence[StreamRun]) -> SectionResult:
    table = Table(
        f"StreamTrades: {TRADES_PER_SECOND} trades/s ingested over {len(SYMBOLS)} symbols for "
        f"{MEASURE_SECONDS:.0f} s; latency = ingest (publish) to client",
        [
            *("server", "streams", "batch every", "subscribed", "ingest/s", "delivered/s", "needed/s"),
            *("p50 ms", "p99 ms", "max ms", "ingest lag", "lost", "cut off"),
        ],
    )
    for r in runs:
        table.add(
            r.server,
            f"{r.streams:,}",
            f"{r.tick_seconds * 1000:.0f} ms",
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
    ]
    ceilings = {(r.streams, r.tick_seconds): r for r in runs if r.server == EMPTY}
    versus = Table(
        "StreamTrades: each run beside the empty servicer at the same N; CPU in % of one core",
        [
            *("server", "streams", "batch every", "delivered/s vs empty", "p50 vs empty", "p99 vs empty", "msgs/s"),
            *("server CPU", "client CPU", "server RSS"),
        ],
    )
    for r in runs:
        ceiling = ceilings.get((r.streams, r.tick_seconds))
        versus.add(
            r.server,
            f"{r.streams:,}",
            f"{r.tick_seconds * 1000:.0f} ms",
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
        "runs": [{"server": r.server, **r.figures()} for r in runs],
    }
    return SectionResult("streaming", [table, versus], figures)
