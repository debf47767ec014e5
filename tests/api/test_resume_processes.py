"""Resume across real server processes on one real Redis: a client whose server is SIGKILLed resumes on
another with its last token and gets exactly what it missed (gRPC, and SSE with Last-Event-ID); past the
retention it gets OUT_OF_RANGE with ErrorInfo; the client library's iterator survives server restarts."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.api.test_redis_processes import free_port, start_server, stop
from tests.redis_support import RedisServer
from wadm_client import Backoff, RawWadmClient, WadmClient, make_trade
from wadm_client.errors import STATUS_DETAILS_KEY
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

NOW = 1_723_161_600_000_000
SYMBOLS = ["BTCUSDT", "ETHUSDT"]  # streamed; SOLUSDT is published too and must not show up
DEADLINE_SECONDS = 60
Key = tuple[str, str, str]


def env(redis_server: RedisServer, tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    return {
        "WADM_PORT": "0",
        "WADM_HTTP": "false",
        "WADM_REDIS_URL": redis_server.url,
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
        "WADM_DRAIN_SECONDS": "0",
        "WADM_PAGE_TOKEN_KEY": "shared-by-every-server",  # tokens must open on every server
        "WADM_STORE": f"duckdb:{tmp_path / f'{name}.duckdb'}",
        **extra,
    }


def batch(n: int, size: int = 6) -> list[trade_pb2.Trade]:
    """Batch `n`: trades of the three symbols, ids unique across batches, times increasing."""
    return [
        make_trade(
            exchange="binance",
            symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3],
            trade_id=n * 1000 + i,
            price=f"{100 + i}.25",
            quantity="0.5",
            side="buy" if i % 2 else "sell",
            time=NOW + n * 1000 + i,
        )
        for i in range(size)
    ]


def keys(trades: list[trade_pb2.Trade]) -> list[Key]:
    return [(t.exchange, t.symbol, t.trade_id) for t in trades]


def wanted(batches: range) -> list[Key]:
    return [k for n in batches for k in keys(batch(n)) if k[1] in SYMBOLS]


def assert_exactly(received: list[Key], expected: list[Key]) -> None:
    """The same trades, once each, in per-symbol order."""
    assert len(received) == len(set(received)), "a trade came twice"
    assert sorted(received) == sorted(expected)
    for symbol in SYMBOLS:
        assert [k for k in received if k[1] == symbol] == [k for k in expected if k[1] == symbol]


@asynccontextmanager
async def server(environment: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    process, (port,) = await start_server(environment)
    try:
        yield process, port
    finally:
        if process.returncode is None:
            await stop(process)


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    async with asyncio.timeout(30):
        await process.wait()


def stream_request(resume_token: str = "") -> md.StreamTradesRequest:
    request = md.StreamTradesRequest(symbols=SYMBOLS, resume_token=resume_token)
    request.heartbeat_interval.FromSeconds(1)
    return request


async def read_until(stream: Any, last: Key, received: list[Key]) -> str:
    """Read messages (adding their trades to `received`) until `last` came; the last message's token."""
    token = ""
    async with asyncio.timeout(DEADLINE_SECONDS):
        while last not in received:
            event = await stream.read()
            assert event is not grpc.aio.EOF
            received += keys(list(event.trades.trades))
            assert event.resume_token
            token = event.resume_token
    return token


