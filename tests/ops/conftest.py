"""A whole service (gRPC, its HTTP gateway over the private local socket) in this process, with TLS."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import pytest

from tests.ops.certificates import Authority, Issued, install
from tests.support import AFTER_DATA_US, make_trades
from wadm_grpc.api.grpc.server import GrpcServer
from wadm_grpc.api.http.server import HttpServer
from wadm_grpc.bootstrap import (
    App,
    bootstrap,
    gateway_socket,
    metrics_scraper,
    start_gateway,
    start_grpc,
    tls_files,
)
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.stores.duckdb import DuckDBTradeStore


@dataclass(frozen=True)
class Pki:
    """A server CA and a client CA; the server's live certificate and key files (what the settings name)."""

    directory: Path
    server_ca: Authority
    client_ca: Authority
    server: Issued
    client: Issued
    cert: Path
    key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Fresh certificates: the server's for 127.0.0.1/localhost, a client's from another CA."""
    server_ca = Authority.create(tmp_path, "server")
    client_ca = Authority.create(tmp_path, "client")
    server = server_ca.issue("server-a", server=True)
    client = client_ca.issue("desk-1", server=False)
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    install(server, cert, key)
    return Pki(tmp_path, server_ca, client_ca, server, client, cert, key)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="wadm-t-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Service:
    """A served app: gRPC on `server.port`, HTTP(S) on `http.port`."""

    app: App
    server: GrpcServer
    http: HttpServer
    tls: bool

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http.port}"


@asynccontextmanager
async def serving(settings: Settings, directory: Path, socket_dir: Path) -> AsyncIterator[Service]:
    """bootstrap.serve's wiring, in this process: TLS on the gRPC port, the gateway on the private socket."""
    settings = replace(settings, page_token_key=b"test-key", http_port=0, host="127.0.0.1").checked()
    store = DuckDBTradeStore(directory / "trades.duckdb")
    bus = InProcessTradeBus(buffer_trades=1000)
    app = await bootstrap(settings, store=store, bus=bus, clock=ManualClock(AFTER_DATA_US))
    await app.ingest.store_trades(make_trades(seed=5, count=20, start_us=AFTER_DATA_US - 60_000_000, spacing_us=1000))
    local = gateway_socket(socket_dir if tls_files(settings) is not None else None)
    server = await start_grpc(app, "127.0.0.1:0", local_addresses=(local,), tls=tls_files(settings))
    http = await start_gateway(settings, local, metrics=app.metrics, scrape=metrics_scraper(app))
    assert http is not None
    try:
        yield Service(app, server, http, tls=tls_files(settings) is not None)
    finally:
        await http.stop(0)
        await bus.close()
        await server.stop(0)
        await app.close()


def tls_settings(pki: Pki, *, mtls: bool) -> Settings:
    """Settings naming the live files, and the client CA for mTLS."""
    return Settings(
        tls_cert=str(pki.cert), tls_key=str(pki.key), tls_client_ca=str(pki.client_ca.cert) if mtls else None
    )


def grpc_channel(target: str, ca: Path, client: Issued | None = None) -> grpc.aio.Channel:
    """A TLS channel trusting `ca`, presenting `client`'s certificate when given."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(target, credentials)


async def list_symbols(channel: grpc.aio.Channel) -> list[str]:
    """ListSymbols' symbol names (raises AioRpcError when the call fails)."""
    answer = await md_grpc.MarketDataServiceStub(channel).ListSymbols(md.ListSymbolsRequest(), timeout=20)
    return [summary.symbol for summary in answer.symbols]


def https_client(base_url: str, ca: Path, client: Issued | None = None) -> httpx.AsyncClient:
    """An httpx client trusting `ca`, presenting `client`'s certificate when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return httpx.AsyncClient(base_url=base_url, verify=context, timeout=20)
