"""The observing interceptor: a request id, go-grpc-prometheus metrics and one access-log line per call.

Stream messages and bytes are counted in the (de)serializers, which grpc.aio runs in the call's own
task: that sees every message whether a handler yields it or writes it (StreamTrades writes). A unary
answer is serialised after the handler returns, so it is counted as it is returned. The request id comes
from `x-request-id` when sane, else is made; it is sent back as trailing metadata on every call (streams
send their initial metadata themselves, once subscribed: the gateway's signal that a stream was accepted;
a unary call's initial metadata goes out with its answer: sending it apart, as before, was one more
operation of grpc's core per call, ~10% of a cached answer's cost on the 2-core machine, issue 12).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from wadm_grpc.api.access_log import log_call, log_forwarded
from wadm_grpc.api.grpc.errors import Context
from wadm_grpc.api.grpc.wrapping import WrappingInterceptor, behavior_attribute
from wadm_grpc.logs import REQUEST_ID, request_id_from
from wadm_grpc.metrics.registry import Metrics

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

REQUEST_ID_METADATA = "x-request-id"
# Streams counted in wadm_stream_subscribers (reflection's bidi stream is not a subscriber).
TRADE_STREAMS = frozenset({"StreamTrades", "SubscribeTrades", "StreamCandles"})
# Set by the HTTP gateway on the calls it forwards: metrics say which face a call came in on.
FACE_METADATA = "x-wadm-face"


@dataclass(slots=True)
class _Tally:
    received: int = 0
    sent: int = 0
    bytes_sent: int = 0


_CALL: ContextVar[_Tally | None] = ContextVar("wadm_grpc_call", default=None)


def _counting_serializer(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    def counted(message: Any) -> bytes:
        data = message if serialize is None else serialize(message)
        tally = _CALL.get()
        if tally is not None:
            tally.sent += 1
            tally.bytes_sent += len(data)
        return data

    return counted


def _counting_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def counted(data: bytes) -> Any:
        tally = _CALL.get()
        if tally is not None:
            tally.received += 1
        return data if deserialize is None else deserialize(data)

    return counted


def _code_name(context: Context, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # grpc.aio keeps the raw number when a handler set it
        return next((status.name for status in grpc.StatusCode if status.value[0] == code), "UNKNOWN")
    return "UNKNOWN" if error is not None and not isinstance(error, grpc.aio.AbortError) else "OK"


class ObservingInterceptor(WrappingInterceptor):
    """Wraps every method handler once (outermost): request id, metrics, access log."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, handler: Handler, path: str) -> Handler:
        service, _, method = path.lstrip("/").rpartition("/")
        kind = (
            ("bidi_stream" if handler.response_streaming else "client_stream")
            if handler.request_streaming
            else ("server_stream" if handler.response_streaming else "unary")
        )
        attribute = behavior_attribute(handler)
        behavior = getattr(handler, attribute)
        observe = _Observer(self._metrics, kind, service, method, streaming=method in TRADE_STREAMS)
        wrapped_behavior: Callable[..., Any]
        if handler.response_streaming and inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                call = observe.begin(context, unary_request=not handler.request_streaming)
                error: BaseException | None = None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    observe.end(call, context, error)

            wrapped_behavior = streaming
        else:

            async def plain(request: Any, context: Context) -> Any:
                call = observe.begin(context, unary_request=not handler.request_streaming)
                error: BaseException | None = None
                try:
                    answer = await behavior(request, context)
                    if not handler.response_streaming:  # serialised after the handler returns, so counted here
                        call.tally.sent += 1
                        call.tally.bytes_sent += len(answer) if isinstance(answer, bytes) else answer.ByteSize()
                    return answer
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    observe.end(call, context, error)

            wrapped_behavior = plain
        replaced: Handler = handler._replace(  # type: ignore[attr-defined]
            request_deserializer=_counting_deserializer(handler.request_deserializer),
            response_serializer=_counting_serializer(handler.response_serializer),
            **{attribute: wrapped_behavior},
        )
        return replaced


@dataclass(slots=True)
class _Call:
    request_id: str
    face: str
    started: float
    tally: _Tally
    tokens: tuple[Any, Any]


class _Series:
    """One method's metric children for one face (looked up once: `labels()` takes a lock each time)."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str, str]) -> None:
        self._metrics = metrics
        self._labels = labels
        self.started = metrics.grpc_started.labels(*labels)
        self.seconds = metrics.grpc_seconds.labels(*labels)
        self.received = metrics.grpc_received.labels(*labels)
        self.sent = metrics.grpc_sent.labels(*labels)
        self._handled: dict[str, Any] = {}

    def handled(self, code: str) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._metrics.grpc_handled.labels(*self._labels, code)
            self._handled[code] = child
        return child


class _Observer:
    """Metrics and logs for one method."""

    def __init__(self, metrics: Metrics, kind: str, service: str, method: str, *, streaming: bool) -> None:
        self._metrics = metrics
        self._labels = (kind, service, method)
        self._method = method
        self._path = f"{service}/{method}"
        self._streaming = streaming
        self._series = {face: _Series(metrics, (kind, service, method, face)) for face in ("grpc", "http")}

    def begin(self, context: Context, *, unary_request: bool) -> _Call:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        face = "http" if metadata.get(FACE_METADATA) == "http" else "grpc"
        request_id = request_id_from(metadata.get(REQUEST_ID_METADATA))
        tally = _Tally(received=1 if unary_request else 0)
        tokens = (REQUEST_ID.set(request_id), _CALL.set(tally))
        context.set_trailing_metadata(((REQUEST_ID_METADATA, request_id),))  # kept by an abort too
        self._series[face].started.inc()
        if self._streaming:
            self._metrics.stream_subscribers.labels(self._method).inc()
        return _Call(request_id, face, time.perf_counter(), tally, tokens)

    def end(self, call: _Call, context: Context, error: BaseException | None) -> None:
        seconds = time.perf_counter() - call.started
        code = _code_name(context, error)
        series = self._series[call.face]
        series.handled(code).inc()
        series.seconds.observe(seconds)
        series.received.inc(call.tally.received)
        series.sent.inc(call.tally.sent)
        if self._streaming:
            self._metrics.stream_subscribers.labels(self._method).dec()
        trailing = tuple(context.trailing_metadata() or ())
        if not any(key == REQUEST_ID_METADATA for key, _ in trailing):
            context.set_trailing_metadata((*trailing, (REQUEST_ID_METADATA, call.request_id)))
        method = self._path
        if call.face == "grpc":
            log_call(
                face="grpc",
                method=method,
                code=code,
                ms=seconds * 1000,
                bytes_sent=call.tally.bytes_sent,
                peer=context.peer(),
            )
        else:  # the gateway writes the access line of the calls it forwards, with their HTTP status
            log_forwarded(method=method, code=code, ms=seconds * 1000)
        try:
            REQUEST_ID.reset(call.tokens[0])
            _CALL.reset(call.tokens[1])
        except ValueError:  # a stream closed from another context (garbage collected): nothing to restore
            pass
