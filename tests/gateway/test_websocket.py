"""The WebSocket /api/v1/market/ws/trades: SubscribeTrades over JSON text frames, through the real gateway."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket as net
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import Running
from tests.gateway.conftest import Gatewayed
from tests.support import make_trades
from wadm_client import RawWadmClient
from wadm_grpc.api.http import websocket
from wadm_grpc.api.http.server import start_http
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.stores.duckdb.store import DuckDBTradeStore

T0 = 1_723_161_600_000_000


@pytest.fixture
async def socket(gateway: Gatewayed) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{gateway.http.port}/api/v1/market/ws/trades") as connection:
        yield connection


async def send(socket: ClientConnection, frame: dict[str, Any]) -> None:
    await socket.send(json.dumps(frame))


async def next_frame(socket: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a heartbeat."""
    async with asyncio.timeout(30):
        while True:
            frame: dict[str, Any] = json.loads(await socket.recv())
            if frame["type"] != "heartbeat":
                return frame


async def receive_trades(socket: ClientConnection, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await next_frame(socket)
        assert frame["type"] == "trades", frame
        got += frame["trades"]
    return got


async def read_until_closed(socket: ClientConnection) -> None:
    async with asyncio.timeout(30):
        while True:
            await socket.recv()


def trades(seed: int, count: int, *symbols: str) -> list[Trade]:
    return make_trades(seed=seed, count=count, start_us=T0, spacing_us=1000, symbols=symbols, exchanges=("binance",))


async def test_subscribe_trades_arrive_then_unsubscribe_stops_them(
    gateway: Gatewayed, socket: ClientConnection
) -> None:
    await send(socket, {"op": "subscribe", "symbols": ["btcusdt", "ETHUSDT"], "exchanges": ["binance"]})
    assert await next_frame(socket) == {"type": "subscribed", "symbols": ["BTCUSDT", "ETHUSDT"]}

    published = trades(71, 20, "BTCUSDT", "ETHUSDT")
    await gateway.served.bus.publish(published)
    got = await receive_trades(socket, 20)
    assert [(t["symbol"], t["trade_id"]) for t in got] == [(t.symbol, t.trade_id) for t in published]
    first = published[0]
    assert got[0]["price"] == str(first.price) and got[0]["quantity"] == str(first.quantity)  # exact, snake_case

    await send(socket, {"op": "unsubscribe", "symbols": ["ETHUSDT"]})
    assert await next_frame(socket) == {"type": "subscribed", "symbols": ["BTCUSDT"]}
    later = trades(72, 20, "ETHUSDT", "BTCUSDT")
    await gateway.served.bus.publish(later)
    btc = [t.trade_id for t in later if t.symbol == "BTCUSDT"]
    assert [t["trade_id"] for t in await receive_trades(socket, len(btc))] == btc


async def test_ping_pong_and_heartbeats(gateway: Gatewayed, socket: ClientConnection) -> None:
    await send(socket, {"op": "ping"})
    assert await next_frame(socket) == {"type": "pong"}
    await send(socket, {"op": "subscribe", "symbols": ["BTCUSDT"], "heartbeat_interval": "1s"})
    assert (await next_frame(socket))["type"] == "subscribed"
    async with asyncio.timeout(30):
        beat = json.loads(await socket.recv())
    assert beat["type"] == "heartbeat" and beat["server_time"].endswith("Z")


async def test_a_query_parameter_sets_the_heartbeat_interval(gateway: Gatewayed) -> None:
    url = f"ws://127.0.0.1:{gateway.http.port}/api/v1/market/ws/trades?heartbeat_interval=1"
    async with connect(url) as socket:
        await send(socket, {"op": "subscribe", "symbols": ["BTCUSDT"]})
        assert (await next_frame(socket))["type"] == "subscribed"
        async with asyncio.timeout(30):
            assert json.loads(await socket.recv())["type"] == "heartbeat"


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ("{not json", "frame"),
        ("[1, 2]", "frame"),
        ('{"op": "dance"}', "op"),
        ('{"symbols": ["BTCUSDT"]}', "op"),
        ('{"op": "subscribe", "symbols": "BTCUSDT"}', "symbols"),
        ('{"op": "subscribe", "symbols": ["BTCUSDT"], "heartbeat_interval": true}', "heartbeat_interval"),
        ('{"op": "ping", "extra": 1}', "extra"),
        ('{"op": "subscribe", "symbols": ["BAD SYMBOL"]}', "symbols[0]"),  # refused by the server, in-stream
        ('{"op": "subscribe", "symbols": []}', "symbols"),
    ],
)
async def test_a_bad_frame_answers_an_error_frame_and_the_connection_stays_open(
    gateway: Gatewayed, socket: ClientConnection, frame: str, field: str
) -> None:
    await socket.send(frame)
    answer = await next_frame(socket)
    assert answer["type"] == "error"
    error = answer["error"]
    assert error["code"] == 3  # INVALID_ARGUMENT
    violations = error["details"][0]["field_violations"]
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert field in [v["field"] for v in violations]

    await send(socket, {"op": "ping"})  # still open and serving
    assert await next_frame(socket) == {"type": "pong"}


