"""What the server's interceptors share: each wraps every method handler once, and reuses the wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


def behavior_attribute(handler: Handler) -> str:
    """The handler field that holds its behaviour: unary_unary, unary_stream, stream_unary or stream_stream."""
    into = "stream" if handler.request_streaming else "unary"
    out = "stream" if handler.response_streaming else "unary"
    return f"{into}_{out}"


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Calls `wrap` once per method handler the server finds (again only if the handler changes)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        found = self._wrapped.get(method)
        if found is None or found[0] is not handler:
            found = (handler, self.wrap(handler, method))
            self._wrapped[method] = found
        return found[1]

    def wrap(self, handler: Handler, method: str) -> Handler:
        """`handler` for `method` (the full path, /package.Service/Method) with this interceptor's work."""
        raise NotImplementedError
