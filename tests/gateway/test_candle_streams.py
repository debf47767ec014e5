"""StreamCandles through the real gateway: NDJSON and SSE at /candles/{symbol}/{timeframe}:stream, and the
WebSocket's `candles` op."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.gateway.conftest import Gatewayed
from tests.support import binance_trades
from wadm_grpc.domain.clock import ManualClock

PATH = "/api/v1/market/candles/BTCUSDT/1m:stream"


def inside_last_minute(gateway: Gatewayed) -> None:
    """Put the clock right after the stored trades, inside their last minute."""
    clock = gateway.served.app.clock
    assert isinstance(clock, ManualClock)
    clock.set(binance_trades()[-1].time_us)


async def last_candle(gateway: Gatewayed) -> dict[str, Any]:
    answer = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1m", params={"limit": 1})
    assert answer.status_code == 200
    candle: dict[str, Any] = answer.json()["candles"][0]
    return candle


async def test_ndjson_stream_starts_with_the_current_candle(gateway: Gatewayed) -> None:
    inside_last_minute(gateway)
    expected = await last_candle(gateway)
    async with (
        asyncio.timeout(30),
        gateway.client.stream("GET", PATH, params={"update_interval": "0.5s"}) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        first = json.loads(await anext(answer.aiter_lines()))
    assert first["result"]["candle"] == expected
    assert first["result"]["symbol"] == "BTCUSDT" and first["result"]["timeframe"] == "TIMEFRAME_1M"
    assert expected["closed"] is False


async def test_sse_stream_names_candle_events(gateway: Gatewayed) -> None:
    inside_last_minute(gateway)
    expected = await last_candle(gateway)
    headers = {"Accept": "text/event-stream"}
    async with asyncio.timeout(30), gateway.client.stream("GET", PATH, headers=headers) as answer:
        assert answer.status_code == 200
        lines = answer.aiter_lines()
        event_id = await anext(lines)
        event = await anext(lines)
        data = await anext(lines)
    assert event_id.startswith("id: ")  # the resume token (see test_candle_resume.py)
    assert event == "event: candle"
    assert json.loads(data.removeprefix("data: "))["candle"] == expected


async def test_a_bad_update_interval_is_a_400_naming_the_field(gateway: Gatewayed) -> None:
    answer = await gateway.client.get(PATH, params={"update_interval": "0.01s"})
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == 3
    violations = [v for d in body["details"] for v in d.get("fieldViolations", d.get("field_violations", []))]
    assert [v["field"] for v in violations] == ["update_interval"]


async def test_websocket_candles_op(gateway: Gatewayed) -> None:
    inside_last_minute(gateway)
    expected = await last_candle(gateway)
    url = f"ws://127.0.0.1:{gateway.http.port}/api/v1/market/ws/trades"
    async with connect(url) as socket, asyncio.timeout(30):
        await socket.send(json.dumps({"op": "subscribe", "candles": [{"symbol": "btcusdt", "timeframe": "1m"}]}))
        frames = [json.loads(await socket.recv()) for _ in range(2)]
        await socket.send(json.dumps({"op": "subscribe", "candles": [{"symbol": "BTCUSDT", "timeframe": "2m"}]}))
        refused = json.loads(await socket.recv())
        await socket.send(json.dumps({"op": "unsubscribe", "candles": [{"symbol": "BTCUSDT", "timeframe": "1m"}]}))
        after = json.loads(await socket.recv())

    assert frames[0] == {"type": "subscribed", "candles": [{"symbol": "BTCUSDT", "timeframe": "1m"}]}
    assert frames[1].pop("resume_token")  # see test_candle_resume.py
    assert frames[1] == {"type": "candle", "symbol": "BTCUSDT", "timeframe": "1m", "candle": expected}
    assert refused["type"] == "error" and refused["error"]["code"] == 3
    assert after == {"type": "subscribed", "candles": []}
