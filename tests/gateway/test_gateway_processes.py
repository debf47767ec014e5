"""The gateway as processes: `serve` runs HTTP beside gRPC; `gateway --target` runs alone in front of a server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Running
from tests.gateway.conftest import Gatewayed


@asynccontextmanager
async def process_logging(
    argv: list[str], env: Mapping[str, str], ready: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """`python -m wadm_grpc ARGV` with JSON logs; yields it and its log record whose message is `ready`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wadm_grpc", *argv, env=os.environ | dict(env), stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    record: dict[str, Any] = {}
    try:
        async with asyncio.timeout(60):
            while record.get("message") != ready:
                line = await process.stderr.readline()
                assert line, "the process exited before it was ready"
                record = json.loads(line)
        yield process, record
    finally:
        if process.returncode is None:
            process.kill()
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
