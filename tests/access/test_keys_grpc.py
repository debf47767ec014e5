"""Keys and scopes over gRPC: the CLI's key lifecycle without restart, and the scope of every RPC."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.access.support import add_key, keys_cli, serve_with
from wadm_grpc.access.methods import method_policies
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

EVERY_METHOD = sorted(method_policies().items())
OTHER_SCOPES = {"read": "stream", "stream": "read", "ingest": "read", "admin": "read,stream,ingest"}


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


async def call_raw(channel: grpc.aio.Channel, path: str, key: str | None) -> grpc.StatusCode:
    """The status of one call of `path` with an empty request (or an empty request stream)."""
    metadata = (("x-api-key", key),) if key else ()
    name = path.rsplit("/", 1)[-1]
    try:
        if name in ("SubscribeTrades",):
            call = channel.stream_stream(path)(_empty(), metadata=metadata, timeout=10)
            async for _ in call:
                pass
            return await call.code()
        if name == "PublishTrades":
            await channel.stream_unary(path)(_empty(), metadata=metadata, timeout=10)
        elif name == "StreamTrades":
            stream = channel.unary_stream(path)(b"", metadata=metadata, timeout=10)
            async for _ in stream:
                pass
        else:
            await channel.unary_unary(path)(b"", metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_key_lifecycle_add_use_revoke_without_restart(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "desk", "read")
    stored = keys.read_text()
    assert key.startswith("wadm_") and key not in stored  # hashes only
    assert json.loads(stored)["keys"][0]["name"] == "desk"
    assert os.stat(keys).st_mode & 0o077 == 0
    listed = keys_cli("list", "--file", str(keys))
    assert listed.returncode == 0 and "desk" in listed.stdout and "read" in listed.stdout and key not in listed.stdout

    async with serve_with(tmp_path, api_keys_file=str(keys)) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        request = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=2)
        answer = await stub.GetCandles(request, metadata=(("x-api-key", key),))
        assert len(answer.candles) == 2
        answer = await stub.GetCandles(request, metadata=(("authorization", f"Bearer {key}"),))
        assert len(answer.candles) == 2
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetCandles(request)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.GetCandles(request, metadata=(("x-api-key", key + "x"),))
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED

        second = add_key(keys, "desk2", "read")  # added while serving: usable at once
        assert len((await stub.GetCandles(request, metadata=(("x-api-key", second),))).candles) == 2
        revoked = keys_cli("revoke", "desk", "--file", str(keys))
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetCandles(request, metadata=(("x-api-key", key),))
        assert gone.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (gone.value.details() or "")
        assert len((await stub.GetCandles(request, metadata=(("x-api-key", second),))).candles) == 2


def test_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    bad = keys_cli("add", "x", "--scopes", "read,root", "--file", str(keys))
    assert bad.returncode == 2 and "scopes must be" in bad.stderr and "Traceback" not in bad.stderr
    add_key(keys, "x", "read")
    again = keys_cli("add", "x", "--scopes", "read", "--file", str(keys))
    assert again.returncode == 2 and "exists" in again.stderr
    missing = keys_cli("revoke", "nobody", "--file", str(keys))
    assert missing.returncode == 2 and "no key named" in missing.stderr


@pytest.mark.parametrize(("path", "policy"), EVERY_METHOD, ids=[path for path, _ in EVERY_METHOD])
async def test_every_rpc_needs_its_scope(tmp_path: Path, path: str, policy: object) -> None:
    scope = getattr(policy, "scope")  # noqa: B009
    keys = tmp_path / "keys.json"
    allowed = add_key(keys, "allowed", scope)
    others = add_key(keys, "others", OTHER_SCOPES[scope])
    async with serve_with(tmp_path, api_keys_file=str(keys)) as served:
        assert await call_raw(served.channel, path, None) == grpc.StatusCode.UNAUTHENTICATED
        assert await call_raw(served.channel, path, others) == grpc.StatusCode.PERMISSION_DENIED
        admitted = await call_raw(served.channel, path, allowed)
        assert admitted not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


async def test_health_and_reflection_stay_open(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    add_key(keys, "desk", "read")
    async with serve_with(tmp_path, api_keys_file=str(keys)) as served:
        health = health_pb2_grpc.HealthStub(served.channel)
        answer = await health.Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    async with serve_with(tmp_path / "closed", api_keys_file=str(keys), auth_open_services=()) as served:
        with pytest.raises(grpc.aio.AioRpcError) as closed:
            await health_pb2_grpc.HealthStub(served.channel).Check(health_pb2.HealthCheckRequest())
        assert closed.value.code() == grpc.StatusCode.UNAUTHENTICATED
