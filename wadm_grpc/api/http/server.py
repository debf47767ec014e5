"""The HTTP server: uvicorn serving the gateway app on a socket we bind (port 0, SO_REUSEPORT for workers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from wadm_client.options import DEFAULT_CALLS_PER_CHANNEL
from wadm_grpc.api.http.app import build_app
from wadm_grpc.api.http.forward import Upstream
from wadm_grpc.api.tls import ClientTls, TlsFiles, reloading_server_context
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.metrics.scrape import Scrape

log = logging.getLogger("wadm_grpc.http")

# Request lines and headers up to this size are parsed (the app then refuses long queries with a Status);
# beyond it uvicorn answers 400 itself.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
WS_MAX_FRAME_BYTES = 64 * 1024


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the process's own (bootstrap.serve) decide when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def loopback_target(host: str, port: int) -> str:
    """host:port a process reaches its own server at (a wildcard listen address means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks one); `reuse_port` lets workers share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@dataclass
class HttpServer:
    """A started HTTP server; `stop` lets running requests finish for up to the grace period."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    upstream: Upstream

    async def stop(self, grace_seconds: float) -> None:
        """Stop accepting, finish running requests (streams end when the gRPC server ends them), close."""
        self.server.config.timeout_graceful_shutdown = max(math.ceil(grace_seconds), 1)
        self.server.should_exit = True
        try:
            await self.task
        finally:
            await self.upstream.close()


def uvicorn_tls_options(tls: TlsFiles | None) -> dict[str, Any]:
    """uvicorn's options for HTTPS with `tls` (none for plaintext): its own file options, and a context factory
    for the reloading context (api/tls.py)."""
    if tls is None:
        return {}
    return {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_context_factory": lambda config, default: reloading_server_context(tls),
    }


async def start_http(
    *,
    target: str,
    host: str,
    port: int,
    reuse_port: bool = False,
    cors_origins: Sequence[str] = (),
    max_concurrency: int | None = None,
    tls: TlsFiles | None = None,
    upstream_tls: ClientTls | None = None,
    metrics: Metrics | None = None,
    scrape: Scrape | None = None,
    calls_per_channel: int | None = None,
) -> HttpServer:
    """Serve the gateway for the gRPC server at `target` on host:port; returns once it is listening.
    `tls`: serve HTTPS (client certificates required when it names a client CA); `upstream_tls`: reach
    `target` over TLS. `metrics` count requests; `scrape` answers /metrics. `calls_per_channel`: open another
    connection to `target` when each has that many calls in flight (None: one connection, for a server
    without a per-connection cap, as this process's own local socket)."""
    if upstream_tls is None:
        upstream = Upstream(target, calls_per_channel=calls_per_channel)
    else:
        upstream = Upstream(
            target,
            credentials=upstream_tls.credentials(),
            options=upstream_tls.channel_options(),
            calls_per_channel=calls_per_channel,
        )
    asgi = build_app(upstream, cors_origins=cors_origins, metrics=metrics, scrape=scrape)
    sock = bind_socket(host, port, reuse_port=reuse_port)
    config = uvicorn.Config(
        asgi,
        **uvicorn_tls_options(tls),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        timeout_graceful_shutdown=10,
        # Beyond this many connections and requests at once uvicorn answers 503 (WADM_HTTP_MAX_CONCURRENCY).
        limit_concurrency=max_concurrency,
        # The client address is the TCP peer's: uvicorn's default would take X-Forwarded-For from any
        # loopback peer, and anonymous rate limits are per address (docs/access.md "Client IP").
        proxy_headers=False,
        # Client WebSocket frames are small JSON commands; the default (16 MiB) would let one frame cost that.
        ws_max_size=WS_MAX_FRAME_BYTES,
    )
    server = _Uvicorn(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
    while not server.started:
        if task.done():
            await task  # raises why it could not start
            raise RuntimeError("the HTTP server stopped before it started")
        await asyncio.sleep(0.01)
    bound = int(sock.getsockname()[1])
    log.info("http serving", extra={"host": host, "port": bound, "target": target, "tls": tls is not None})
    return HttpServer(server=server, task=task, port=bound, upstream=upstream)


def url(host: str, port: int, *, tls: bool) -> str:
    """The URL a process reaches its own HTTP server at."""
    return f"{'https' if tls else 'http'}://{loopback_target(host, port)}"


async def run_gateway(
    *,
    target: str,
    host: str,
    port: int,
    cors_origins: Sequence[str] = (),
    grace_seconds: float = 10.0,
    tls: TlsFiles | None = None,
    upstream_tls: ClientTls | None = None,
    calls_per_channel: int | None = DEFAULT_CALLS_PER_CHANNEL,
) -> None:
    """`python -m wadm_grpc gateway`: the HTTP/JSON face alone, in front of the gRPC server at `target`,
    until SIGTERM or SIGINT (as grpc-gateway runs beside a remote server)."""
    from wadm_grpc.metrics.scrape import scraper

    metrics = Metrics()
    http = await start_http(
        target=target,
        host=host,
        port=port,
        cors_origins=cors_origins,
        tls=tls,
        upstream_tls=upstream_tls,
        metrics=metrics,
        scrape=scraper(metrics),
        calls_per_channel=calls_per_channel,
    )
    log.info(
        "wadm-grpc gateway started",
        extra={"http": url(host, http.port, tls=tls is not None), "port": http.port, "target": target},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": grace_seconds})
    await http.stop(grace_seconds)
    log.info("stopped")
