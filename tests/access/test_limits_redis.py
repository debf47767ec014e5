"""Rate limits through a real Redis: two server processes share one budget; a Redis killed mid-burst costs
no call (limiting goes on in memory) and is used again once back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from redis.asyncio import Redis

from tests.access.support import ROOT, add_key, serve_with
from tests.redis_support import RedisServer
from wadm_grpc.access.limiter import NAMESPACE, FailoverRateLimiter
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

START_TIMEOUT_SECONDS = 60.0


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m wadm_grpc serve` with its log in a file (never a pipe nobody reads), once it serves."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "wadm_grpc", "serve"], env=os.environ | env, stderr=sink, cwd=ROOT
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        for line in log.read_text().splitlines():
            if '"wadm-grpc started"' in line:
                return process, int(json.loads(line)["port"])
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def remaining_of(metadata: object) -> int:
    return int(dict(metadata)["x-ratelimit-remaining"])  # type: ignore[call-overload]


async def test_two_processes_share_one_budget(redis_server: RedisServer, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "shared", "read", "--limit-per-minute", "10")
    common = {
        "WADM_PORT": "0",
        "WADM_REDIS_URL": redis_server.url,
        "WADM_API_KEYS_FILE": str(keys),
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
        "WADM_DRAIN_SECONDS": "0",
        "WADM_HTTP": "false",
    }
    a, port_a = start_server(common | {"WADM_STORE": f"duckdb:{tmp_path / 'a.duckdb'}"}, tmp_path / "a.log")
    b, port_b = start_server(common | {"WADM_STORE": f"duckdb:{tmp_path / 'b.duckdb'}"}, tmp_path / "b.log")
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port_a}") as on_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{port_b}") as on_b,
        ):
            stubs = [md_grpc.MarketDataServiceStub(on_a), md_grpc.MarketDataServiceStub(on_b)]
            auth = (("x-api-key", key),)
            seen = []
            for index in range(10):
                call = stubs[index % 2].ListSymbols(md.ListSymbolsRequest(), metadata=auth)
                await call
                seen.append(remaining_of(await call.trailing_metadata()))
            assert seen == list(range(9, -1, -1))  # one budget, whichever process answers
            for stub in stubs:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListSymbols(md.ListSymbolsRequest(), metadata=auth)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        assert stop(a) == 0
        assert stop(b) == 0


async def _counted_in_redis(url: str) -> int:
    client = Redis.from_url(url)
    try:
        total = 0
        async for name in client.scan_iter(match=f"*{NAMESPACE}*"):
            total += int(await client.get(name) or 0)
        return total
    finally:
        await client.aclose()


async def test_killing_redis_mid_burst_limits_in_memory_then_uses_redis_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "burst", "read", "--limit-per-minute", "80")
    settings = {"redis_url": redis_server.url, "redis_probe_seconds": 0.2, "api_keys_file": str(keys)}
    async with serve_with(tmp_path, **settings) as served:
        limiter = served.app.access.limiter
        assert isinstance(limiter, FailoverRateLimiter)
        stub = md_grpc.MarketDataServiceStub(served.channel)
        auth = (("x-api-key", key),)
        codes: list[grpc.StatusCode] = []

        async def call() -> grpc.StatusCode:
            try:
                await stub.ListSymbols(md.ListSymbolsRequest(), metadata=auth, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                code = error.code()
            codes.append(code)
            return code

        for _ in range(20):
            assert await call() == grpc.StatusCode.OK
        assert await _counted_in_redis(redis_server.url) == 20

        # A burst of 8 concurrent callers; Redis is killed while their calls are in flight.
        refused = asyncio.Event()
        in_flight = asyncio.Event()

        async def caller() -> None:
            while not refused.is_set():
                if await call() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused.set()
                if len(codes) >= 40:
                    in_flight.set()

        burst = [asyncio.create_task(caller()) for _ in range(8)]
        async with asyncio.timeout(30):
            await in_flight.wait()
            redis_server.kill()
            await asyncio.gather(*burst)
        # Limiting went on in memory: 80 more there (with the calls Redis counted before it died), then refusals.
        accepted = codes.count(grpc.StatusCode.OK)
        assert 80 + 20 <= accepted <= 80 + 40 + 8
        assert limiter.using_fallback and limiter.failures >= 1

        redis_server.restart()  # empty: the Redis budget is full again once the limiter probes it
        async with asyncio.timeout(30):
            while await call() != grpc.StatusCode.OK:  # the first call after the probe interval tries Redis
                pass
        assert await _counted_in_redis(redis_server.url) >= 1
        assert not limiter.using_fallback
        assert grpc.StatusCode.INTERNAL not in codes and grpc.StatusCode.UNKNOWN not in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