async def test_a_client_whose_server_is_killed_resumes_on_another_with_nothing_lost_or_twice(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with (
        server(env(redis_server, tmp_path, "a")) as (a, port_a),
        server(env(redis_server, tmp_path, "b")) as (_, port_b),
        RawWadmClient.connect(f"127.0.0.1:{port_b}") as on_b,
    ):
        received: list[Key] = []
        async with RawWadmClient.connect(f"127.0.0.1:{port_a}") as on_a:
            stream = on_a.market.StreamTrades(stream_request())
            assert (await stream.read()).WhichOneof("event") == "heartbeat"  # subscribed
            for n in range(3):
                await on_b.publish_trades([batch(n)])
            token = await read_until(stream, wanted(range(3))[-1], received)
            await kill(a)  # while streaming; its client keeps only what it read, and the last token
            with pytest.raises(grpc.aio.AioRpcError):
                await stream.read()
        for n in range(3, 8):
            await on_b.publish_trades([batch(n)])

        resumed = on_b.market.StreamTrades(stream_request(token))
        await read_until(resumed, wanted(range(8))[-1], received)
        await on_b.publish_trades([batch(8)])  # then live
        await read_until(resumed, wanted(range(9))[-1], received)
        resumed.cancel()

    assert_exactly(received, wanted(range(9)))


async def read_sse(response: httpx.Response, last: Key, received: list[Key]) -> str:
    """Read SSE events until `last` came; the last event's id (its resume token)."""
    event_id = ""
    event: dict[str, str] = {}
    async with asyncio.timeout(DEADLINE_SECONDS):
        lines = response.aiter_lines()
        while last not in received:
            line = await anext(lines)
            if line:
                name, _, value = line.partition(":")
                event[name] = value.removeprefix(" ")
                continue
            assert event.get("event") in ("trades", "heartbeat"), event
            data = json.loads(event["data"])
            received += [(t["exchange"], t["symbol"], t["trade_id"]) for t in data.get("trades", {}).get("trades", [])]
            event_id = event["id"]
            assert event_id == data["resume_token"]
            event = {}
    return event_id


async def test_an_event_source_resumes_on_another_server_with_last_event_id(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    http_a, http_b = free_port(), free_port()
    env_a = env(redis_server, tmp_path, "a", WADM_HTTP="true", WADM_HTTP_PORT=str(http_a))
    env_b = env(redis_server, tmp_path, "b", WADM_HTTP="true", WADM_HTTP_PORT=str(http_b))
    url = "/api/v1/market/trades:stream?symbols=BTCUSDT,ETHUSDT&heartbeat_interval=1s"
    sse = {"Accept": "text/event-stream"}
    async with (
        server(env_a) as (a, _),
        server(env_b) as (_, port_b),
        RawWadmClient.connect(f"127.0.0.1:{port_b}") as on_b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        received: list[Key] = []
        async with http.stream("GET", f"http://127.0.0.1:{http_a}{url}", headers=sse) as response:
            assert response.status_code == 200
            for n in range(3):
                await on_b.publish_trades([batch(n)])
            last_event_id = await read_sse(response, wanted(range(3))[-1], received)
            await kill(a)
        for n in range(3, 8):
            await on_b.publish_trades([batch(n)])

        headers = sse | {"Last-Event-ID": last_event_id}  # what a reconnecting EventSource sends
        async with http.stream("GET", f"http://127.0.0.1:{http_b}{url}", headers=headers) as response:
            assert response.status_code == 200
            await read_sse(response, wanted(range(8))[-1], received)

    assert_exactly(received, wanted(range(8)))


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")


async def test_resuming_past_the_retention_is_out_of_range_with_error_info(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    http_port = free_port()
    environment = env(
        redis_server,
        tmp_path,
        "a",
        WADM_STREAM_RETENTION_SECONDS="0.2",
        WADM_HTTP="true",
        WADM_HTTP_PORT=str(http_port),
    )
    async with server(environment) as (_, port), RawWadmClient.connect(f"127.0.0.1:{port}") as client:
        stream = client.market.StreamTrades(stream_request())
        await client.publish_trades([batch(0)])
        received: list[Key] = []
        token = await read_until(stream, wanted(range(1))[-1], received)
        stream.cancel()
        for n in range(1, 200):  # until Redis trimmed what came after the token (time-based retention)
            await client.publish_trades([batch(n)])
            length = await redis_length(redis_server)
            if length < n + 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the stream was never trimmed")

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.market.StreamTrades(stream_request(token)).read()
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        info = error_info(caught.value)
        assert info.reason == "RESUME_TOKEN_EXPIRED"
        assert info.metadata["available_from"].endswith("Z")

        async with httpx.AsyncClient(timeout=30) as http:  # the gateway: 400 with the same google.rpc.Status
            answer = await http.get(
                f"http://127.0.0.1:{http_port}/api/v1/market/trades:stream",
                params={"symbols": "BTCUSDT", "resume_token": token},
            )
        assert answer.status_code == 400
        body = answer.json()
        assert body["code"] == code_pb2.OUT_OF_RANGE
        assert any(d.get("reason") == "RESUME_TOKEN_EXPIRED" for d in body["details"])

        with pytest.raises(grpc.aio.AioRpcError) as forged:
            await client.market.StreamTrades(stream_request(token[:-3] + "abc")).read()
        assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def redis_length(redis_server: RedisServer) -> int:
    from wadm_grpc.redis_connection import redis_client

    raw = redis_client(redis_server.url)
    try:
        return int(await raw.xlen("wadm:trades"))
    finally:
        await raw.aclose()


async def test_the_client_iterator_survives_three_server_restarts_without_losing_or_repeating(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    restarted = env(redis_server, tmp_path, "s", WADM_PORT=str(port))
    async with server(env(redis_server, tmp_path, "publisher")) as (_, publisher_port):
        process, _ = await start_server(restarted)
        got: list[Key] = []
        reconnects: list[str] = []
        published = 0
        try:
            async with (
                RawWadmClient.connect(f"127.0.0.1:{publisher_port}") as publisher,
                WadmClient.connect(f"127.0.0.1:{port}") as client,
            ):
                trades = client.stream_trades(
                    SYMBOLS,
                    heartbeat_seconds=1,
                    backoff=Backoff(initial_seconds=0.05, max_seconds=0.5),
                    on_reconnect=lambda error, delay: reconnects.append(error.code.name),
                )
                first = asyncio.ensure_future(anext(trades))
                await publisher.publish_trades([batch(0)])  # until the stream is open, batch 0 may come or not
                while not first.done():
                    published += 1
                    await publisher.publish_trades([batch(published)])
                    await asyncio.wait({first}, timeout=0.05)
                got.append(key_of(first.result()))
                for _ in range(3):  # three restarts
                    target = wanted(range(published + 1))[-1]
                    async with asyncio.timeout(DEADLINE_SECONDS):
                        while target not in got:
                            got.append(key_of(await anext(trades)))
                    await kill(process)
                    for _ in range(3):  # published while the server is down
                        published += 1
                        await publisher.publish_trades([batch(published)])
                    process, _ = await start_server(restarted)
                    published += 1
                    await publisher.publish_trades([batch(published)])
                async with asyncio.timeout(DEADLINE_SECONDS):
                    target = wanted(range(published + 1))[-1]
                    while target not in got:
                        got.append(key_of(await anext(trades)))
                assert client.reconnects == 3
                await trades.aclose()  # type: ignore[attr-defined]  # an async generator
        finally:
            if process.returncode is None:
                await stop(process)

    assert reconnects == ["UNAVAILABLE"] * 3 or len(reconnects) >= 3
    start = wanted(range(published + 1)).index(got[0])  # the stream began somewhere in the first batches
    assert_exactly(got, wanted(range(published + 1))[start:])


def key_of(trade: Any) -> Key:
    return (trade.exchange, trade.symbol, trade.trade_id)
