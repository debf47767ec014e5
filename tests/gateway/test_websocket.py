"""The WebSocket /api/v1/market/ws/trades: SubscribeTrades over JSON text frames, through the real gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.gateway.conftest import Gatewayed
from tests.support import make_trades
from wadm_grpc.domain.trade import Trade

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
