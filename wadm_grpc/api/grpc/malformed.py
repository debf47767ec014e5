"""Request bytes that do not decode are INVALID_ARGUMENT, for every RPC the server has (ours, health, reflection).

grpc.aio runs a method's request deserializer before the handler; when it raises (protobuf's DecodeError),
the caller gets UNKNOWN with the decoder's internal text (INTERNAL on client streams) and the log a
traceback per call. This interceptor gives every handler a deserializer that cannot raise: undecodable
bytes become a marker, and the handler answers the marker with INVALID_ARGUMENT before any service code
runs (for a client stream: when the bad message is reached, so earlier messages are handled as usual).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from wadm_grpc.api.grpc.errors import Context, abort
from wadm_grpc.api.grpc.wrapping import WrappingInterceptor, behavior_attribute
from wadm_grpc.domain.errors import InvalidArgumentError

log = logging.getLogger("wadm_grpc.api")

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class MalformedMessage:
    """Stands for a request message whose bytes did not decode."""

    __slots__ = ("reason", "size")

    def __init__(self, size: int, reason: str) -> None:
        self.size = size
        self.reason = reason


def _error(method: str, malformed: MalformedMessage) -> InvalidArgumentError:
    log.warning("malformed request message", extra={"rpc": method, "bytes": malformed.size, "reason": malformed.reason})
    return InvalidArgumentError.of(
        "request", f"malformed request message: its {malformed.size} bytes are not a valid {method} request"
    )


def _safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # DecodeError, or whatever else a generated parser raises on bad input
            return MalformedMessage(len(data), type(error).__name__)

    return decode


async def _checked_stream(method: str, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, MalformedMessage):
            raise _error(method, request)
        yield request


def _unary_request(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, MalformedMessage):
                await abort(context, _error(method, request), rpc=method)
            async for response in behavior(request, context):
                yield response

        return streaming

    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, MalformedMessage):
            await abort(context, _error(method, request), rpc=method)
        return await behavior(request, context)

    return unary


def _stream_request(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    """The bad message ends the call with INVALID_ARGUMENT however the handler reacts to the error raised
    by its request iterator (our handlers map it themselves; library handlers let it escape)."""
    if inspect.isasyncgenfunction(behavior):

        async def streaming(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(_checked_stream(method, requests), context):
                    yield response
            except InvalidArgumentError as error:
                await abort(context, error, rpc=method)

        return streaming

    async def unary(requests: AsyncIterator[Any], context: Context) -> Any:
        try:
            return await behavior(_checked_stream(method, requests), context)
        except InvalidArgumentError as error:
            await abort(context, error, rpc=method)

    return unary


def guarded(handler: Handler, method: str) -> Handler:
    """`handler` with a deserializer that cannot raise and a behaviour that answers malformed messages."""
    if handler.request_deserializer is None:  # raw bytes in: nothing to decode
        return handler
    attribute = behavior_attribute(handler)
    behavior = getattr(handler, attribute)
    wrap = _stream_request if handler.request_streaming else _unary_request
    replaced: Handler = handler._replace(  # type: ignore[attr-defined]
        request_deserializer=_safe(handler.request_deserializer), **{attribute: wrap(method, behavior)}
    )
    return replaced


class MalformedRequestInterceptor(WrappingInterceptor):
    """Applies `guarded` to every method handler the server finds."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        return guarded(handler, method.rsplit("/", 1)[-1])
