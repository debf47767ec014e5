"""Section `unary` (issue 3): GetCandles throughput of the real server beside an EMPTY grpc.aio servicer.

The same client code drives every server with CONCURRENCY calls in flight for MEASURE_SECONDS (after a
warm-up). The empty servicer (bench/empty_server.py) answers with the real server's own response to
the same request, so both put the same bytes on the wire; the ratio real/empty is what the product's
work costs. A server variant is one entry of REAL_VARIANTS: extra environment for the subprocess.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.datasets import Datasets
from bench.processes import CpuMeter, ServerProcess, empty_server, wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, times, whole
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

# Issue 12: cached throughput stays at least this share of the empty servicer's.
CACHED_TARGET = 0.9


@dataclass(frozen=True)
class ServerVariant:
    """A way to run the real server: extra WADM_* variables for its subprocess."""

    name: str
    description: str
    extra_env: Mapping[str, str] = field(default_factory=dict)


REAL_VARIANTS: list[ServerVariant] = [
    ServerVariant("uncached", "every call reads the DuckDB store", {"WADM_CACHE": "false"}),
    ServerVariant("cached (memory)", "the read cache in process memory (no WADM_REDIS_URL)", {"WADM_CACHE": "true"}),
    # More variants are more entries, e.g. a Redis-backed cache once the bench starts a redis-server:
    # ServerVariant("cached (redis)", "...", {"WADM_CACHE": "true", "WADM_REDIS_URL": "redis://127.0.0.1:PORT/0"}),
]
EMPTY = "empty servicer"
CACHED_VARIANTS = frozenset(variant.name for variant in REAL_VARIANTS if variant.extra_env.get("WADM_CACHE") == "true")
DATASET = "10m"
REQUEST = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=500)
CONCURRENCY = 64
ROUNDS = 2
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 5.0
CALL_TIMEOUT_SECONDS = 10.0


@dataclass
class Load:
    """What one closed-loop run measured."""

    calls: int
    seconds: float
    latencies: list[float]
    errors: Counter[str]
    server_cpu_percent: float
    client_cpu_percent: float

    @classmethod
    def pooled(cls, windows: list[Load]) -> Load:
        """Several windows as one: calls and latencies summed, CPU averaged."""
        return cls(
            calls=sum(w.calls for w in windows),
            seconds=sum(w.seconds for w in windows),
            latencies=[x for w in windows for x in w.latencies],
            errors=sum((w.errors for w in windows), Counter()),
            server_cpu_percent=sum(w.server_cpu_percent for w in windows) / max(1, len(windows)),
            client_cpu_percent=sum(w.client_cpu_percent for w in windows) / max(1, len(windows)),
        )

    @property
    def qps(self) -> float:
        """Completed calls per second in the measured window."""
        return self.calls / self.seconds

    def figures(self) -> dict[str, object]:
        """For the results file."""
        return {
            "qps": self.qps,
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
            "errors": dict(self.errors),
            "server_cpu_percent": self.server_cpu_percent,
            "client_cpu_percent": self.client_cpu_percent,
        }


async def closed_loop(
    server: ServerProcess, request: md.GetCandlesRequest, *, concurrency: int = CONCURRENCY, channels: int = 1
) -> Load:
    """`concurrency` callers, each calling again as soon as its answer arrives; bounded by time. With several
    `channels` (TCP connections), SO_REUSEPORT spreads the calls over worker processes."""
    opened = [
        grpc.aio.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    stubs = [md_grpc.MarketDataServiceStub(channel) for channel in opened]
    meter = CpuMeter([server])
    started = time.perf_counter()
    window_start = started + WARMUP_SECONDS
    window_end = window_start + MEASURE_SECONDS
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def caller(stub: md_grpc.MarketDataServiceStub) -> None:
        while (begin := time.perf_counter()) < window_end:
            try:
                await stub.GetCandles(request, timeout=CALL_TIMEOUT_SECONDS)
                failure = None
            except grpc.aio.AioRpcError as error:
                failure = error.code().name
            end = time.perf_counter()
            if window_start <= end <= window_end:
                if failure is None:
                    latencies.append(end - begin)
                else:
                    errors[failure] += 1

    async def measure_cpu() -> None:
        await asyncio.sleep(WARMUP_SECONDS)
        meter.start()
        await asyncio.sleep(MEASURE_SECONDS)
        meter.stop()

    try:
        await asyncio.gather(measure_cpu(), *(caller(stubs[index % channels]) for index in range(concurrency)))
    finally:
        for channel in opened:
            await channel.close()
    server.check_alive()
    return Load(len(latencies), MEASURE_SECONDS, latencies, errors, meter.server_percent[0], meter.client_percent)


async def _reference(server: ServerProcess) -> md.GetCandlesResponse:
    channel = grpc.aio.insecure_channel(server.target)
    try:
        return await md_grpc.MarketDataServiceStub(channel).GetCandles(REQUEST, timeout=30)
    finally:
        await channel.close()


async def run(data: Datasets) -> SectionResult:
    """Each real variant in turn, alternating measurement windows with the empty servicer (up throughout,
    answering with the first variant's response): A B B A ..., so background load hits both alike."""
    dataset = await data.get(DATASET)
    windows: dict[str, list[Load]] = {variant.name: [] for variant in REAL_VARIANTS}
    windows[EMPTY] = []
    reference = md.GetCandlesResponse()
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        response_path = Path(directory) / "candles.pb"
        async with AsyncExitStack() as stack:
            empty: ServerProcess | None = None
            for variant in REAL_VARIANTS:
                async with wadm_server(f"wadm-{variant.name}", dataset.path, variant.extra_env) as real:
                    if empty is None:
                        reference = await _reference(real)
                        response_path.write_bytes(reference.SerializeToString())
                        empty = await stack.enter_async_context(empty_server("empty", response_path))
                    for index in range(ROUNDS):
                        pair = [(variant.name, real), (EMPTY, empty)]
                        for name, server in pair if index % 2 == 0 else reversed(pair):
                            windows[name].append(await closed_loop(server, REQUEST))
    loads = {name: Load.pooled(found) for name, found in windows.items()}
    baseline = loads[EMPTY]
    table = Table(
        f"GetCandles(BTCUSDT, 1m, limit=500) throughput: {CONCURRENCY} calls in flight, {ROUNDS} x "
        f"{MEASURE_SECONDS:.0f} s per server (response {len(reference.candles)} candles, "
        f"{reference.ByteSize():,} bytes; dataset {DATASET})",
        ["server", "QPS", "p50 ms", "p99 ms", "errors", "server CPU", "client CPU", "QPS vs empty", "target"],
    )
    for name, load in loads.items():
        share = ratio(load.qps, baseline.qps)
        target = ""
        if name in CACHED_VARIANTS:
            target = f">= {CACHED_TARGET}x: {'yes' if share >= CACHED_TARGET else 'NO'}"
        table.add(
            name,
            whole(load.qps),
            ms(percentile(load.latencies, 50)),
            ms(percentile(load.latencies, 99)),
            sum(load.errors.values()),
            f"{load.server_cpu_percent:.0f}%",
            f"{load.client_cpu_percent:.0f}%",
            times(share),
            target,
        )
    table.notes.append("CPU: % of one core over the measured windows (server process; bench client process)")
    per_window = "; ".join(f"{name} " + ", ".join(whole(w.qps) for w in found) for name, found in windows.items())
    table.notes.append(f"QPS of each window: {per_window}")
    figures: dict[str, object] = {
        "concurrency": CONCURRENCY,
        "rounds": ROUNDS,
        "measure_seconds": MEASURE_SECONDS,
        "dataset": DATASET,
        "response_bytes": reference.ByteSize(),
        "candles": len(reference.candles),
        "variants": {name: {**x.figures(), "vs_empty": ratio(x.qps, baseline.qps)} for name, x in loads.items()},
        "window_qps": {name: [w.qps for w in found] for name, found in windows.items()},
    }
    return SectionResult("unary", [table], figures)
