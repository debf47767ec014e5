"""A hostile client over a raw socket (no client library normalising what it sends): never a 500, always JSON."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.gateway.conftest import Gatewayed


async def raw_request(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line + headers) verbatim; (status, headers, body) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1") + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read(-1)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


HOSTILE = [
    ("GET /api/v1/market/candles/BTCUSDT/1m?limit=1&" + "x" * 10_000 + " HTTP/1.1", 400),
    ("GET /api/v1/market/stats/multi?" + "&".join(["symbols=BTCUSDT"] * 500) + " HTTP/1.1", 200),  # duplicates: once
    ("GET /api/v1/market/stats/multi?" + "&".join(f"symbols=S{i}" for i in range(500)) + " HTTP/1.1", 400),
    ("GET /api/v1/market/candles/BTCUSDT/1m?limit=1&limit=2&limit=3 HTTP/1.1", 400),
    ("GET /api/v1/market/stats/%ff%fe HTTP/1.1", 400),
    ("GET /api/v1/market/stats/%zz HTTP/1.1", 400),
    ("GET /api/v1/market/candles/BTCUSDT/1m?limit=%ff HTTP/1.1", 400),
    ("GET /api/v1/market/candles/BTCUSDT/1m?%ff=1 HTTP/1.1", 400),
    ("GET /api/v1/market/../../../etc/passwd HTTP/1.1", 404),
    ("GET /api/v1/market/stats/..%2F..%2Fetc%2Fpasswd HTTP/1.1", 400),
    ("GET /api/v1/market/trades/BTCUSDT?page_token=%00%01 HTTP/1.1", 400),
    ("GET //api/v1/market/symbols HTTP/1.1", 404),
    ("GET /api/v1/market/symbols?pretty=1&pretty=2 HTTP/1.1", 200),
    ("GET /api/v1/market/symbols; HTTP/1.1", 404),
    ("BREW /api/v1/market/symbols HTTP/1.1", 405),
    ("BREW /nothing HTTP/1.1", 404),
    ("PUT /readyz HTTP/1.1", 405),
    ("GET /api/v1/market/candles/" + "B" * 5000 + "/1m HTTP/1.1", 400),
    ("GET /api/v1/market/candles/BTCUSDT/1m?start_time=99999999999999999999999 HTTP/1.1", 400),
    ("GET /api/v1/market/candles/BTCUSDT/1m?start_time=-62135596800001 HTTP/1.1", 400),
    ("GET /api/v1/market/trades:stream?symbols= HTTP/1.1", 400),
]


@pytest.mark.parametrize(("head", "expected"), HOSTILE, ids=[h[:60] for h, _ in HOSTILE])
async def test_hostile_requests_get_a_json_status_never_a_500(gateway: Gatewayed, head: str, expected: int) -> None:
    status, headers, body = await raw_request(gateway.http.port, head)

    assert status == expected, body[:300]
    assert headers["content-type"] == "application/json"
    if status != 200:
        document = json.loads(body)
        assert set(document) == {"code", "message", "details"}
        assert len(body) < 8192  # errors stay small whatever was sent


async def test_head_and_options_anywhere(gateway: Gatewayed) -> None:
    head_missing = await raw_request(gateway.http.port, "HEAD /nothing HTTP/1.1")
    options = await raw_request(gateway.http.port, "OPTIONS /api/v1/market/trades:stream HTTP/1.1")
    options_missing = await raw_request(gateway.http.port, "OPTIONS /nothing HTTP/1.1")

    assert (head_missing[0], head_missing[2]) == (404, b"")
    assert (options[0], options[1]["allow"]) == (204, "GET, HEAD, OPTIONS")
    assert options_missing[0] == 404
