"""Weighted rate limits and stream caps over gRPC: X-RateLimit-* metadata, RESOURCE_EXHAUSTED with details."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from tests.access.support import QUOTA_FAILURE, RETRY_INFO, add_key, detail, serve_with, status_of
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

CANDLES = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=2)


def limits_of(metadata: object) -> dict[str, str]:
    return {k: v for k, v in metadata or () if k.startswith("x-ratelimit-")}  # type: ignore[attr-defined]


async def test_budget_counts_down_then_refuses_with_retry_and_quota(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "desk", "read", "--limit-per-minute", "5")
    async with serve_with(tmp_path, api_keys_file=str(keys)) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        auth = (("x-api-key", key),)
        for expected in range(4, -1, -1):
            call = stub.GetCandles(CANDLES, metadata=auth)
            await call
            limits = limits_of(await call.trailing_metadata())
            assert limits["x-ratelimit-limit"] == "5"
            assert limits["x-ratelimit-remaining"] == str(expected)
            assert 0 <= int(limits["x-ratelimit-reset"]) <= 60
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetCandles(CANDLES, metadata=auth)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_of(refused.value)
        assert detail(status, RETRY_INFO).retry_delay.seconds >= 1
        quota = detail(status, QUOTA_FAILURE)
        assert quota.violations[0].subject == "key:desk"
        assert limits_of(refused.value.trailing_metadata())["x-ratelimit-remaining"] == "0"


async def test_heavier_calls_weigh_more(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "desk", "read", "--limit-per-minute", "6")
    async with serve_with(tmp_path, api_keys_file=str(keys)) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        heavy = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=1000)
        call = stub.GetCandles(heavy, metadata=(("x-api-key", key),))
        await call
        assert limits_of(await call.trailing_metadata())["x-ratelimit-remaining"] == "1"  # weight 5
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetCandles(heavy, metadata=(("x-api-key", key),))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_anonymous_limits_are_per_ip_and_ignore_spoofed_forwarded_for(tmp_path: Path) -> None:
    async with serve_with(tmp_path, rate_limit_per_minute=3) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        for index in range(3):
            await stub.GetCandles(CANDLES, metadata=(("x-forwarded-for", f"10.0.0.{index}"),))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetCandles(CANDLES, metadata=(("x-forwarded-for", "10.9.9.9"),))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert detail(status_of(refused.value), QUOTA_FAILURE).violations[0].subject == "ip:127.0.0.1"


async def test_streams_per_key_are_capped(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "feed", "stream")
    async with serve_with(tmp_path, api_keys_file=str(keys), max_streams_per_key=1) as served:
        stub = md_grpc.MarketDataServiceStub(served.channel)
        auth = (("x-api-key", key),)
        request = md.StreamTradesRequest(symbols=["BTCUSDT"])
        first = stub.StreamTrades(request, metadata=auth)
        await first.initial_metadata()
        assert limits_of(await first.initial_metadata())["x-ratelimit-limit"] == "1200"
        second = stub.StreamTrades(request, metadata=auth)
        with pytest.raises(grpc.aio.AioRpcError) as capped:
            await second.read()
        assert capped.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert detail(status_of(capped.value), QUOTA_FAILURE).violations[0].subject == "key:feed"
        assert detail(status_of(capped.value), RETRY_INFO) is not None
        first.cancel()
        deadline = time.monotonic() + 10
        while served.app.access.streams.open_streams("key:feed"):
            assert time.monotonic() < deadline, "the cancelled stream was never released"
            await asyncio.sleep(0.01)
        third = stub.StreamTrades(request, metadata=auth)
        await third.initial_metadata()
        assert not third.done()
        third.cancel()
