"""The gateway in front of the real gRPC server (`served`, on 127.0.0.1:0), reached over real HTTP (httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import Running
from tests.support import STORE_KINDS, StoreKind, binance_trades
from wadm_grpc.api.http.server import HttpServer, start_http

CORS_ORIGIN = "https://desk.example"


@pytest.fixture(params=[kind for kind in STORE_KINDS if kind.id == "duckdb"])
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    """The gateway's behaviour does not depend on the store: the embedded one is enough here."""
    kind: StoreKind = request.param
    return kind


@dataclass
class Gatewayed:
    """The served gRPC app, the HTTP gateway in front of it, and an HTTP client for it."""

    served: Running
    http: HttpServer
    client: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT of the gateway."""
        return f"http://127.0.0.1:{self.http.port}"


@pytest.fixture
async def gateway(served: Running) -> AsyncIterator[Gatewayed]:
    """The gateway on 127.0.0.1:0 forwarding to the served gRPC server, with Binance's BTCUSDT trades of
    2024-08-08 23:54:16-23:59:59 stored (every fifth: enough for every route, quick to load)."""
    await served.app.ingest.store_trades(binance_trades()[::5])
    http = await start_http(target=served.target, host="127.0.0.1", port=0, cors_origins=(CORS_ORIGIN,))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as client:
            yield Gatewayed(served=served, http=http, client=client)
    finally:
        await http.stop(0)
