"""The WebSocket's subscribe frame takes a resume token; trade and heartbeat frames carry one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.api.test_subscribe_trades import batch
from tests.gateway.conftest import Gatewayed


async def frames(socket: Any, count: int) -> tuple[list[str], str]:
    got: list[str] = []
    token = ""
    async with asyncio.timeout(30):
        while len(got) < count:
            frame = json.loads(await socket.recv())
            if frame["type"] == "heartbeat":
                assert frame["resume_token"]
                continue
            assert frame["type"] == "trades", frame
            got += [t["trade_id"] for t in frame["trades"]]
            token = frame["resume_token"]
    return got, token


async def test_the_websocket_subscribe_frame_resumes(gateway: Gatewayed) -> None:
    url = f"ws://127.0.0.1:{gateway.http.port}/api/v1/market/ws/trades"
    bus = gateway.served.bus
    async with connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "symbols": ["SOLUSDT"]}))
        assert json.loads(await socket.recv())["type"] == "subscribed"
        seen = batch(81, 20, "SOLUSDT")
        await bus.publish(seen)
        got, token = await frames(socket, len(seen))
        assert got == [t.trade_id for t in seen]
    missed = batch(82, 20, "SOLUSDT")
    await bus.publish(missed)
    async with connect(url) as socket:
        await socket.send(json.dumps({"op": "subscribe", "symbols": ["SOLUSDT"], "resume_token": token}))
        assert json.loads(await socket.recv())["type"] == "subscribed"
        got, _ = await frames(socket, len(missed))
        assert got == [t.trade_id for t in missed]
