"""Connection options of both clients against a scripted in-process server: retries through the service config's
retryPolicy, the API key header, default deadlines, TLS with a CA and a client certificate."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.clients.conftest import Driver
from wadm_client import DeadlineExceededError, UnavailableError
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc


class Scripted(md_grpc.MarketDataServiceServicer):
    """ListSymbols fails with UNAVAILABLE `failures` times, then answers; records each call's metadata."""

    def __init__(self) -> None:
        self.failures = 0
        self.calls: list[dict[str, str]] = []
        self.release = threading.Event()

    def ListSymbols(self, request: md.ListSymbolsRequest, context: grpc.ServicerContext) -> md.ListSymbolsResponse:
        self.calls.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if len(self.calls) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return md.ListSymbolsResponse(symbols=[md.SymbolSummary(symbol="BTCUSDT", trade_count=1)])

    def GetOrderbook(self, request: md.GetOrderbookRequest, context: grpc.ServicerContext) -> md.GetOrderbookResponse:
        self.release.wait(30)  # slower than any deadline the tests set
        return md.GetOrderbookResponse(symbol=request.symbol)


def serve(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, Scripted, str]:
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    md_grpc.add_MarketDataServiceServicer_to_server(servicer, server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    return server, servicer, f"127.0.0.1:{port}"


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    server, servicer, target = serve()
    yield servicer, target
    servicer.release.set()
    server.stop(0)


def test_idempotent_reads_are_retried_on_unavailable_by_grpc(
    scripted: tuple[Scripted, str], connect: Callable[..., Driver]
) -> None:
    servicer, target = scripted
    servicer.failures = 2

    symbols = connect(target).call(lambda c: c.list_symbols())

    assert [s.symbol for s in symbols] == ["BTCUSDT"]
    assert len(servicer.calls) == 3  # two refusals, then the answer: the service config's retryPolicy at work


def test_without_retries_unavailable_is_raised_typed(
    scripted: tuple[Scripted, str], connect: Callable[..., Driver]
) -> None:
    servicer, target = scripted
    servicer.failures = 1

    with pytest.raises(UnavailableError, match="restarting"):
        connect(target, retries=1).call(lambda c: c.list_symbols())
    assert len(servicer.calls) == 1


def test_the_api_key_goes_as_x_api_key_metadata(scripted: tuple[Scripted, str], connect: Callable[..., Driver]) -> None:
    servicer, target = scripted

    connect(target, api_key="k-123").call(lambda c: c.list_symbols())
    connect(target).call(lambda c: c.list_symbols())

    assert servicer.calls[0]["x-api-key"] == "k-123"
    assert "x-api-key" not in servicer.calls[1]


def test_the_default_deadline_applies(scripted: tuple[Scripted, str], connect: Callable[..., Driver]) -> None:
    _, target = scripted

    with pytest.raises(DeadlineExceededError):
        connect(target, timeout_seconds=0.3).call(lambda c: c.get_orderbook("BTCUSDT"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    root = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=wadm test CA")  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return root


def test_tls_with_a_ca_and_a_client_certificate(pki: Path, connect: Callable[..., Driver]) -> None:
    read = lambda name: (pki / name).read_bytes()  # noqa: E731
    credentials = grpc.ssl_server_credentials(
        [(read("server.key"), read("server.pem"))], root_certificates=read("ca.pem"), require_client_auth=True
    )
    server, servicer, target = serve(credentials)
    try:
        tls: dict[str, Any] = {"ca_file": str(pki / "ca.pem"), "retries": 1, "timeout_seconds": 10}
        mutual = connect(target, cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key"), **tls)
        assert [s.symbol for s in mutual.call(lambda c: c.list_symbols())] == ["BTCUSDT"]

        with pytest.raises(UnavailableError):  # the server wants a client certificate
            connect(target, **tls).call(lambda c: c.list_symbols())
    finally:
        servicer.release.set()
        server.stop(0)