async def test_a_stream_the_server_ends_closes_with_1013(gateway: Gatewayed, socket: ClientConnection) -> None:
    await send(socket, {"op": "subscribe", "symbols": ["BTCUSDT"]})
    assert (await next_frame(socket))["type"] == "subscribed"
    await gateway.served.bus.close()  # what a shutdown does: live streams end UNAVAILABLE
    with pytest.raises(ConnectionClosed) as closed:
        await read_until_closed(socket)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert "UNAVAILABLE" in closed.value.rcvd.reason


# --- The slow-consumer cut-off: a browser that takes no frame is closed, its gRPC call cancelled ------------

WS_STALL_SECONDS = 0.3
# The client's kernel receive buffer: small, so the server's sends back up soon after the client stops reading.
TINY_RECEIVE_BUFFER = 4096
PUBLISH_BATCH = 2000
SMALL_BUFFER = 5000


@pytest.fixture
async def patient_server(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Gatewayed]:
    """The gateway before a gRPC server that never cuts a stream off itself (long stall limit, a buffer far
    larger than the test publishes): any cut-off seen is the WebSocket's."""
    async for served in _gateway_before(tmp_path, clock, buffer_trades=10_000_000):
        yield served


@pytest.fixture
async def strict_server(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Gatewayed]:
    """The gateway before a gRPC server whose streams may fall at most SMALL_BUFFER trades behind."""
    async for served in _gateway_before(tmp_path, clock, buffer_trades=SMALL_BUFFER):
        yield served


async def _gateway_before(tmp_path: Path, clock: ManualClock, *, buffer_trades: int) -> AsyncIterator[Gatewayed]:
    bus = InProcessTradeBus(buffer_trades=buffer_trades)
    settings = Settings(page_token_key=b"test-key", stream_stall_seconds=600)
    app = await bootstrap(settings, store=DuckDBTradeStore(tmp_path / "served.duckdb"), bus=bus, clock=clock)
    server = await start_grpc(app, "127.0.0.1:0")
    client = RawWadmClient.connect(f"127.0.0.1:{server.port}", timeout_seconds=30)
    http = await start_http(target=f"127.0.0.1:{server.port}", host="127.0.0.1", port=0)
    running = Running(app=app, server=server, client=client, bus=bus)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as web:
            yield Gatewayed(served=running, http=http, client=web)
    finally:
        await http.stop(0)
        await client.close()
        await bus.close()
        await server.stop(0)
        await app.close()


