"""Server lifecycle: health follows it, SIGTERM drains gracefully, live streams end with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import Running
from wadm_client import WadmClient
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_turns_not_serving_when_shutdown_starts(served: Running) -> None:
    health = health_pb2_grpc.HealthStub(served.client.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="wadm.market.v1.MarketDataService"))
    assert (await watch.read()).status == SERVING

    await served.server.start_draining()

    assert (await watch.read()).status == NOT_SERVING
    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert check.status == NOT_SERVING
    watch.cancel()


async def test_open_streams_end_with_unavailable_on_shutdown(served: Running) -> None:
    stream = served.client.market.StreamTrades(md.StreamTradesRequest(symbols=["BTCUSDT"]))
    await wait_for_subscribers(served, 1)

    await served.app.bus.close()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def wait_for_subscribers(served: Running, count: int) -> None:
    async with asyncio.timeout(10):
        await served.bus.wait_for_subscribers(count)


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`python -m wadm_grpc serve` on a free port; yields the process and its address."""
    env = os.environ | {
        "WADM_PORT": "0",
        "WADM_STORE": f"duckdb:{tmp_path / 'wadm.duckdb'}",
        "WADM_DEMO_FEED": "false",
        "WADM_GRACE_SECONDS": "2",
        "WADM_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wadm_grpc", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    port = None
    async with asyncio.timeout(60):
        while port is None:
            line = await process.stderr.readline()
            assert line, "server exited before serving"
            record = json.loads(line)
            if record["message"] == "wadm-grpc started":
                port = record["port"]
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_drains_and_exits_cleanly(server_process: tuple[asyncio.subprocess.Process, str]) -> None:
    process, target = server_process
    async with WadmClient.connect(target) as client:
        health = health_pb2_grpc.HealthStub(client.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING
        stream = client.market.StreamTrades(md.StreamTradesRequest(symbols=["BTCUSDT"]))
        await client.list_symbols()  # the server is answering

        process.send_signal(signal.SIGTERM)

        assert (await watch.read()).status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream.read()
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        async with asyncio.timeout(30):
            assert await process.wait() == 0


async def test_a_port_in_use_is_one_clear_line_not_a_traceback(
    server_process: tuple[asyncio.subprocess.Process, str], tmp_path: Path
) -> None:
    _, target = server_process
    port = target.rsplit(":", 1)[1]
    env = os.environ | {"WADM_PORT": port, "WADM_STORE": f"duckdb:{tmp_path / 'second.duckdb'}"}
    second = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wadm_grpc", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(second.communicate(), 60)

    assert second.returncode == 1
    assert "error: cannot serve: RuntimeError: Failed to bind" in err.decode()
    assert "Traceback" not in err.decode()
