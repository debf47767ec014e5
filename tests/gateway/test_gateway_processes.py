"""The gateway as processes: `serve` runs HTTP beside gRPC; `gateway --target` runs alone in front of a server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.api.test_redis_processes import free_port
from tests.conftest import Running
from tests.gateway.conftest import Gatewayed
from tests.redis_support import RedisServer
from tests.support import AFTER_DATA_US, make_trades
from wadm_grpc.stores.duckdb import DuckDBTradeStore


@asynccontextmanager
async def process_logging(
    argv: list[str], env: Mapping[str, str], ready: str, *, count: int = 1
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """`python -m wadm_grpc ARGV` with JSON logs; yields it once `count` log records say `ready` (workers:
    one each), with the last of them."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wadm_grpc",
        *argv,
        env=os.environ | dict(env),
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so a failed test also stops the workers it forked
    )
    assert process.stderr is not None
    record: dict[str, Any] = {}
    seen = 0
    try:
        async with asyncio.timeout(60):
            while seen < count:
                line = await process.stderr.readline()
                assert line, "the process exited before it was ready"
                record = json.loads(line)
                seen += record.get("message") == ready
        yield process, record
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def test_serve_runs_http_beside_grpc_and_logs_both_addresses(tmp_path: Path) -> None:
    env = {
        "WADM_PORT": "0",
        "WADM_HTTP": "true",
        "WADM_HTTP_PORT": "0",
        "WADM_STORE": f"duckdb:{tmp_path / 'wadm.duckdb'}",
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "2",
    }
    async with process_logging(["serve"], env, "wadm-grpc started") as (process, started):
        assert started["port"] > 0
        assert started["http"].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=started["http"], timeout=30) as client:
            symbols = await client.get("/api/v1/market/symbols")
            ready = await client.get("/readyz")
            async with client.stream("GET", "/api/v1/market/trades:stream?symbols=BTCUSDT") as stream:
                assert stream.status_code == 200
                process.send_signal(signal.SIGTERM)
                # Shutdown ends the stream with its last line, then the process exits cleanly.
                last = [line async for line in stream.aiter_lines() if line][-1]
        assert await process.wait() == 0

    assert (symbols.status_code, symbols.json()) == (200, {"symbols": []})
    assert ready.json() == {"status": "SERVING"}
    assert json.loads(last)["error"]["code"] == 14


async def test_serve_without_http(tmp_path: Path) -> None:
    env = {"WADM_PORT": "0", "WADM_HTTP": "false", "WADM_STORE": f"duckdb:{tmp_path / 'w.duckdb'}"}
    async with process_logging(["serve"], env | {"WADM_LOG_FORMAT": "json"}, "wadm-grpc started") as (_, started):
        assert started["http"] is None


async def test_gateway_command_in_front_of_a_separately_started_server(gateway: Gatewayed) -> None:
    served: Running = gateway.served
    argv = ["gateway", "--target", served.target, "--port", "0"]
    async with process_logging(argv, {"WADM_LOG_FORMAT": "json"}, "wadm-grpc gateway started") as (process, started):
        assert started["target"] == served.target
        async with httpx.AsyncClient(base_url=started["http"], timeout=30) as client:
            remote = await client.get("/api/v1/market/candles/BTCUSDT/1m?limit=2")
            missing = await client.get("/api/v1/market/stats/NOPE")
        local = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1m?limit=2")
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0

    assert remote.status_code == 200
    assert remote.json() == local.json()  # the same code in front of the same server
    assert missing.status_code == 404


async def test_every_worker_serves_http_on_the_shared_port(tmp_path: Path, redis_server: RedisServer) -> None:
    snapshot = tmp_path / "snapshot.duckdb"
    store = DuckDBTradeStore(snapshot)
    await store.insert_trades(make_trades(seed=3, count=20, start_us=AFTER_DATA_US, spacing_us=1000))
    await store.close()
    http_port = free_port()
    env = {
        "WADM_PORT": str(free_port()),
        "WADM_HTTP": "true",
        "WADM_HTTP_PORT": str(http_port),
        "WADM_STORE": f"duckdb:{snapshot}",
        "WADM_READ_ONLY": "true",
        "WADM_WORKERS": "2",
        "WADM_REDIS_URL": redis_server.url,
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
    }
    async with process_logging(["serve"], env, "wadm-grpc started", count=2) as (process, _):
        pids: set[str] = set()
        for _ in range(64):  # each new connection lands on a worker the kernel picks
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
                # Each worker's gateway forwards to its own gRPC server (its own socket), so the process
                # that answers is the one that took the HTTP connection.
                response = await client.get("/api/v1/admin/cache")
                assert response.status_code == 200
                pids.add(response.json()["process_id"])
            if len(pids) == 2:
                break
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0

    assert len(pids) == 2