async def _raw_socket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand over a socket with a tiny receive buffer, whose reader buffers ~2 KiB:
    once the test stops reading, the server's frames pile up on the server's side."""
    sock = net.socket()
    sock.setsockopt(net.SOL_SOCKET, net.SO_RCVBUF, TINY_RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api/v1/market/ws/trades HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _client_frame(text: str) -> bytes:
    """A masked text frame (RFC 6455 5.2), as a client must send; short payloads only."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next server frame (unmasked, RFC 6455 5.2): (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def _next_text(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(30):
        opcode, payload = await _frame(reader)
    assert opcode == 0x1, (opcode, payload)
    return payload.decode()


async def _close_frame(reader: asyncio.StreamReader) -> tuple[int, str] | None:
    """Read the server's frames up to its close frame: (code, reason), or None if the connection just ended."""
    async with asyncio.timeout(60):
        while True:
            try:
                opcode, payload = await _frame(reader)
            except asyncio.IncompleteReadError:
                return None
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()


async def _stream_stats(gateway: Gatewayed) -> dict[str, Any]:
    response = await gateway.client.get("/api/v1/admin/streams")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def test_a_client_that_takes_no_frame_is_closed_with_1013_and_its_call_cancelled(
    patient_server: Gatewayed, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = patient_server
    monkeypatch.setattr(websocket, "SEND_STALL_SECONDS", WS_STALL_SECONDS)
    reader, writer = await _raw_socket(gateway.http.port)
    try:
        writer.write(_client_frame('{"op": "subscribe", "symbols": ["BTCUSDT"]}'))
        assert json.loads(await _next_text(reader))["type"] == "subscribed"
        assert int((await _stream_stats(gateway)).get("live_streams", 0)) == 1
        # The test reads nothing from now on; trades are published until the gateway gives the client up.
        seed = 0
        async with asyncio.timeout(60):
            while int((await _stream_stats(gateway)).get("live_streams", 0)) != 0:
                seed += 1
                await gateway.served.bus.publish(trades(seed, PUBLISH_BATCH, "BTCUSDT"))
        stats = await _stream_stats(gateway)
        assert int(stats.get("cut_off_streams", 0)) == 0  # the gRPC server cut nothing off: the gateway cancelled
        # Behind a full send buffer the close frame itself cannot go out within the stall time, so the gateway
        # drops the connection; the frame is asserted only if it made it.
        assert await _close_frame(reader) in (None, (1013, "client took no data; reconnect"))
    finally:
        writer.close()


async def test_a_client_that_reads_too_slowly_is_cut_off_by_the_server_and_closed_with_1013_and_the_reason(
    strict_server: Gatewayed,
) -> None:
    gateway = strict_server
    reader, writer = await _raw_socket(gateway.http.port)
    try:
        writer.write(_client_frame('{"op": "subscribe", "symbols": ["BTCUSDT"]}'))
        assert json.loads(await _next_text(reader))["type"] == "subscribed"

        async def read_slowly() -> tuple[int, str] | None:
            """A client that keeps reading, a frame every 50 ms: slower than the trades come."""
            async with asyncio.timeout(120):
                while True:
                    try:
                        opcode, payload = await _frame(reader)
                    except asyncio.IncompleteReadError:
                        return None
                    if opcode == 0x8:
                        return int.from_bytes(payload[:2], "big"), payload[2:].decode()
                    await asyncio.sleep(0.05)  # the slowness under test, not a wait for something

        reading = asyncio.create_task(read_slowly())
        seed = 0
        async with asyncio.timeout(60):
            while int((await _stream_stats(gateway)).get("cut_off_streams", 0)) == 0:
                for _ in range(10):
                    seed += 1
                    await gateway.served.bus.publish(trades(seed, 500, "BTCUSDT"))
        # The server cut the stream off (the gateway never gave up on this client: it kept reading)...
        closed = await reading
        # ...and the client, still reading, gets the server's status as the close reason.
        assert closed is not None
        code, reason = closed
        assert code == 1013
        assert reason.startswith("RESOURCE_EXHAUSTED: stream fell more than 5000 trades behind"), reason
    finally:
        writer.close()
