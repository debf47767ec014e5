"""Every route over real HTTP against the real server: the same answers as gRPC, as canonical JSON."""

from __future__ import annotations

import asyncio
import json

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from tests.gateway.conftest import CORS_ORIGIN, Gatewayed
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

START_MS = "1723161300000"  # 2024-08-08T23:55:00Z, inside the stored Binance trades


def canonical(message: Message) -> object:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def get_json(gateway: Gatewayed, url: str) -> object:
    response = await gateway.client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_candles_as_grpcurl_prints_them_two_by_the_readme_command(gateway: Gatewayed) -> None:
    body = await get_json(gateway, "/api/v1/market/candles/BTCUSDT/1m?limit=2")
    over_grpc = await gateway.served.client.market.GetCandles(
        md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=2)
    )

    assert body == canonical(over_grpc)
    assert isinstance(body, dict)
    assert len(body["candles"]) == 2
    candle = body["candles"][0]
    assert isinstance(candle["open"], str) and isinstance(candle["trade_count"], str)  # decimals, int64: strings
    assert candle["closed"] is True


@pytest.mark.parametrize(
    ("url", "rpc", "request_message"),
    [
        (
            f"/api/v1/market/candles/BTCUSDT/TIMEFRAME_5M?start_time={START_MS}&limit=3&exchanges=binance",
            "GetCandles",
            md.GetCandlesRequest(
                symbol="BTCUSDT",
                timeframe=md.TIMEFRAME_5M,
                start_time={"seconds": 1723161300},
                limit=3,
                exchanges=["binance"],
            ),
        ),
        ("/api/v1/market/symbols", "ListSymbols", md.ListSymbolsRequest()),
        (
            "/api/v1/market/stats/btcusdt?window=1h",
            "GetMarketStats",
            md.GetMarketStatsRequest(symbol="btcusdt", window=md.STATS_WINDOW_1H),
        ),
        (
            "/api/v1/market/stats:multi?symbols=BTCUSDT,ETHUSDT",
            "GetMultiStats",
            md.GetMultiStatsRequest(symbols=["BTCUSDT", "ETHUSDT"]),
        ),
        (
            "/api/v1/market/stats/multi?symbols=BTCUSDT&symbols=ETHUSDT&exchange=binance",
            "GetMultiStats",
            md.GetMultiStatsRequest(symbols=["BTCUSDT", "ETHUSDT"], exchanges=["binance"]),
        ),
        ("/api/v1/market/orderbook/BTCUSDT?depth=3", "GetOrderbook", md.GetOrderbookRequest(symbol="BTCUSDT", depth=3)),
        (
            "/api/v1/market/trades/BTCUSDT?page_size=2",
            "ListTrades",
            md.ListTradesRequest(symbol="BTCUSDT", page_size=2),
        ),
    ],
)
async def test_every_unary_route_answers_what_grpc_answers(
    gateway: Gatewayed, url: str, rpc: str, request_message: Message
) -> None:
    body = await get_json(gateway, url)
    over_grpc = await getattr(gateway.served.client.market, rpc)(request_message)

    expected = canonical(over_grpc)
    if rpc == "GetMultiStats":  # the window ends at the clock: it stands still in tests, so equal too
        assert isinstance(body, dict) and [r["symbol"] for r in body["results"]] == ["BTCUSDT", "ETHUSDT"]
        assert "no_trades" in body["results"][1]
    assert body == expected


async def test_the_admin_route(gateway: Gatewayed) -> None:
    body = await get_json(gateway, "/api/v1/admin/cache")

    assert isinstance(body, dict) and body["enabled"] is True
    assert set(body) == set(canonical(admin_pb.GetCacheStatsResponse()))


async def test_pretty_indents_the_same_document(gateway: Gatewayed) -> None:
    compact = await gateway.client.get("/api/v1/market/symbols")
    pretty = await gateway.client.get("/api/v1/market/symbols?pretty")

    assert pretty.text.startswith('{\n  "symbols": [')
    assert json.loads(pretty.text) == json.loads(compact.text)
    assert pretty.headers["etag"] != compact.headers["etag"]


