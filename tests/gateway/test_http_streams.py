"""StreamTrades over HTTP: NDJSON and SSE, flushed per message, a final error, cancelled when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator

import httpx

from tests.gateway.conftest import Gatewayed
from tests.support import AFTER_DATA_US, make_trades

STREAM = "/api/v1/market/trades:stream?symbols=ETHUSDT&heartbeat_interval=60s"


async def lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line:
            yield line


async def publish_eth(gateway: Gatewayed, seed: int) -> list[str]:
    """Ingest three ETHUSDT trades through the public ingest path; their ids."""
    trades = make_trades(seed=seed, count=3, start_us=AFTER_DATA_US - 3_000_000, spacing_us=1000, symbols=("ETHUSDT",))
    await gateway.served.app.ingest.store_trades(trades)
    return [t.trade_id for t in trades]


async def test_ndjson_carries_a_trade_published_during_the_stream_then_the_final_error(gateway: Gatewayed) -> None:
    async with asyncio.timeout(30), gateway.client.stream("GET", STREAM) as response:
        assert response.status_code == 200  # sent once the server has subscribed the stream
        assert response.headers["content-type"] == "application/x-ndjson"
        ids = await publish_eth(gateway, seed=1)
        received = lines(response)
        first = json.loads(await anext(received))
        assert [t["trade_id"] for t in first["result"]["trades"]["trades"]] == ids
        assert first["result"]["trades"]["trades"][0]["symbol"] == "ETHUSDT"

        await gateway.served.bus.close()  # shutdown: the stream ends with UNAVAILABLE
        last = json.loads(await anext(received))
        assert last["error"]["code"] == 14
        assert last["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
        assert [line async for line in received] == []


async def test_sse_names_each_event_and_ends_with_an_error_event(gateway: Gatewayed) -> None:
    headers = {"Accept": "text/event-stream"}
    async with asyncio.timeout(30), gateway.client.stream("GET", STREAM, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        ids = await publish_eth(gateway, seed=2)
        received = lines(response)
        event_id = (await anext(received)).removeprefix("id: ")
        assert await anext(received) == "event: trades"
        data = json.loads((await anext(received)).removeprefix("data: "))
        assert [t["trade_id"] for t in data["trades"]["trades"]] == ids
        assert event_id == data["resume_token"] != ""  # the resume token: an EventSource's Last-Event-ID

        await gateway.served.bus.close()
        assert await anext(received) == "event: error"
        assert json.loads((await anext(received)).removeprefix("data: "))["code"] == 14


async def test_heartbeats_flow_on_an_idle_stream(gateway: Gatewayed) -> None:
    url = "/api/v1/market/trades:stream?symbols=ETHUSDT&heartbeat_interval=1s"
    async with asyncio.timeout(30), gateway.client.stream("GET", url) as response:
        beat = json.loads(await anext(lines(response)))

    assert set(beat["result"]) == {"heartbeat", "resume_token"}
    assert beat["result"]["heartbeat"]["server_time"] == "2024-08-09T00:10:00Z"


async def test_a_client_that_leaves_cancels_the_grpc_stream(gateway: Gatewayed) -> None:
    async with asyncio.timeout(30):
        async with gateway.client.stream("GET", STREAM) as response:
            assert response.status_code == 200
            await gateway.served.bus.wait_for_subscribers(1)
        # Leaving the block closes the connection mid-stream: the server's subscription goes at once.
        await gateway.served.bus.wait_for_subscribers(0)


async def test_a_refused_stream_is_a_status_not_a_200(gateway: Gatewayed) -> None:
    bad = await gateway.client.get("/api/v1/market/trades:stream?symbols=BTCUSDT&heartbeat_interval=600s")
    await gateway.served.bus.close()
    closed = await gateway.client.get(STREAM)

    assert bad.status_code == 400
    assert bad.json()["details"][0]["field_violations"][0]["field"] == "heartbeat_interval"
    assert (closed.status_code, closed.headers["retry-after"], closed.json()["code"]) == (503, "1", 14)


async def test_a_batch_that_several_streams_carry_is_rendered_once(gateway: Gatewayed) -> None:
    renderer = gateway.http.server.config.app.state.gateway.stream_renderer
    async with asyncio.timeout(30), contextlib.AsyncExitStack() as stack:
        responses = [await stack.enter_async_context(gateway.client.stream("GET", STREAM)) for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        before = (renderer.misses, renderer.hits)
        ids = await publish_eth(gateway, seed=3)
        got = [await anext(lines(response)) for response in responses]

    assert got[0] == got[1] == got[2]  # the same bytes for every client...
    assert [t["trade_id"] for t in json.loads(got[0])["result"]["trades"]["trades"]] == ids
    assert (renderer.misses - before[0], renderer.hits - before[1]) == (1, 2)  # ...rendered once


async def test_ndjson_resumes_from_a_lines_resume_token(gateway: Gatewayed) -> None:
    async with asyncio.timeout(30), gateway.client.stream("GET", STREAM) as response:
        seen = await publish_eth(gateway, seed=11)
        first = json.loads(await anext(lines(response)))
        assert [t["trade_id"] for t in first["result"]["trades"]["trades"]] == seen
        token = first["result"]["resume_token"]
    await gateway.served.bus.wait_for_subscribers(0)  # the first stream is gone
    later = make_trades(seed=12, count=3, start_us=AFTER_DATA_US - 3_000_000, spacing_us=1000, symbols=("ETHUSDT",))
    later = [dataclasses.replace(t, trade_id=f"later-{t.trade_id}") for t in later]  # new ids: announced
    await gateway.served.app.ingest.store_trades(later)
    missed = [t.trade_id for t in later]

    async with asyncio.timeout(30), gateway.client.stream("GET", f"{STREAM}&resume_token={token}") as response:
        assert response.status_code == 200
        replayed = json.loads(await anext(lines(response)))  # no heartbeat first: the interval is 60 s
        assert [t["trade_id"] for t in replayed["result"]["trades"]["trades"]] == missed


async def test_a_forged_resume_token_is_a_400_naming_the_field(gateway: Gatewayed) -> None:
    answer = await gateway.client.get(f"{STREAM}&resume_token=not-a-token")
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == 3
    violations = [v for d in body["details"] for v in d.get("field_violations", d.get("fieldViolations", []))]
    assert [v["field"] for v in violations] == ["resume_token"]
