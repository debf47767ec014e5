"""Calls in flight per connection: capped on the public port (a flooding client's extra calls wait in its
own channel), not on the HTTP gateway's local socket (which carries every HTTP client over one connection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest

from tests.access.support import NOW
from tests.support import make_trades
from wadm_client import ConnectOptions, WadmClient
from wadm_grpc.api.grpc.server import DEFAULT_MAX_CONCURRENT_STREAMS
from wadm_grpc.api.http.server import start_http
from wadm_grpc.bootstrap import bootstrap, gateway_socket, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.stores.duckdb import DuckDBTradeStore

CAP = 4
# Long enough that a call which could run answers well within it; it cannot run while the cap is full.
WAIT_SECONDS = 2.0


@asynccontextmanager
async def _serving(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(public target, local gateway socket) of a server capped at CAP calls per connection."""
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    bus = InProcessTradeBus(buffer_trades=100)
    settings = Settings(page_token_key=b"k", grpc_max_concurrent_streams=CAP)
    app = await bootstrap(settings, store=store, bus=bus, clock=ManualClock(NOW))
    await app.ingest.store_trades(make_trades(seed=5, count=50, start_us=NOW - 60_000_000, spacing_us=1_000_000))
    local = gateway_socket()
    server = await start_grpc(app, "127.0.0.1:0", local_addresses=(local,))
    try:
        yield f"127.0.0.1:{server.port}", local
    finally:
        await server.stop(0)
        await bus.close()
        await app.close()


async def _open_streams(stub: md_grpc.MarketDataServiceStub, count: int) -> list[object]:
    request = md.StreamTradesRequest(symbols=["BTCUSDT"])
    request.heartbeat_interval.FromSeconds(60)
    streams = [stub.StreamTrades(request) for _ in range(count)]
    async with asyncio.timeout(30):  # bounded: a capped connection would never start the ones past the cap
        for stream in streams:
            await stream.initial_metadata()  # the server runs it
    return streams


def test_the_default_cap_is_small_enough_to_keep_a_flood_out_of_the_servers_queue() -> None:
    assert Settings(page_token_key=b"k").grpc_max_concurrent_streams == DEFAULT_MAX_CONCURRENT_STREAMS == 16


async def test_a_connection_on_the_public_port_runs_at_most_the_cap(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (public, _), grpc.aio.insecure_channel(public) as channel:
        stub = md_grpc.MarketDataServiceStub(channel)
        streams = await _open_streams(stub, CAP)
        with pytest.raises(grpc.aio.AioRpcError) as waited:  # no slot on this connection: it never ran
            await stub.ListSymbols(md.ListSymbolsRequest(), timeout=WAIT_SECONDS)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        async with grpc.aio.insecure_channel(public, options=[("grpc.use_local_subchannel_pool", 1)]) as other:
            other_stub = md_grpc.MarketDataServiceStub(other)  # another connection is not held up
            assert (await other_stub.ListSymbols(md.ListSymbolsRequest(), timeout=30)).symbols
        streams[0].cancel()  # type: ignore[attr-defined]
        assert (await stub.ListSymbols(md.ListSymbolsRequest(), timeout=30)).symbols  # a slot is free again
        for stream in streams:
            stream.cancel()  # type: ignore[attr-defined]


async def test_the_gateways_local_socket_is_not_capped(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (_, local), grpc.aio.insecure_channel(local) as channel:
        stub = md_grpc.MarketDataServiceStub(channel)
        streams = await _open_streams(stub, CAP * 3)  # every HTTP client's stream over the one connection
        assert (await stub.ListSymbols(md.ListSymbolsRequest(), timeout=30)).symbols
        for stream in streams:
            stream.cancel()  # type: ignore[attr-defined]


async def test_the_clients_pool_opens_another_connection_when_each_has_the_cap_in_flight(tmp_path: Path) -> None:
    async with (
        _serving(tmp_path) as (public, _),
        WadmClient(ConnectOptions(target=public, calls_per_channel=CAP)) as client,
    ):
        streams = await _open_streams(client.market, CAP * 2)  # past one connection's cap: all run
        assert client.channel.channels == 2
        assert await client.list_symbols()  # a third connection, not a wait behind the streams
        assert client.channel.channels == 3
        for stream in streams:
            stream.cancel()  # type: ignore[attr-defined]


async def test_the_standalone_gateway_spreads_http_streams_over_connections(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (public, _):
        http = await start_http(target=public, host="127.0.0.1", port=0, calls_per_channel=CAP)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as web:
                query = "/api/v1/market/trades:stream?symbols=BTCUSDT&heartbeat_interval=60s"
                async with contextlib.AsyncExitStack() as streams:
                    for _ in range(CAP + 1):  # one more HTTP stream than a connection to the server carries
                        response = await streams.enter_async_context(web.stream("GET", query))
                        assert response.status_code == 200
                    symbols = await web.get("/api/v1/market/symbols")
                    assert symbols.status_code == 200 and symbols.json()["symbols"]
        finally:
            await http.stop(0)