async def test_a_cached_answer_has_an_etag_its_ttl_as_max_age_and_revalidates_with_304(gateway: Gatewayed) -> None:
    url = f"/api/v1/market/candles/BTCUSDT/1m?start_time={START_MS}&limit=3"
    first = await gateway.client.get(url)
    again = await gateway.client.get(url, headers={"If-None-Match": first.headers["etag"]})
    other = await gateway.client.get(url, headers={"If-None-Match": '"something-else"'})

    # Closed candles only: the closed-candle TTL (an hour) from the server's trailing metadata.
    assert first.headers["cache-control"] == "max-age=3600"
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", first.headers["etag"])
    assert again.headers["cache-control"] == "max-age=3600"
    assert (other.status_code, other.content) == (200, first.content)
    stats = await gateway.client.get("/api/v1/market/stats/BTCUSDT")
    assert stats.headers["cache-control"] == "max-age=30"
    uncached = await gateway.client.get("/api/v1/market/trades/BTCUSDT?page_size=1")
    assert uncached.headers["cache-control"] == "no-cache"
    assert uncached.headers["etag"].startswith('"')


async def test_a_cached_answer_is_rendered_once(gateway: Gatewayed) -> None:
    renderer = gateway.http.server.config.app.state.gateway.renderer  # type: ignore[attr-defined]
    url = "/api/v1/market/candles/BTCUSDT/1m?limit=5"
    before = renderer.misses
    bodies = {(await gateway.client.get(url)).content for _ in range(5)}

    assert len(bodies) == 1
    assert renderer.misses == before + 1


async def test_head_answers_headers_only(gateway: Gatewayed) -> None:
    response = await gateway.client.head("/api/v1/market/symbols")
    full = await gateway.client.get("/api/v1/market/symbols")

    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == str(len(full.content))
    assert response.headers["etag"] == full.headers["etag"]


async def test_cors_preflight_and_exposed_headers(gateway: Gatewayed) -> None:
    preflight = await gateway.client.options(
        "/api/v1/market/symbols",
        headers={
            "Origin": CORS_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    simple = await gateway.client.get("/api/v1/market/symbols", headers={"Origin": CORS_ORIGIN})
    stranger = await gateway.client.get("/api/v1/market/symbols", headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "ETag" in simple.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in stranger.headers


async def test_liveness_and_readiness_follow_the_grpc_health_service(gateway: Gatewayed) -> None:
    for path in ("/healthz", "/api/v1/system/health", "/readyz"):
        assert (await gateway.client.get(path)).json() == {"status": "SERVING"}

    await gateway.served.server.start_draining()
    draining = await gateway.client.get("/readyz")
    alive = await gateway.client.get("/healthz")

    assert draining.status_code == 503
    assert draining.json()["code"] == 14
    assert "NOT_SERVING" in draining.json()["message"]
    assert alive.status_code == 200


async def test_client_headers_reach_the_server_as_metadata(gateway: Gatewayed) -> None:
    from wadm_grpc.api.http.forward import forwarded_metadata

    metadata = dict(
        forwarded_metadata(
            (
                {
                    "authorization": "Bearer t",
                    "grpc-metadata-tenant": "desk-1",
                    "x-forwarded-for": "10.0.0.1",
                    "host": "api.example",
                    "cookie": "secret",
                    "grpc-metadata-grpc-timeout": "1S",
                    "x-api-key": "é",
                }
            ),
            "127.0.0.1",
        )
    )

    assert metadata == {
        "authorization": "Bearer t",
        "tenant": "desk-1",
        "x-forwarded-for": "10.0.0.1, 127.0.0.1",
        "x-forwarded-host": "api.example",
        "x-wadm-face": "http",
    }
    # And a real request with them is accepted by the gRPC server.
    response = await gateway.client.get("/api/v1/market/symbols", headers={"Grpc-Metadata-Tenant": "desk-1"})
    assert response.status_code == 200


async def test_concurrent_requests_share_the_channel(gateway: Gatewayed) -> None:
    urls = [f"/api/v1/market/candles/BTCUSDT/1m?limit={n}" for n in range(1, 9)]
    responses = await asyncio.gather(*(gateway.client.get(url) for url in urls))

    # The trades span six minutes, 23:54 to 23:59.
    assert [len(r.json()["candles"]) for r in responses] == [1, 2, 3, 4, 5, 6, 6, 6]
