"""Request ids on both faces, through a real server process: taken or made, returned, in every log line."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import grpc
import httpx

from tests.gateway.test_gateway_processes import process_logging
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

GENERATED = re.compile(r"[0-9a-f]{32}")


def request_id(metadata: grpc.aio.Metadata | None) -> str | None:
    found = [value for key, value in metadata or () if key == "x-request-id"]
    return str(found[0]) if len(found) == 1 else None


async def read_records(stream: asyncio.StreamReader, wanted: set[str]) -> list[dict[str, Any]]:
    """Log records until one of each `wanted` request id has appeared in an access line."""
    records: list[dict[str, Any]] = []
    missing = set(wanted)
    async with asyncio.timeout(30):
        while missing:
            line = await stream.readline()
            assert line, f"the server exited before logging {missing}"
            record = json.loads(line)
            records.append(record)
            if record.get("logger") == "wadm_grpc.access" and record["message"] == "call":
                missing.discard(record.get("request_id", ""))
    return records


async def test_request_ids_are_returned_and_in_every_log_line_of_the_call(tmp_path: Path) -> None:
    env = {
        "WADM_PORT": "0",
        "WADM_HTTP": "true",
        "WADM_HTTP_PORT": "0",
        "WADM_STORE": f"duckdb:{tmp_path / 'wadm.duckdb'}",
        "WADM_LOG_FORMAT": "json",
        "WADM_LOG_LEVEL": "DEBUG",  # the gRPC side of forwarded calls is a DEBUG line
        "WADM_GRACE_SECONDS": "1",
        "WADM_DRAIN_SECONDS": "0",
    }
    async with process_logging(["serve"], env, "wadm-grpc started") as (process, started):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{started['port']}") as channel:
            stub = md_grpc.MarketDataServiceStub(channel)
            sent = stub.ListSymbols(md.ListSymbolsRequest(), metadata=[("x-request-id", "trace-abc-123")])
            await sent
            made = stub.ListSymbols(md.ListSymbolsRequest())
            await made
            insane = stub.ListSymbols(md.ListSymbolsRequest(), metadata=[("x-request-id", "two words")])
            await insane
            raw = channel.unary_unary(f"/{md.DESCRIPTOR.services_by_name['MarketDataService'].full_name}/GetCandles")
            malformed = raw(b"\xff\xff\xff", metadata=[("x-request-id", "malformed-1")])
            try:
                await malformed
            except grpc.aio.AioRpcError as error:
                malformed_code = error.code()
            refused = stub.StreamTrades(md.StreamTradesRequest(), metadata=[("x-request-id", "stream-9")])
            try:
                await refused.read()
            except grpc.aio.AioRpcError as error:
                stream_code = error.code()
            stream_trailers = await refused.trailing_metadata()
        async with httpx.AsyncClient(base_url=started["http"], timeout=20) as client:
            forwarded = await client.get("/api/v1/market/symbols", headers={"X-Request-Id": "http-7"})
            fresh = await client.get("/api/v1/market/symbols")
        assert process.stderr is not None
        ids = {"trace-abc-123", "malformed-1", "stream-9", "http-7"}
        records = await read_records(process.stderr, ids)
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0

    # Returned in trailing metadata on every call (unary ones too: their initial metadata goes with the answer).
    assert request_id(await sent.trailing_metadata()) == "trace-abc-123"
    made_id = request_id(await made.trailing_metadata())
    insane_id = request_id(await insane.trailing_metadata())
    assert request_id(await malformed.trailing_metadata()) == "malformed-1"
    assert made_id is not None and GENERATED.fullmatch(made_id)
    assert insane_id is not None and GENERATED.fullmatch(insane_id)
    assert malformed_code == grpc.StatusCode.INVALID_ARGUMENT
    assert stream_code == grpc.StatusCode.INVALID_ARGUMENT
    assert request_id(stream_trailers) == "stream-9"
    assert forwarded.headers["x-request-id"] == "http-7"
    assert GENERATED.fullmatch(fresh.headers["x-request-id"])

    def lines(request: str) -> list[dict[str, Any]]:
        return [r for r in records if r.get("request_id") == request and r["logger"].startswith("wadm_grpc")]

    [access] = lines("trace-abc-123")
    assert access["logger"] == "wadm_grpc.access"
    assert {key: access[key] for key in ("message", "face", "method", "code", "key")} == {
        "message": "call",
        "face": "grpc",
        "method": "wadm.market.v1.MarketDataService/ListSymbols",
        "code": "OK",
        "key": "-",
    }
    assert access["bytes"] == 0 and access["ms"] >= 0  # an empty store's answer: the empty message
    # A call that logs on the way: every line of it carries its id.
    malformed_lines = lines("malformed-1")
    assert [r["message"] for r in malformed_lines] == ["malformed request message", "call"]
    assert malformed_lines[-1]["code"] == "INVALID_ARGUMENT"
    assert lines("stream-9")[-1]["code"] == "INVALID_ARGUMENT"
    # HTTP: the gateway's access line, and the gRPC server saw the same id on the forwarded call.
    http_lines = lines("http-7")
    assert [(r["message"], r["face"]) for r in http_lines] == [("forwarded call", "http"), ("call", "http")]
    assert http_lines[-1]["method"] == "GET /api/v1/market/symbols"
    assert http_lines[-1]["code"] == "200"
    assert http_lines[-1]["bytes"] == len(forwarded.content)
