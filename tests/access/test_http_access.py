"""Keys, scopes and limits on the HTTP face: the gateway maps the server's verdicts (401, 403, 429) and
copies X-RateLimit-* to headers; the WebSocket takes a key header or a first auth frame."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.access.support import add_key, keys_cli, serve_with
from wadm_grpc.access.methods import method_policies
from wadm_grpc.api.http.routes import build_routes
from wadm_grpc.api.http.server import start_http

ORIGIN = "https://desk.example"
ROUTES = [(route.http_method, route.template.text, route.grpc_path) for route in build_routes()]
SCOPES = {path: policy.scope for path, policy in method_policies().items()}
OTHER_SCOPES = {"read": "stream", "stream": "read", "ingest": "read", "admin": "read,stream,ingest"}
SOCKET = "/api/v1/market/ws/trades"
# Queries that make a route's valid path a 400, for streams that would otherwise stay open.
INVALID = {"/api/v1/market/candles/{symbol}/{timeframe}:stream": {"update_interval": "0s"}}


def url_of(template: str) -> str:
    return template.replace("{symbol}", "BTCUSDT").replace("{timeframe}", "1m")


@asynccontextmanager
async def gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    async with serve_with(tmp_path, **settings) as served:
        http = await start_http(target=served.target, host="127.0.0.1", port=0, cors_origins=(ORIGIN,))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as client:
                yield client, http.port
        finally:
            await http.stop(0)


async def test_401_403_and_a_revoked_key_over_http(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    reader = add_key(keys, "reader", "read")
    async with gateway(tmp_path, api_keys_file=str(keys)) as (client, _):
        missing = await client.get("/api/v1/market/symbols")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["code"] == 16  # google.rpc.Status JSON
        ok = await client.get("/api/v1/market/symbols", headers={"X-API-Key": reader})
        assert ok.status_code == 200 and ok.json()["symbols"]
        assert ok.headers["x-ratelimit-limit"] == "1200"
        assert int(ok.headers["x-ratelimit-remaining"]) < 1200
        assert "x-ratelimit-reset" in ok.headers
        bearer = await client.get("/api/v1/market/symbols", headers={"Authorization": f"Bearer {reader}"})
        assert bearer.status_code == 200
        denied = await client.get("/api/v1/admin/cache", headers={"X-API-Key": reader})
        assert denied.status_code == 403 and denied.json()["code"] == 7
        assert keys_cli("revoke", "reader", "--file", str(keys)).returncode == 0
        gone = await client.get("/api/v1/market/symbols", headers={"X-API-Key": reader})
        assert gone.status_code == 401


async def test_over_the_limit_is_429_with_retry_after_and_cors_exposes_the_headers(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "small", "read", "--limit-per-minute", "2")
    async with gateway(tmp_path, api_keys_file=str(keys)) as (client, _):
        headers = {"X-API-Key": key, "Origin": ORIGIN}
        for remaining in ("1", "0"):
            answer = await client.get("/api/v1/market/candles/BTCUSDT/1m?limit=2", headers=headers)
            assert answer.status_code == 200
            assert answer.headers["x-ratelimit-remaining"] == remaining
        exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} <= exposed
        refused = await client.get("/api/v1/market/candles/BTCUSDT/1m?limit=2", headers=headers)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"
        body = refused.json()
        assert body["code"] == 8
        assert any(d["@type"].endswith("QuotaFailure") for d in body["details"])


@pytest.mark.parametrize(("method", "template", "rpc"), ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES])
async def test_every_route_needs_its_rpcs_scope(tmp_path: Path, method: str, template: str, rpc: str) -> None:
    scope = SCOPES[rpc]
    keys = tmp_path / "keys.json"
    allowed = add_key(keys, "allowed", scope)
    others = add_key(keys, "others", OTHER_SCOPES[scope])
    async with gateway(tmp_path, api_keys_file=str(keys)) as (client, _):
        url = url_of(template)
        assert (await client.request(method, url)).status_code == 401
        assert (await client.request(method, url, headers={"X-API-Key": others})).status_code == 403
        # Admitted, the call reaches validation (a stream without symbols is a 400, not left open).
        admitted = await client.request(method, url, headers={"X-API-Key": allowed}, params=INVALID.get(template))
        assert admitted.status_code not in (401, 403), admitted.text


async def _subscribed(port: int, first: dict[str, Any] | None, headers: dict[str, str] | None = None) -> str:
    """What the socket answers a subscribe (after `first`, if any): the frame type, or the close code."""
    async with connect(f"ws://127.0.0.1:{port}{SOCKET}", additional_headers=headers) as socket:
        if first is not None:
            await socket.send(json.dumps(first))
        await socket.send(json.dumps({"op": "subscribe", "symbols": ["BTCUSDT"]}))
        try:
            while True:
                frame = json.loads(await socket.recv())
                if frame["type"] != "heartbeat":
                    return str(frame["type"])
        except ConnectionClosed as closed:
            return f"closed {closed.rcvd.code if closed.rcvd is not None else None}"


async def test_the_websocket_takes_an_auth_frame_or_a_header(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    streamer = add_key(keys, "streamer", "stream")
    reader = add_key(keys, "reader", "read")
    async with gateway(tmp_path, api_keys_file=str(keys)) as (_, port):
        assert await _subscribed(port, {"op": "auth", "key": streamer}) == "subscribed"
        assert await _subscribed(port, None, {"X-API-Key": streamer}) == "subscribed"
        assert await _subscribed(port, None) == "closed 1008"
        assert await _subscribed(port, {"op": "auth", "key": "wadm_nope"}) == "closed 1008"
        assert await _subscribed(port, {"op": "auth", "key": reader}) == "closed 1008"  # no stream scope
        assert await _subscribed(port, {"op": "auth"}) == "closed 1008"


async def test_auth_off_answers_as_before_without_rate_limit_headers(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (client, port):
        answer = await client.get("/api/v1/market/symbols")
        assert answer.status_code == 200 and "x-ratelimit-limit" not in answer.headers
        assert await _subscribed(port, None) == "subscribed"


async def test_anonymous_http_clients_are_limited_by_the_address_the_local_gateway_saw(tmp_path: Path) -> None:
    from wadm_grpc.bootstrap import bootstrap, gateway_socket, start_grpc
    from wadm_grpc.config import Settings
    from wadm_grpc.stores.duckdb import DuckDBTradeStore

    app = await bootstrap(
        Settings(page_token_key=b"k", rate_limit_per_minute=2), store=DuckDBTradeStore(tmp_path / "d")
    )
    local = gateway_socket()
    server = await start_grpc(app, "127.0.0.1:0", local_addresses=(local,))
    http = await start_http(target=local, host="127.0.0.1", port=0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as client:
            for spoofed in ("10.0.0.1", "10.0.0.2"):
                answer = await client.get("/api/v1/market/symbols", headers={"X-Forwarded-For": spoofed})
                assert answer.status_code == 200
            refused = await client.get("/api/v1/market/symbols", headers={"X-Forwarded-For": "10.0.0.3"})
            assert refused.status_code == 429
            quota = next(d for d in refused.json()["details"] if d["@type"].endswith("QuotaFailure"))
            assert quota["violations"][0]["subject"] == "ip:127.0.0.1"  # the gateway's peer, not the header
    finally:
        await http.stop(0)
        await server.stop(0)
        await app.close()
