"""Redis for real: a Redis outage costs no request, trades cross processes, workers share a port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import Running
from tests.redis_support import RedisServer
from tests.support import UM_TRADES, make_trades
from wadm_client import RawWadmClient, make_trade
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.stores.duckdb import DuckDBTradeStore

NOW = 1_723_161_600_000_000


async def cache_stats(client: RawWadmClient) -> admin_pb.GetCacheStatsResponse:
    return await admin_grpc.AdminServiceStub(client.channel).GetCacheStats(admin_pb.GetCacheStatsRequest())


@pytest.fixture
async def redis_served(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Running]:
    """An in-process server wired by bootstrap to the real Redis (cache and bus), probing every 0.2 s."""
    settings = Settings(redis_url=redis_server.url, redis_probe_seconds=0.2, page_token_key=b"k")
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    app = await bootstrap(settings, store=store, clock=ManualClock(NOW))
    server = await start_grpc(app, "127.0.0.1:0")
    client = RawWadmClient.connect(f"127.0.0.1:{server.port}")
    try:
        yield Running(app=app, server=server, client=client, bus=app.bus)  # type: ignore[arg-type]
    finally:
        await client.close()
        await server.stop(0)
        await app.close()


async def test_killing_redis_fails_no_request_and_redis_is_used_again(
    redis_served: Running, redis_server: RedisServer
) -> None:
    await redis_served.app.ingest.store_trades(
        make_trades(seed=71, count=200, start_us=NOW - 200_000_000, spacing_us=1_000_000)
    )
    client = redis_served.client
    failures = 0

    async def ask(index: int) -> None:
        nonlocal failures
        try:
            answer = await client.get_candles("BTCUSDT", "1m", limit=1 + index % 7)  # some hits, some misses
            assert answer.candles
        except grpc.aio.AioRpcError:
            failures += 1

    for index in range(60):
        await ask(index)
    assert (await cache_stats(client)).tiers[0].hits > 0  # Redis serves

    redis_server.kill()
    for index in range(60, 200):
        await ask(index)
    during = await cache_stats(client)
    assert during.breaker_open
    assert during.fallbacks > 0

    redis_server.restart()
    redis_hits = during.tiers[0].hits
    async with asyncio.timeout(30):
        index = 200
        while (stats := await cache_stats(client)).tiers[0].hits <= redis_hits or stats.breaker_open:
            await ask(index)
            index += 1

    assert failures == 0
    assert stats.tiers[0].name == "redis"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_server(env: dict[str, str], *, expect: int = 1) -> tuple[asyncio.subprocess.Process, list[int]]:
    """`python -m wadm_grpc serve`, returning once `expect` servers logged that they serve (their ports)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wadm_grpc", "serve", env=os.environ | env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    ports: list[int] = []
    async with asyncio.timeout(60):
        while len(ports) < expect:
            line = await process.stderr.readline()
            assert line, "server exited before serving"
            record = json.loads(line)
            if record["message"] == "wadm-grpc started":
                ports.append(record["port"])
    return process, ports


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        return await process.wait()


async def test_a_trade_published_to_one_process_streams_from_another(redis_server: RedisServer, tmp_path: Path) -> None:
    common = {
        "WADM_PORT": "0",
        "WADM_REDIS_URL": redis_server.url,
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
    }
    a, (port_a,) = await start_server(common | {"WADM_STORE": f"duckdb:{tmp_path / 'a.duckdb'}"})
    b, (port_b,) = await start_server(common | {"WADM_STORE": f"duckdb:{tmp_path / 'b.duckdb'}"})
    try:
        async with (
            RawWadmClient.connect(f"127.0.0.1:{port_a}") as on_a,
            RawWadmClient.connect(f"127.0.0.1:{port_b}") as on_b,
        ):
            streams = []
            for client in (on_a, on_b):
                request = md.StreamTradesRequest(symbols=["ETHUSDT"])
                request.heartbeat_interval.FromSeconds(1)
                stream = client.market.StreamTrades(request)
                assert (await stream.read()).WhichOneof("event") == "heartbeat"  # subscribed and idle
                streams.append(stream)
            trades = [
                make_trade(
                    exchange="okx",
                    symbol="ETHUSDT",
                    trade_id=i,
                    price="2683.80",
                    quantity="0.5",
                    side="buy",
                    time=NOW + i,
                )
                for i in range(3)
            ]

            response = await on_a.publish_trades([trades])

            assert response.accepted_count == 3
            for stream in streams:  # the publisher's own subscriber and the other process's, once each
                got: list[str] = []
                async with asyncio.timeout(30):
                    while len(got) < 3:
                        event = await stream.read()
                        got += [t.trade_id for t in event.trades.trades]
                assert got == ["0", "1", "2"]
                stream.cancel()
    finally:
        assert await stop(a) == 0
        assert await stop(b) == 0


async def test_workers_share_one_port_and_stop_together(redis_server: RedisServer, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot.duckdb"
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wadm_grpc",
        "import",
        "--direct",
        "--exchange",
        "binance",
        str(UM_TRADES),
        env=os.environ | {"WADM_STORE": f"duckdb:{snapshot}"},
    )
    assert await load.wait() == 0
    port = free_port()
    env = {
        "WADM_PORT": str(port),
        "WADM_STORE": f"duckdb:{snapshot}",
        "WADM_READ_ONLY": "true",
        "WADM_WORKERS": "2",
        "WADM_REDIS_URL": redis_server.url,
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
    }
    parent, ports = await start_server(env, expect=2)
    try:
        assert ports == [port, port]
        pids: set[int] = set()
        for _ in range(64):  # new connections are spread over the workers by the kernel
            async with RawWadmClient.connect(f"127.0.0.1:{port}") as client:
                pids.add((await cache_stats(client)).process_id)
                candles = await client.get_candles("BTCUSDT", "1m", start=1_723_161_300_000_000, limit=1)
                assert candles.candles[0].close == "61760.30"
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert parent.pid not in pids
    finally:
        assert await stop(parent) == 0


async def test_workers_refuse_the_read_write_embedded_store(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wadm_grpc",
        "serve",
        "--workers",
        "2",
        env=os.environ | {"WADM_STORE": f"duckdb:{tmp_path / 'x.duckdb'}", "WADM_REDIS_URL": "redis://127.0.0.1:1"},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 2
    assert "WADM_WORKERS=2 needs a store several processes can share" in err.decode()
