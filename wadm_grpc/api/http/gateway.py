"""The gateway's dispatch: route, build the request message, forward it, answer JSON (or a stream).

Every request ends as JSON: an answer, a stream, or a google.rpc.Status (unknown path 404, wrong method
405 with Allow, a bad query 400 naming the fields, whatever the server said by grpc-gateway's table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.requests import Request
from starlette.responses import Response

from wadm_grpc.api.grpc.market_data import CACHE_TTL_METADATA
from wadm_grpc.api.http.errors import (
    error_response,
    rate_limit_headers,
    rpc_error_response,
    simple_status,
    status_of_exception,
)
from wadm_grpc.api.http.forward import Upstream, forwarded_metadata, timeout_seconds
from wadm_grpc.api.http.observe import ROUTE_SCOPE_KEY
from wadm_grpc.api.http.query import build_request
from wadm_grpc.api.http.render import AnswerRenderer, StreamRenderer
from wadm_grpc.api.http.routes import Route, RouteMatch, Router
from wadm_grpc.api.http.streams import resume_from_header, stream_response, wants_event_stream
from wadm_grpc.api.http.templates import PathEncodingError
from wadm_grpc.domain.errors import InvalidArgumentError

log = logging.getLogger("wadm_grpc.http")

# Longer query strings are refused (400) before they are parsed: no field needs more.
MAX_QUERY_BYTES = 8192
MAX_BODY_BYTES = 1024 * 1024
# Answers the server did not mark as cached may change with every call: revalidate (ETag) each time.
UNCACHED = "no-cache"


def is_pretty(request: Request) -> bool:
    """`?pretty` (any value but false/0) asks for indented JSON."""
    value = request.query_params.get("pretty")
    return value is not None and value.lower() not in ("false", "0")


@dataclass
class Gateway:
    """Routes, the upstream gRPC server and the renderer; `dispatch` answers one request."""

    router: Router
    upstream: Upstream
    renderer: AnswerRenderer
    stream_renderer: StreamRenderer[bytes] = field(default_factory=StreamRenderer)

    async def dispatch(self, request: Request) -> Response:
        """The answer to `request`, never an exception (unexpected ones become INTERNAL, logged)."""
        pretty = is_pretty(request)
        try:
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            match, allowed = self.router.resolve(request.method, raw_path.decode("latin-1"))
            if match is None:
                return self._no_route(request, allowed, pretty=pretty)
            request.scope[ROUTE_SCOPE_KEY] = match.route.template.text
            return await self._forward(request, match, pretty=pretty)
        except (InvalidArgumentError, PathEncodingError) as error:
            if isinstance(error, PathEncodingError):
                error = InvalidArgumentError.of("path", str(error))
            return error_response(status_of_exception(error, where="http"), pretty=pretty)
        except grpc.aio.AioRpcError as error:
            return rpc_error_response(error, pretty=pretty)
        except Exception as error:
            return error_response(status_of_exception(error, where=f"http {request.method}"), pretty=pretty)

    def _no_route(self, request: Request, allowed: list[str], *, pretty: bool) -> Response:
        path = request.url.path[:200]
        if not allowed:
            return error_response(simple_status(code_pb2.NOT_FOUND, f"no route for {path}"), pretty=pretty)
        methods = ", ".join([*allowed, "HEAD", "OPTIONS"] if "GET" in allowed else [*allowed, "OPTIONS"])
        if request.method == "OPTIONS":  # not a CORS preflight (the middleware answers those)
            return Response(status_code=204, headers={"Allow": methods})
        status = simple_status(code_pb2.UNIMPLEMENTED, f"method {request.method[:20]} not allowed for {path}")
        return error_response(status, pretty=pretty, http_status_code=405, headers={"Allow": methods})

    async def _message(self, request: Request, match: RouteMatch) -> Message:
        route = match.route
        query = request.scope.get("query_string", b"")
        if len(query) > MAX_QUERY_BYTES:
            raise InvalidArgumentError.of("query", f"at most {MAX_QUERY_BYTES} bytes, got {len(query)}")
        ignore = [] if route.body in ("", "*") else [route.body]
        message = build_request(
            route.request_class,
            path_variables=match.variables,
            query=request.query_params.multi_items(),
            ignore=ignore,
        )
        if route.body:
            await _merge_body(request, route, message)
        resume_from_header(message, request.headers)
        return message

    async def _forward(self, request: Request, match: RouteMatch, *, pretty: bool) -> Response:
        route = match.route
        message = await self._message(request, match)
        peer = request.client.host if request.client else None
        metadata = forwarded_metadata(request.headers, peer)
        timeout = timeout_seconds(request.headers)
        payload = message.SerializeToString()
        if route.server_streaming:
            call = self.upstream.stream(route.grpc_path)(payload, metadata=metadata, timeout=timeout)
            try:
                await call.initial_metadata()  # sent once the server accepted the stream (or with its refusal)
                if call.done():
                    await call.read()  # raises the refusal's status as AioRpcError
            except BaseException:
                call.cancel()
                raise
            sse = wants_event_stream(request.headers.get("accept", ""))
            response = stream_response(call, route.response_class, self.stream_renderer, sse=sse)
            response.headers.update(rate_limit_headers(await call.initial_metadata()))
            return response
        unary = self.upstream.unary(route.grpc_path)(payload, metadata=metadata, timeout=timeout)
        answer: bytes = await unary
        rendered = self.renderer.render(route.response_class, answer, pretty=pretty)
        trailing = await unary.trailing_metadata()
        headers = {"ETag": rendered.etag, "Cache-Control": _cache_control(trailing), **rate_limit_headers(trailing)}
        if _matches(request.headers.get("if-none-match"), rendered.etag):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(rendered.body))
            return Response(status_code=200, headers=headers, media_type="application/json")
        return Response(rendered.body, media_type="application/json", headers=headers)


async def _merge_body(request: Request, route: Route, message: Message) -> None:
    """The JSON body into the request (`body: "*"`) or into one of its fields (`body: "field"`)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArgumentError.of("body", f"at most {MAX_BODY_BYTES} bytes, got {len(body)}")
    target = message if route.body == "*" else getattr(message, route.body)
    try:
        json_format.Parse(body or b"{}", target)
    except json_format.ParseError as error:
        raise InvalidArgumentError.of("body", str(error)[:200]) from None


def _cache_control(trailing: grpc.aio.Metadata | None) -> str:
    for key, value in trailing or ():
        if key == CACHE_TTL_METADATA and isinstance(value, str):
            try:
                seconds = int(float(value))
            except ValueError:
                break
            return f"max-age={max(seconds, 0)}"
    return UNCACHED


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return "*" in candidates or etag in candidates
