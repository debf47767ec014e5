"""ASGI middleware for the HTTP face: a request id, HTTP metrics by route template, one access-log line.

The request id (a sane `X-Request-Id` from the client, else a new one) replaces the request's header, so
the gateway forwards it to the gRPC server as `x-request-id` metadata: both faces log the same id. It is
returned in the `X-Request-Id` response header (a WebSocket's: in its handshake answer).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wadm_grpc.api.access_log import log_call
from wadm_grpc.logs import REQUEST_ID, request_id_from
from wadm_grpc.metrics.registry import Metrics

REQUEST_ID_HEADER = b"x-request-id"
# The gateway puts the matched route's template here (e.g. /api/v1/market/candles/{symbol}/{timeframe}).
ROUTE_SCOPE_KEY = "wadm.route"
# Paths not matched by any route share one label: a scanner's random paths must not create series.
UNMATCHED = "other"


def _route(scope: Scope, fixed_paths: frozenset[str]) -> str:
    template = scope.get(ROUTE_SCOPE_KEY)
    if isinstance(template, str):
        return template
    path = scope.get("path", "")
    if path in fixed_paths:
        return str(path)
    route = scope.get("route")
    route_path = getattr(route, "path", None)
    return route_path if isinstance(route_path, str) else UNMATCHED


class ObservingMiddleware:
    """Request ids, metrics and the access log for every HTTP request and WebSocket."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None, fixed_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.fixed_paths = fixed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        sent = next((value for name, value in headers if name == REQUEST_ID_HEADER), None)
        request_id = request_id_from(sent.decode("latin-1") if sent is not None else None)
        scope["headers"] = [(n, v) for n, v in headers if n != REQUEST_ID_HEADER] + [
            (REQUEST_ID_HEADER, request_id.encode())
        ]
        token = REQUEST_ID.set(request_id)
        status = 0
        size = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "websocket.accept":
                status = 101
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
            elif kind == "websocket.send":
                size += len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
            elif kind == "websocket.close" and status == 0:
                status = 403  # refused before it was accepted
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            method = "WS" if scope["type"] == "websocket" else str(scope.get("method", ""))
            route = _route(scope, self.fixed_paths)
            code = str(status or 500)
            if self.metrics is not None:
                self.metrics.http_requests.labels(method, route, code).inc()
                self.metrics.http_seconds.labels(method, route).observe(seconds)
            log_call(face="http", method=f"{method} {route}", code=code, ms=seconds * 1000, bytes_sent=size)
            REQUEST_ID.reset(token)
