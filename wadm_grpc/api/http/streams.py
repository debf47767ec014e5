"""Server-streaming RPCs over HTTP: NDJSON (grpc-gateway's envelope) or, on request, Server-Sent Events.

NDJSON: one {"result": <message>} line per message, a final {"error": <Status>} line when the stream ends
with an error (the 200 is already sent by then). SSE: one event per message, named after the message's
oneof (`trades`, `heartbeat`), and `event: error` at the end. Each SSE event's `id:` is the message's
resume token, so a reconnecting EventSource sends it back as `Last-Event-ID`, which resumes the stream
(as the `resume_token` query parameter does, for NDJSON too: every line carries the token). Every
message is flushed as it comes; the server's heartbeats keep proxies from cutting idle streams. A client
that goes away cancels the gRPC call at once (Starlette cancels the body iterator on http.disconnect; the
call is cancelled in `finally`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.responses import StreamingResponse

from wadm_grpc.api.http.errors import status_of_rpc_error
from wadm_grpc.api.http.render import StreamRenderer, as_dict, stream_line

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_event_stream(accept: str) -> bool:
    """True when the client asked for SSE (an EventSource sends `Accept: text/event-stream`)."""
    return any(part.split(";")[0].strip() == EVENT_STREAM for part in accept.split(","))


LAST_EVENT_ID = "last-event-id"
RESUME_FIELD = "resume_token"


def _sse(event: str, data: dict[str, Any], event_id: str = "") -> bytes:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def resume_from_header(message: Message, headers: Mapping[str, str]) -> None:
    """An EventSource's `Last-Event-ID` (our last event's resume token) resumes a stream that has a
    resume_token field, unless the query set one."""
    last = headers.get(LAST_EVENT_ID, "").strip()
    if last and RESUME_FIELD in message.DESCRIPTOR.fields_by_name and not getattr(message, RESUME_FIELD):
        setattr(message, RESUME_FIELD, last)


def _event_name(message: Message) -> str:
    oneofs = message.DESCRIPTOR.oneofs
    if oneofs:
        chosen = message.WhichOneof(oneofs[0].name)
        if chosen:
            return str(chosen)
    return "message"


def _renderer(response_class: type[Message], *, sse: bool) -> Callable[[bytes], bytes]:
    def render(payload: bytes) -> bytes:
        message = response_class.FromString(payload)
        if not sse:
            return stream_line("result", message)
        return _sse(_event_name(message), as_dict(message), getattr(message, RESUME_FIELD, ""))

    return render


async def _messages(
    call: grpc.aio.UnaryStreamCall[bytes, bytes],
    response_class: type[Message],
    renderer: StreamRenderer[bytes],
    *,
    sse: bool,
) -> AsyncIterator[bytes]:
    failed: status_pb2.Status | None = None
    form = f"{'sse' if sse else 'ndjson'} {response_class.DESCRIPTOR.full_name}"
    render = _renderer(response_class, sse=sse)
    try:
        try:
            async for payload in call:
                yield renderer.render(form, payload, render)  # identical batches are rendered once
        except grpc.aio.AioRpcError as error:
            failed = status_of_rpc_error(error)
        if failed is not None:
            yield _sse("error", as_dict(failed)) if sse else stream_line("error", failed)
    finally:
        call.cancel()  # no-op when the call ended; frees the server's subscription at once when it did not


def stream_response(
    call: grpc.aio.UnaryStreamCall[bytes, bytes],
    response_class: type[Message],
    renderer: StreamRenderer[bytes],
    *,
    sse: bool,
) -> StreamingResponse:
    """The streaming answer for an accepted call."""
    return StreamingResponse(
        _messages(call, response_class, renderer, sse=sse),
        media_type=EVENT_STREAM if sse else NDJSON,
        headers=STREAM_HEADERS,
    )
