"""Transport limits of the gRPC server: message sizes, and GOAWAY for clients that ping too often."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.access.support import serve_with
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

# A client that pings every 200 ms, with or without calls: far more often than the server permits (1 s here).
PINGING = [
    ("grpc.keepalive_time_ms", 200),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


async def test_a_client_pinging_too_often_gets_goaway(tmp_path: Path) -> None:
    async with (
        serve_with(tmp_path, grpc_min_ping_interval_seconds=1.0) as served,
        grpc.aio.insecure_channel(served.target, options=PINGING) as channel,
    ):
        request = md.StreamTradesRequest(symbols=["BTCUSDT"])
        request.heartbeat_interval.FromSeconds(60)
        stream = md_grpc.MarketDataServiceStub(channel).StreamTrades(request)
        await stream.initial_metadata()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(30):
                await stream.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_message_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    async with serve_with(tmp_path, grpc_max_message_bytes=64 * 1024) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        huge = md.ListSymbolsRequest(exchanges=["x" * 100 for _ in range(1000)])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListSymbols(huge)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ListSymbols(md.ListSymbolsRequest())).symbols
