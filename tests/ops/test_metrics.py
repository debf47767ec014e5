"""/metrics after real calls on both faces: go-grpc-prometheus names and labels, HTTP routes, the rest."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.api.test_redis_processes import free_port
from tests.gateway.test_gateway_processes import process_logging
from tests.ops.conftest import Service, serving
from tests.redis_support import RedisServer
from tests.support import AFTER_DATA_US, make_trades
from wadm_client import make_trade
from wadm_grpc.api.grpc.convert import RenderStats
from wadm_grpc.bootstrap import metrics_scraper, start_metrics_port
from wadm_grpc.config import Settings
from wadm_grpc.metrics.policy import PrometheusPolicyEvents
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.services.streaming import StreamStats
from wadm_grpc.stores.duckdb import DuckDBTradeStore

MARKET = "wadm.market.v1.MarketDataService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name{labels}`, 0 when absent (Prometheus' reading of a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def grpc_labels(method: str, face: str, kind: str = "unary", service: str = MARKET) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": service, "grpc_method": method, "face": face}


async def scrape(service: Service) -> Samples:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=20) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


async def test_scrape_counts_calls_by_rpc_face_code_and_route(tmp_path: Path, short_dir: Path) -> None:
    async with serving(Settings(), tmp_path, short_dir) as service:
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = md_grpc.MarketDataServiceStub(channel)
            await stub.ListSymbols(md.ListSymbolsRequest())
            await stub.ListSymbols(md.ListSymbolsRequest())
            candles = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=5)
            await stub.GetCandles(candles)
            await stub.GetCandles(candles)  # the same answer again: from the cache
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetCandles(md.GetCandlesRequest(symbol="BTCUSDT", limit=0))
            stream = stub.StreamTrades(md.StreamTradesRequest(symbols=["BTCUSDT"]))
            await stream.initial_metadata()
            during_stream = await scrape(service)
            stream.cancel()
        async with httpx.AsyncClient(base_url=service.base_url, timeout=20) as client:
            symbols = await client.get("/api/v1/market/symbols")
            bad = await client.get("/api/v1/market/candles/BTCUSDT/2m")
            missing = await client.get("/no/such/path")
        await service.app.ingest.store_trades(  # 20 already stored by `serving`, 5 new
            make_trades(seed=5, count=25, start_us=AFTER_DATA_US - 60_000_000, spacing_us=1000)
        )
        events = PrometheusPolicyEvents(service.app.metrics)
        events.rate_limited("desk-1", "GetCandles")
        events.rate_limited("desk-1", "GetCandles")
        events.shed("ListTrades")
        # The stream's end reaches the server's metrics once its handler has finished: poll, with a deadline.
        async with asyncio.timeout(20):
            while value(await scrape(service), "wadm_stream_subscribers", grpc_method="StreamTrades") != 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        samples = await scrape(service)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (symbols.status_code, bad.status_code, missing.status_code) == (200, 400, 404)
    grpc_list = grpc_labels("ListSymbols", "grpc")
    assert value(samples, "grpc_server_started_total", **grpc_list) == 2
    assert value(samples, "grpc_server_handled_total", **grpc_list, grpc_code="OK") == 2
    assert value(samples, "grpc_server_handling_seconds_count", **grpc_list) == 2
    assert value(samples, "grpc_server_msg_received_total", **grpc_list) == 2
    assert value(samples, "grpc_server_msg_sent_total", **grpc_list) == 2
    grpc_candles = grpc_labels("GetCandles", "grpc")
    assert value(samples, "grpc_server_handled_total", **grpc_candles, grpc_code="OK") == 2
    assert value(samples, "grpc_server_handled_total", **grpc_candles, grpc_code="INVALID_ARGUMENT") == 1
    # HTTP calls go through the same interceptor, labelled with their face; a 400 made by the gateway
    # itself (a timeframe it cannot parse) never reached gRPC.
    http_list = grpc_labels("ListSymbols", "http")
    assert value(samples, "grpc_server_handled_total", **http_list, grpc_code="OK") == 1
    assert value(samples, "grpc_server_handled_total", **grpc_labels("GetCandles", "http"), grpc_code="OK") == 0
    assert value(samples, "http_requests_total", method="GET", route="/api/v1/market/symbols", code="200") == 1
    candles_route = "/api/v1/market/candles/{symbol}/{timeframe}"
    assert value(samples, "http_requests_total", method="GET", route=candles_route, code="400") == 1
    assert value(samples, "http_requests_total", method="GET", route="other", code="404") == 1
    assert value(samples, "http_request_duration_seconds_count", method="GET", route="/api/v1/market/symbols") == 1
    # The stream: open during the first scrape, cancelled by the client since.
    stream_labels = grpc_labels("StreamTrades", "grpc", kind="server_stream")
    assert value(during_stream, "wadm_stream_subscribers", grpc_method="StreamTrades") == 1
    assert value(during_stream, "wadm_live_streams") == 1
    assert value(samples, "wadm_live_streams") == 0
    assert value(samples, "grpc_server_handled_total", **stream_labels, grpc_code="CANCELLED") == 1
    # Cache, store and ingest.
    assert value(samples, "wadm_cache_misses_total", tier="memory") >= 1
    assert value(samples, "wadm_cache_hits_total", tier="memory") >= 1
    assert value(samples, "wadm_store_query_seconds_count", operation="candles") >= 1
    # The first GetCandles' candles went through the render memo (kept by an earlier test, or rendered).
    renders = value(samples, "wadm_candle_renders_total", result="hit")
    assert renders + value(samples, "wadm_candle_renders_total", result="miss") >= 1
    assert value(samples, "wadm_candle_render_entries") >= 1
    assert value(samples, "wadm_store_query_seconds_count", operation="symbols") >= 2
    assert value(samples, "wadm_ingest_trades_total", result="accepted") == 25
    assert value(samples, "wadm_ingest_trades_total", result="duplicate") == 20
    assert not [name for name, _ in samples if name.endswith("_created")]  # as in multiprocess mode
    # What the policy layer reports.
    assert value(samples, "wadm_rate_limited_total", key_name="desk-1", method="GetCandles") == 2
    assert value(samples, "wadm_shed_total", method="ListTrades") == 1


async def test_workers_share_one_scrape(tmp_path: Path, redis_server: RedisServer) -> None:
    snapshot = tmp_path / "snapshot.duckdb"
    store = DuckDBTradeStore(snapshot)
    await store.insert_trades(make_trades(seed=3, count=20, start_us=AFTER_DATA_US, spacing_us=1000))
    await store.close()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_4242.db"  # left by an earlier run: must not count in this one
    stale.write_bytes(b"stale")
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
        "WADM_DRAIN_SECONDS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    base_url = f"http://127.0.0.1:{http_port}"
    async with process_logging(["serve"], env, "wadm-grpc started", count=2) as (process, _):
        stale_left = stale.exists()
        pids: list[int] = []
        for _ in range(64):  # each new connection lands on a worker the kernel picks
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                response = await client.get("/api/v1/admin/cache")
                assert response.status_code == 200
                pids.append(response.json()["process_id"])
            if len(set(pids)) == 2 and len(pids) >= 4:
                break
        scrapes: list[Samples] = []
        scraped_by: set[int] = set()
        for _ in range(64):  # scrape until two different workers have answered
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                answered = await client.get("/api/v1/admin/cache")
                scrape_response = await client.get("/metrics")  # the same connection: the same worker
            scraped_by.add(answered.json()["process_id"])
            scrapes.append(parse(scrape_response.text))
            if len(scraped_by) == 2:
                break
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0

    assert not stale_left
    assert len(set(pids)) == 2 and len(scraped_by) == 2
    route = {"method": "GET", "route": "/api/v1/admin/cache", "code": "200"}
    admin = grpc_labels("GetCacheStats", "http", service="wadm.market.v1.AdminService")
    for index, samples in enumerate(scrapes):
        # Whichever worker answers the scrape, it counts every worker's calls: those of the first loop, and
        # one per scrape so far (including this one's own, made just before on its connection).
        calls = len(pids) + index + 1
        assert value(samples, "http_requests_total", **route) == calls
        assert value(samples, "grpc_server_handled_total", **admin, grpc_code="OK") == calls


async def test_metrics_port_serves_the_same_scrape_alone(tmp_path: Path, short_dir: Path) -> None:
    async with serving(Settings(), tmp_path, short_dir) as service:
        settings = Settings(host="127.0.0.1", metrics_port=0)
        extra = await start_metrics_port(settings, metrics_scraper(service.app))
        assert extra is not None
        try:
            async with grpc.aio.insecure_channel(service.target) as channel:
                await md_grpc.MarketDataServiceStub(channel).ListSymbols(md.ListSymbolsRequest())
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{extra.port}", timeout=20) as client:
                scraped = await client.get("/metrics")
                other = await client.get("/api/v1/market/symbols")
        finally:
            await extra.stop(0)

    assert scraped.status_code == 200
    samples = parse(scraped.text)
    assert value(samples, "grpc_server_handled_total", **grpc_labels("ListSymbols", "grpc"), grpc_code="OK") == 1
    assert other.status_code == 404  # only /metrics there
    assert other.json()["code"] == 5


async def test_client_stream_messages_are_counted(tmp_path: Path, short_dir: Path) -> None:
    def batch(index: int) -> ingest_pb.PublishTradesRequest:
        trades = [
            make_trade(
                exchange="binance",
                symbol="ETHUSDT",
                trade_id=index * 10 + k,
                price="3000.5",
                quantity="0.01",
                side="buy",
                time=AFTER_DATA_US - 30_000_000 + index * 10 + k,
            )
            for k in range(10)
        ]
        return ingest_pb.PublishTradesRequest(trades=trades)

    async def batches() -> AsyncIterator[ingest_pb.PublishTradesRequest]:
        for index in range(3):
            yield batch(index)

    async with serving(Settings(), tmp_path, short_dir) as service:
        async with grpc.aio.insecure_channel(service.target) as channel:
            answer = await ingest_grpc.TradeIngestServiceStub(channel).PublishTrades(batches())
        samples = await scrape(service)

    assert answer.accepted_count == 30
    labels = grpc_labels("PublishTrades", "grpc", kind="client_stream", service="wadm.market.v1.TradeIngestService")
    assert value(samples, "grpc_server_msg_received_total", **labels) == 3
    assert value(samples, "grpc_server_msg_sent_total", **labels) == 1
    assert value(samples, "grpc_server_handled_total", **labels, grpc_code="OK") == 1
    assert value(samples, "wadm_ingest_trades_total", result="accepted") == 20 + 30  # `serving` stored 20


async def test_websocket_sessions_are_counted_by_route_and_carry_a_request_id(tmp_path: Path, short_dir: Path) -> None:
    async with serving(Settings(), tmp_path, short_dir) as service:
        url = f"ws://127.0.0.1:{service.http.port}/api/v1/market/ws/trades"
        async with connect(url, additional_headers={"X-Request-Id": "ws-1"}) as socket:
            await socket.send(json.dumps({"op": "subscribe", "symbols": ["BTCUSDT"]}))
            subscribed = json.loads(await socket.recv())
            handshake_id = socket.response.headers.get("x-request-id") if socket.response else None
        # The session's end reaches the metrics once the server has closed its side: poll, with a deadline.
        route = {"method": "WS", "route": "/api/v1/market/ws/trades", "code": "101"}
        async with asyncio.timeout(20):
            while value(samples := await scrape(service), "http_requests_total", **route) != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    assert subscribed == {"type": "subscribed", "symbols": ["BTCUSDT"]}
    assert handshake_id == "ws-1"
    bidi = grpc_labels("SubscribeTrades", "http", kind="bidi_stream")
    assert value(samples, "grpc_server_started_total", **bidi) == 1
    assert value(samples, "grpc_server_msg_received_total", **bidi) == 1  # the subscribe command
    assert value(samples, "grpc_server_msg_sent_total", **bidi) >= 1  # the acknowledgement


def test_the_render_memo_counters_go_in_as_increments_and_its_size_as_a_gauge() -> None:
    metrics = Metrics(CollectorRegistry())
    streams = StreamStats(live_streams=0, cut_off_streams=0)
    metrics.sample(None, streams, RenderStats(hits=3, misses=2, entries=2))
    metrics.sample(None, streams, RenderStats(hits=10, misses=4, entries=4))  # totals since start, as kept

    samples = parse(generate_latest(metrics.registry).decode())

    assert value(samples, "wadm_candle_renders_total", result="hit") == 10
    assert value(samples, "wadm_candle_renders_total", result="miss") == 4
    assert value(samples, "wadm_candle_render_entries") == 4
