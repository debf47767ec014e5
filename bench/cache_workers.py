"""Section `redis` (issue 5): cached vs uncached GetCandles with memory only and with Redis; 1 vs 2 workers.

1. Latency (one call in flight) and throughput (CONCURRENCY in flight) of GetCandles(1m, 500) against the
   same dataset: uncached (every call reads DuckDB), cached in process memory, cached in Redis (a real
   redis-server started here on a free port). Ratios are against the uncached server measured in this run.
2. Unary throughput with 1 and 2 worker processes sharing one port (SO_REUSEPORT): both serve the same
   read-only DuckDB snapshot with the Redis bus, the client spreads calls over several connections. Ratio:
   2 workers / 1 worker, measured back to back. On this 2-core machine the bench client competes with the
   workers for the cores, so this shows the trend, not the ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from bench.datasets import Datasets
from bench.processes import ServerProcess, wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, times, whole
from bench.unary import CALL_TIMEOUT_SECONDS, CONCURRENCY, REQUEST, Load, closed_loop
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

DATASET = "10m"
LATENCY_CALLS = 200
WORKER_CHANNELS = 8
REDIS_START_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    """A throw-away redis-server (Debian's, on PATH) on a free port; yields its URL, killed at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make redis-server`")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="wadm-bench-redis-") as directory:
        process = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory, "--logfile", "",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + REDIS_START_SECONDS
            while not await _answers_ping(port):  # poll a socket until it answers, bounded in time
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError(f"redis-server did not answer on port {port}")
                await asyncio.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        return answer.startswith(b"+PONG")
    return False


async def sequential_latency(server: ServerProcess) -> list[float]:
    """LATENCY_CALLS calls one after another (after as many warm-up calls): their latencies."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = md_grpc.MarketDataServiceStub(channel)
        latencies = []
        for index in range(2 * LATENCY_CALLS):
            begin = time.perf_counter()
            await stub.GetCandles(REQUEST, timeout=CALL_TIMEOUT_SECONDS)
            if index >= LATENCY_CALLS:
                latencies.append(time.perf_counter() - begin)
    return latencies


async def run(data: Datasets) -> SectionResult:
    """Both parts; a Redis server lives for the section."""
    dataset = await data.get(DATASET)
    cache_table = Table(
        f"GetCandles(BTCUSDT, 1m, limit=500), cached vs uncached: latency with 1 call in flight "
        f"({LATENCY_CALLS} calls), throughput with {CONCURRENCY} in flight (dataset {DATASET})",
        ["server", "p50 ms", "p99 ms", "QPS", "p50 ms (loaded)", "server CPU", "QPS vs uncached", "p50 vs uncached"],
    )
    workers_table = Table(
        f"GetCandles(BTCUSDT, 1m, limit=500) throughput, {CONCURRENCY} in flight over {WORKER_CHANNELS} "
        "connections: 1 vs 2 worker processes on one port (read-only snapshot, Redis bus)",
        ["cache", "workers", "QPS", "p50 ms", "p99 ms", "errors", "QPS vs 1 worker"],
    )
    figures: dict[str, object] = {"dataset": DATASET, "cache": {}, "workers": {}}
    async with redis_server() as redis_url:
        variants = [
            ("uncached", {"WADM_CACHE": "false"}),
            ("cached (memory)", {"WADM_CACHE": "true"}),
            ("cached (redis)", {"WADM_CACHE": "true", "WADM_REDIS_URL": redis_url}),
        ]
        measured: dict[str, tuple[list[float], Load]] = {}
        for name, env in variants:
            async with wadm_server(f"wadm-{name}", dataset.path, env) as server:
                measured[name] = (await sequential_latency(server), await closed_loop(server, REQUEST))
        base_latency, base_load = measured["uncached"]
        for name, (latencies, load) in measured.items():
            cache_table.add(
                name,
                ms(percentile(latencies, 50)),
                ms(percentile(latencies, 99)),
                whole(load.qps),
                ms(percentile(load.latencies, 50)),
                f"{load.server_cpu_percent:.0f}%",
                times(ratio(load.qps, base_load.qps)),
                times(ratio(percentile(latencies, 50), percentile(base_latency, 50))),
            )
            figures["cache"][name] = {  # type: ignore[index]
                "latency_p50_ms": percentile(latencies, 50) * 1000,
                "latency_p99_ms": percentile(latencies, 99) * 1000,
                **load.figures(),
            }
        for cache in ("false", "true"):
            loads: dict[int, Load] = {}
            for count in (1, 2):
                env = {
                    "WADM_CACHE": cache,
                    "WADM_REDIS_URL": redis_url,
                    "WADM_READ_ONLY": "true",
                    "WADM_WORKERS": str(count),
                    "WADM_PORT": str(_free_port()),
                }
                async with wadm_server(f"wadm-{count}w", dataset.path, env, workers=count) as server:
                    loads[count] = await closed_loop(server, REQUEST, channels=WORKER_CHANNELS)
            label = "redis" if cache == "true" else "off"
            for count, load in loads.items():
                workers_table.add(
                    label,
                    count,
                    whole(load.qps),
                    ms(percentile(load.latencies, 50)),
                    ms(percentile(load.latencies, 99)),
                    sum(load.errors.values()),
                    times(ratio(load.qps, loads[1].qps)),
                )
                figures["workers"][f"{label}-{count}"] = load.figures()  # type: ignore[index]
    cache_table.notes.append("server CPU: % of one core during the loaded run")
    workers_table.notes.append("the bench client runs on the same 2 cores as the workers")
    return SectionResult("redis", [cache_table, workers_table], figures)
