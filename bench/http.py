"""Section `http` (issue 9): what the HTTP/JSON gateway costs.

1. HTTP GetCandles(500), cached, through the real server's gateway, beside a bare Starlette app (uvicorn,
   one process, like the gateway) that answers the same JSON bytes: the ratio is what the gateway's work
   (routing, query mapping, the gRPC hop over the process's own socket, the rendered-JSON LRU) costs.
   Target: >= 70% of the bare app's throughput.
2. Uncached GetCandles(500) over HTTP and over gRPC against the same server: the JSON and the hop cost.

The same closed-loop httpx client drives both HTTP servers; its own CPU is shown, since at these rates a
Python client is a large part of what is measured (the ratio is then a lower bound on the gap).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx

from bench.datasets import Datasets
from bench.processes import ServerProcess, _server, wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, whole
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

DATASET = "10m"
PATH = "/api/v1/market/candles/BTCUSDT/1m?limit=500"
REQUEST = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=500)
CONCURRENCY = 32
WARMUP_SECONDS = 1.0
MEASURE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _closed_loop(call: Callable[[], Awaitable[int]]) -> tuple[float, list[float], int]:
    """(calls per second, latencies, bytes of one answer) with CONCURRENCY calls in flight."""
    latencies: list[float] = []
    size = 0
    measuring = False
    deadline = time.perf_counter() + WARMUP_SECONDS

    async def worker() -> None:
        nonlocal size
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            size = await call()
            if measuring:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    measuring = True
    began = time.perf_counter()
    deadline = began + MEASURE_SECONDS
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(latencies) / (time.perf_counter() - began), latencies, size


async def _http_load(base_url: str) -> tuple[float, list[float], int]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def call() -> int:
            response = await client.get(PATH)
            response.raise_for_status()
            return len(response.content)

        return await _closed_loop(call)


async def _grpc_load(target: str) -> tuple[float, list[float], int]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = md_grpc.MarketDataServiceStub(channel)

        async def call() -> int:
            return (await stub.GetCandles(REQUEST, timeout=30)).ByteSize()

        return await _closed_loop(call)


@asynccontextmanager
async def _bare_starlette(body: Path) -> AsyncIterator[ServerProcess]:
    port = _free_port()
    argv = [sys.executable, "-m", "bench.http", "--bare", str(body), "--port", str(port)]
    async with _server("bare starlette", argv, {"PATH": "/usr/bin:/bin"}) as server:
        server.target = f"127.0.0.1:{port}"
        yield server


def _row(table: Table, name: str, qps: float, latencies: list[float], cpu: float, base: float | None) -> None:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    # Server CPU per request: what the server spends whether or not the client keeps up.
    per_request = cpu / 100 / qps if qps else float("nan")
    table.add(
        name,
        whole(qps),
        ms(p50),
        ms(p99),
        f"{cpu:.0f}%",
        ms(per_request),
        f"{ratio(qps, base):.2f}" if base else "1.00",
    )


async def run(data: Datasets) -> SectionResult:
    """Measure, print, return figures."""
    dataset = await data.get(DATASET)
    figures: dict[str, object] = {}
    cached = Table(
        "HTTP GetCandles(500), cached", ["server", "req/s", "p50", "p99", "server CPU", "CPU/req", "vs bare"]
    )
    costs = Table(
        "GetCandles(500), uncached: HTTP vs gRPC", ["path", "calls/s", "p50", "p99", "server CPU", "CPU/req", "vs gRPC"]
    )
    http_port = _free_port()
    env = {"WADM_HTTP": "true", "WADM_HTTP_PORT": str(http_port), "WADM_CACHE": "true"}
    async with wadm_server("wadm cached", dataset.path, env) as server:
        base_url = f"http://127.0.0.1:{http_port}"
        async with httpx.AsyncClient(base_url=base_url) as probe:
            body = (await probe.get(PATH)).content
        with tempfile.TemporaryDirectory() as scratch:
            answer = Path(scratch) / "answer.json"
            answer.write_bytes(body)
            async with _bare_starlette(answer) as bare:
                cpu0 = bare.cpu_seconds()
                bare_qps, bare_lat, _ = await _http_load(f"http://{bare.target}")
                bare_cpu = (bare.cpu_seconds() - cpu0) / (WARMUP_SECONDS + MEASURE_SECONDS) * 100
        cpu0 = server.cpu_seconds()
        gw_qps, gw_lat, size = await _http_load(base_url)
        gw_cpu = (server.cpu_seconds() - cpu0) / (WARMUP_SECONDS + MEASURE_SECONDS) * 100
    _row(cached, "bare Starlette, same bytes", bare_qps, bare_lat, bare_cpu, None)
    _row(cached, "wadm gateway (-> gRPC, cache hit)", gw_qps, gw_lat, gw_cpu, bare_qps)
    cached.notes.append(f"answer {size:,} bytes of JSON; target >= 0.70 of the bare app")
    figures["cached"] = {"bare_qps": bare_qps, "gateway_qps": gw_qps, "ratio": gw_qps / bare_qps, "bytes": size}
    env = {"WADM_HTTP": "true", "WADM_HTTP_PORT": str(http_port), "WADM_CACHE": "false"}
    async with wadm_server("wadm uncached", dataset.path, env) as server:
        cpu0 = server.cpu_seconds()
        grpc_qps, grpc_lat, _ = await _grpc_load(server.target)
        grpc_cpu = (server.cpu_seconds() - cpu0) / (WARMUP_SECONDS + MEASURE_SECONDS) * 100
        cpu0 = server.cpu_seconds()
        http_qps, http_lat, _ = await _http_load(f"http://127.0.0.1:{http_port}")
        http_cpu = (server.cpu_seconds() - cpu0) / (WARMUP_SECONDS + MEASURE_SECONDS) * 100
    _row(costs, "gRPC", grpc_qps, grpc_lat, grpc_cpu, None)
    _row(costs, "HTTP/JSON via the gateway", http_qps, http_lat, http_cpu, grpc_qps)
    figures["uncached"] = {"grpc_qps": grpc_qps, "http_qps": http_qps, "ratio": http_qps / grpc_qps}
    return SectionResult(name="http", tables=[cached, costs], figures=figures)


def _serve_bare(body_path: Path, port: int) -> None:
    """The baseline: Starlette returning fixed JSON bytes, as little work as an ASGI app can do."""
    import json
    import logging

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    body = body_path.read_bytes()

    async def candles(request: Request) -> Response:
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/api/v1/market/candles/{symbol}/{timeframe}", candles)])

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # bench/processes.py waits for a JSON record naming the port, as the product logs it.
            print(json.dumps({"message": "wadm-grpc started", "port": port}), file=sys.stderr, flush=True)

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    logging.basicConfig(level=logging.WARNING)
    Announcing(config).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bare", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    _serve_bare(arguments.bare, arguments.port)
