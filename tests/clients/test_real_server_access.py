"""Both clients against the real server with API keys and mutual TLS on (not a scripted test server):
the key and the client certificate are what the server checks, and its refusals arrive typed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.access.support import add_key
from tests.clients.conftest import Driver
from tests.clients.server import ServerProcess, wadm_server
from tests.ops.certificates import Authority, Issued
from wadm_client import PermissionDeniedError, UnauthenticatedError, UnavailableError


@dataclass(frozen=True)
class Secured:
    server: ServerProcess
    ca: Path
    client: Issued
    read_key: str
    ingest_key: str


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A server process requiring keys (made by the real `keys add`) and client certificates of its CA."""
    tmp = tmp_path_factory.mktemp("secured")
    server_ca, client_ca = Authority.create(tmp, "server"), Authority.create(tmp, "client")
    server_cert, client = server_ca.issue("server", server=True), client_ca.issue("desk", server=False)
    keys = tmp / "keys.json"
    read_key = add_key(keys, "reader", "read,stream")
    ingest_key = add_key(keys, "feeder", "ingest")
    env = {
        "WADM_API_KEYS_FILE": str(keys),
        "WADM_TLS_CERT": str(server_cert.cert),
        "WADM_TLS_KEY": str(server_cert.key),
        "WADM_TLS_CLIENT_CA": str(client_ca.cert),
    }
    with wadm_server(tmp, env=env) as server:
        yield Secured(server, server_ca.cert, client, read_key, ingest_key)


def _tls(secured: Secured) -> dict[str, str]:
    return {"ca_file": str(secured.ca), "cert_file": str(secured.client.cert), "key_file": str(secured.client.key)}


def test_a_key_with_the_scope_and_a_client_certificate_are_served(
    secured: Secured, connect: Callable[..., Driver]
) -> None:
    client = connect(secured.server.target, api_key=secured.read_key, **_tls(secured))
    assert client.call(lambda c: c.list_symbols()) == []


def test_no_key_or_the_wrong_scope_is_refused_typed(secured: Secured, connect: Callable[..., Driver]) -> None:
    anonymous = connect(secured.server.target, **_tls(secured))
    with pytest.raises(UnauthenticatedError):
        anonymous.call(lambda c: c.list_symbols())
    feeder = connect(secured.server.target, api_key=secured.ingest_key, **_tls(secured))
    with pytest.raises(PermissionDeniedError):
        feeder.call(lambda c: c.list_symbols())


def test_without_the_client_certificate_the_handshake_is_refused(
    secured: Secured, connect: Callable[..., Driver]
) -> None:
    client = connect(secured.server.target, api_key=secured.read_key, ca_file=str(secured.ca), timeout_seconds=5)
    with pytest.raises(UnavailableError):
        client.call(lambda c: c.list_symbols())
