"""WADM_METRICS_PORT: /metrics alone on a port of its own (for a scraper kept off the public HTTP port)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import uvicorn
from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from wadm_grpc.api.http.errors import error_response, simple_status
from wadm_grpc.api.http.server import _Uvicorn, bind_socket, uvicorn_tls_options
from wadm_grpc.api.tls import TlsFiles
from wadm_grpc.metrics.scrape import Scrape


@dataclass
class MetricsServer:
    """The started metrics server."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self, grace_seconds: float) -> None:
        """Stop serving."""
        self.server.config.timeout_graceful_shutdown = max(math.ceil(grace_seconds), 1)
        self.server.should_exit = True
        await self.task


async def serve_metrics(
    scrape: Scrape, *, host: str, port: int, reuse_port: bool = False, tls: TlsFiles | None = None
) -> MetricsServer:
    """GET /metrics on host:port (HTTPS with the server's certificate when `tls`)."""

    async def metrics(request: Request) -> Response:
        body, content_type = scrape()
        return Response(body, media_type=content_type)

    async def elsewhere(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))[:200]
        status = simple_status(code_pb2.NOT_FOUND, f"no route for {path}: this port serves /metrics only")
        await error_response(status)(scope, receive, send)

    app = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
    app.router.default = elsewhere
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, server_header=False, **uvicorn_tls_options(tls)
    )
    server = _Uvicorn(config)
    sock = bind_socket(host, port, reuse_port=reuse_port)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics-server")
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the metrics server stopped before it started")
        await asyncio.sleep(0.01)
    return MetricsServer(server=server, task=task, port=int(sock.getsockname()[1]))
