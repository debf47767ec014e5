"""Candle stream resume through the gateway: SSE with Last-Event-ID, NDJSON with resume_token=, and the
WebSocket's candle entry with "resume_token"; each sends the finals missed while away first, once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.gateway.conftest import Gatewayed
from tests.gateway.test_candle_streams import PATH, inside_last_minute
from tests.support import binance_trades, make_trades
from wadm_grpc.domain.clock import ManualClock

MINUTE_US = 60_000_000


def last_minute() -> int:
    last = binance_trades()[-1].time_us
    return last - last % MINUTE_US


def open_time(candle: dict[str, Any]) -> str:
    return str(candle.get("open_time", candle.get("openTime")))


async def miss_two_finals(gateway: Gatewayed) -> None:
    """While the client is away: trades in the minute after the stored ones, then the clock past both."""
    clock = gateway.served.app.clock
    assert isinstance(clock, ManualClock)
    after = last_minute() + MINUTE_US
    made = make_trades(seed=77, count=4, start_us=after + 1_000_000, spacing_us=1_000_000)
    trades = [dataclasses.replace(t, exchange="binance", trade_id=f"resume-{t.trade_id}") for t in made]
    clock.set(trades[-1].time_us)
    await gateway.served.app.ingest.store_trades(trades)
    clock.set(after + 3 * MINUTE_US)


async def stored_finals(gateway: Gatewayed) -> list[dict[str, Any]]:
    answer = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1m", params={"limit": 2})
    assert answer.status_code == 200
    candles: list[dict[str, Any]] = answer.json()["candles"]
    return candles


async def sse_events(lines: Any, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The next `count` events as (id, event name, data)."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(30):
        while len(events) < count:
            line = await anext(lines)
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                events.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
                fields = {}
    return events


@pytest.mark.parametrize("how", ["sse-last-event-id", "ndjson-query"])
async def test_an_http_stream_resumes_with_the_missed_finals_first(gateway: Gatewayed, how: str) -> None:
    inside_last_minute(gateway)
    sse = {"Accept": "text/event-stream"}
    async with asyncio.timeout(30), gateway.client.stream("GET", PATH, headers=sse) as answer:
        ((token, event, first),) = await sse_events(answer.aiter_lines(), 1)
    assert event == "candle" and first["candle"]["closed"] is False and token
    await miss_two_finals(gateway)

    if how == "sse-last-event-id":
        headers = {**sse, "Last-Event-ID": token}
        async with asyncio.timeout(30), gateway.client.stream("GET", PATH, headers=headers) as answer:
            assert answer.status_code == 200
            events = await sse_events(answer.aiter_lines(), 2)
        assert all(event_id and name == "candle" for event_id, name, _ in events)
        candles = [data["candle"] for _, _, data in events]
    else:
        params = {"resume_token": token}
        async with asyncio.timeout(30), gateway.client.stream("GET", PATH, params=params) as answer:
            assert answer.status_code == 200
            lines = answer.aiter_lines()
            results = [json.loads(await anext(lines))["result"] for _ in range(2)]
        assert all(result["resume_token"] for result in results)
        candles = [result["candle"] for result in results]

    assert candles == await stored_finals(gateway)  # the two missed finals, equal to GetCandles, in order
    assert [c["closed"] for c in candles] == [True, True]
    assert open_time(candles[0]) == open_time(first["candle"])


async def test_a_bad_last_event_id_is_a_400_naming_resume_token(gateway: Gatewayed) -> None:
    answer = await gateway.client.get(PATH, headers={"Accept": "text/event-stream", "Last-Event-ID": "forged"})
    assert answer.status_code == 400
    violations = [v for d in answer.json()["details"] for v in d.get("fieldViolations", d.get("field_violations", []))]
    assert [v["field"] for v in violations] == ["resume_token"]


async def test_a_websocket_candle_entry_resumes_with_its_resume_token(gateway: Gatewayed) -> None:
    inside_last_minute(gateway)
    url = f"ws://127.0.0.1:{gateway.http.port}/api/v1/market/ws/trades"
    entry = {"symbol": "BTCUSDT", "timeframe": "1m"}
    async with connect(url) as socket, asyncio.timeout(30):
        await socket.send(json.dumps({"op": "subscribe", "candles": [entry]}))
        subscribed, first = [json.loads(await socket.recv()) for _ in range(2)]
    assert subscribed["type"] == "subscribed" and first["type"] == "candle" and first["resume_token"]
    await miss_two_finals(gateway)

    async with connect(url) as socket, asyncio.timeout(30):
        await socket.send(
            json.dumps({"op": "subscribe", "candles": [{**entry, "resume_token": first["resume_token"]}]})
        )
        frames = [json.loads(await socket.recv()) for _ in range(3)]
    assert frames[0] == {"type": "subscribed", "candles": [entry]}
    assert all(frame["type"] == "candle" and frame["resume_token"] for frame in frames[1:])
    assert [frame["candle"] for frame in frames[1:]] == await stored_finals(gateway)
    assert [frame["candle"]["closed"] for frame in frames[1:]] == [True, True]
