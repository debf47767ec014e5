"""The ASGI app: the gateway's routes, liveness and readiness, CORS, and Status JSON for every error.

Starlette's own 404/405/500 answers are HTML or text; here every path reaches one endpoint that answers
JSON, and the last-resort handlers (errors outside it) answer a google.rpc.Status too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from wadm_grpc.api.http.docs import docs_routes
from wadm_grpc.api.http.errors import error_response, simple_status, status_of_exception
from wadm_grpc.api.http.forward import Upstream
from wadm_grpc.api.http.gateway import Gateway, is_pretty
from wadm_grpc.api.http.observe import ObservingMiddleware
from wadm_grpc.api.http.page import page_routes
from wadm_grpc.api.http.render import AnswerRenderer, StreamRenderer, dumps
from wadm_grpc.api.http.routes import Router, build_routes
from wadm_grpc.api.http.websocket import PATH as TRADES_SOCKET_PATH
from wadm_grpc.api.http.websocket import serve_trades_socket
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.metrics.scrape import Scrape

LIVENESS_PATHS = ("/healthz", "/api/v1/system/health")
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Headers a browser may send cross-origin, and those its scripts may read.
CORS_REQUEST_HEADERS = ["authorization", "content-type", "grpc-timeout", "if-none-match", "x-api-key", "x-request-id"]
CORS_EXPOSED_HEADERS = [
    "ETag",
    "Cache-Control",
    "Retry-After",
    "Content-Type",
    "WWW-Authenticate",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-Request-Id",
]

Handler = Callable[[Request], Awaitable[Response]]


def _json(value: object, request: Request, status_code: int = 200) -> Response:
    return Response(dumps(value, pretty=is_pretty(request)), status_code=status_code, media_type="application/json")


def build_app(
    upstream: Upstream,
    *,
    cors_origins: Sequence[str] = (),
    renderer: AnswerRenderer | None = None,
    metrics: Metrics | None = None,
    scrape: Scrape | None = None,
) -> Starlette:
    """The HTTP/JSON face of the gRPC server behind `upstream` (routes from the protos' http rules);
    `metrics` count its requests, and `scrape` answers GET /metrics."""
    gateway = Gateway(router=Router(build_routes()), upstream=upstream, renderer=renderer or AnswerRenderer())

    async def alive(request: Request) -> Response:
        return _json({"status": "SERVING"}, request)

    async def ready(request: Request) -> Response:
        serving, name = await upstream.serving()
        if serving:
            return _json({"status": name}, request)
        status = simple_status(code_pb2.UNAVAILABLE, f"not ready: the gRPC server reports {name}")
        return error_response(status, pretty=is_pretty(request))

    system: dict[str, Handler] = dict.fromkeys(LIVENESS_PATHS, alive)
    system[READINESS_PATH] = ready
    if scrape is not None:

        async def metrics_text(request: Request) -> Response:
            body, content_type = scrape()
            return Response(body, media_type=content_type)

        system[METRICS_PATH] = metrics_text

    async def endpoint(request: Request) -> Response:
        handler = system.get(request.url.path)
        if handler is None:
            return await gateway.dispatch(request)
        if request.method in ("GET", "HEAD"):
            return await handler(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": "GET, HEAD, OPTIONS"})
        status = simple_status(code_pb2.UNIMPLEMENTED, f"method {request.method[:20]} not allowed")
        return error_response(status, http_status_code=405, headers={"Allow": "GET, HEAD, OPTIONS"})

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        # Starlette's own routes (the OpenAPI document, Swagger UI) raise these; answer like the gateway does.
        codes = {404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED}
        code = codes.get(error.status_code, code_pb2.INVALID_ARGUMENT)
        return error_response(
            simple_status(code, str(error.detail)[:200]),
            http_status_code=error.status_code,
            headers=dict(error.headers or {}),
        )

    async def unexpected(request: Request, error: Exception) -> Response:
        return error_response(status_of_exception(error, where=f"http {request.method}"))

    fixed = frozenset(system)
    middleware = [Middleware(ObservingMiddleware, metrics=metrics, fixed_paths=fixed)]
    if cors_origins:
        methods = sorted({route.http_method for route in gateway.router.routes} | {"GET", "HEAD", "OPTIONS"})
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=methods,
                allow_headers=CORS_REQUEST_HEADERS,
                expose_headers=CORS_EXPOSED_HEADERS,
                max_age=600,
            )
        )

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)

    docs = docs_routes(gateway.router.routes, liveness_paths=LIVENESS_PATHS, readiness_path=READINESS_PATH)

    frames: StreamRenderer[str] = StreamRenderer()

    async def trades_socket(websocket: WebSocket) -> None:
        await serve_trades_socket(websocket, upstream, frames)

    app = Starlette(
        routes=[*docs, WebSocketRoute(TRADES_SOCKET_PATH, trades_socket), *page_routes()],
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )
    # Every path and method no Starlette route claims reaches the gateway (Starlette's own 404/405 never
    # answer); routes added later (a WebSocket, an OpenAPI document) are matched first.
    app.router.default = fallback
    app.state.gateway = gateway
    return app
