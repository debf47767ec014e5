"""The WebSocket `/api/v1/market/ws/trades`: SubscribeTrades' HTTP face, JSON text frames both ways.

Each connection is one SubscribeTrades call over the gateway's channel (forward.py), so validation,
errors and the slow-consumer policy are the gRPC server's. Here: JSON <-> messages, and the errors of
frames that cannot become a message (invalid JSON, unknown op, wrong types), answered as error frames.
Frames with `candles` open or cancel StreamCandles calls instead (candle_socket.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import status_pb2
from starlette.websockets import WebSocket, WebSocketDisconnect

from wadm_grpc.api.http.candle_socket import CandleSubscriptions, frame_without_candles
from wadm_grpc.api.http.errors import status_of_exception, status_of_rpc_error
from wadm_grpc.api.http.forward import Upstream, forwarded_metadata
from wadm_grpc.api.http.render import StreamRenderer, as_dict
from wadm_grpc.domain.errors import InvalidArgumentError, Violations
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

PATH = "/api/v1/market/ws/trades"
METHOD = "/wadm.market.v1.MarketDataService/SubscribeTrades"
# RFC 6455 close codes: "try again later" for a cut-off or draining server, else "internal error".
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
# RFC 6455 1008 "policy violation": no key, an unknown or revoked one, or one without the stream scope.
CLOSE_POLICY_VIOLATION = 1008
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# A close reason is at most 123 bytes (RFC 6455 5.5).
MAX_REASON_BYTES = 123
# Like the server's stall limit: a browser that takes no frame for this long is cut off, not waited for.
SEND_STALL_SECONDS = 5.0
_FIELDS = {
    "subscribe": {"op", "symbols", "exchanges", "heartbeat_interval", "resume_token"},
    "unsubscribe": {"op", "symbols"},
}
_FIELDS["ping"] = {"op"}


def _strings(frame: dict[str, Any], key: str, problems: Violations) -> list[str]:
    value = frame.get(key, [])
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    problems.add(key, "must be a list of strings")
    return []


def _heartbeat(value: object, problems: Violations) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.add("heartbeat_interval", "must be seconds (5) or a duration (5s)")
        return None
    try:
        if not isinstance(value, str):
            return float(value)
        if value.endswith("s"):  # protobuf's JSON form of a Duration
            duration = duration_pb2.Duration()
            duration.FromJsonString(value)
            return duration.ToNanoseconds() / 1e9
        return float(value)
    except ValueError:
        problems.add("heartbeat_interval", "must be seconds (5) or a duration (5s)")
        return None


def _frame(text: str) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except ValueError as error:
        raise InvalidArgumentError.of("frame", f"is not JSON ({str(error)[:80]})") from None
    if not isinstance(frame, dict):
        raise InvalidArgumentError.of("frame", 'must be a JSON object, e.g. {"op": "ping"}')
    return frame


def auth_key_of(text: str) -> str | None:
    """The key of an {"op": "auth", "key": KEY} frame, None for any other frame (a malformed auth frame is
    InvalidArgumentError). Browsers cannot set headers on a WebSocket: this first frame stands for them."""
    try:
        frame = _frame(text)
    except InvalidArgumentError:
        return None  # not an auth frame: handled (and refused) as a command
    if frame.get("op") != "auth":
        return None
    key = frame.get("key")
    if not isinstance(key, str) or not key.strip() or set(frame) - {"op", "key"}:
        raise InvalidArgumentError.of("key", 'the auth frame is {"op": "auth", "key": "<API key>"}')
    return key.strip()


def request_of(text: str, default_heartbeat: float | None) -> md.SubscribeTradesRequest:
    """The SubscribeTradesRequest a client frame asks for, or InvalidArgumentError saying why there is none."""
    frame = _frame(text)
    op = frame.get("op")
    if op == "auth":
        raise InvalidArgumentError.of("op", "auth must be the first frame (or send X-API-Key with the upgrade)")
    if not isinstance(op, str) or op not in _FIELDS:
        raise InvalidArgumentError.of("op", "must be one of subscribe, unsubscribe, ping")
    problems = Violations()
    for unknown in sorted(set(frame) - _FIELDS[op])[:5]:
        problems.add(str(unknown)[:40], f"unknown field for op {op}")
    request = md.SubscribeTradesRequest()
    if op == "ping":
        request.ping.SetInParent()
    elif op == "unsubscribe":
        request.unsubscribe.symbols.extend(_strings(frame, "symbols", problems))
    else:
        request.subscribe.symbols.extend(_strings(frame, "symbols", problems))
        request.subscribe.exchanges.extend(_strings(frame, "exchanges", problems))
        raw = frame.get("heartbeat_interval")
        seconds = default_heartbeat if raw is None else _heartbeat(raw, problems)
        if seconds is not None:
            request.subscribe.heartbeat_interval.FromNanoseconds(int(seconds * 1e9))
        token = frame.get("resume_token", "")
        if isinstance(token, str):
            request.subscribe.resume_token = token
        else:
            problems.add("resume_token", "must be a string (the resume_token of a message received before)")
    problems.raise_if_any()
    return request


def frame_of(message: md.SubscribeTradesResponse) -> dict[str, Any]:
    """The JSON frame of a server message: {"type": <event>, ...its fields}, an error as {"error": Status}."""
    event = message.WhichOneof("event")
    if event == "error":
        return {"type": "error", "error": as_dict(message.error)}
    if event is None:
        return {"type": "unknown"}
    frame = {"type": event, **as_dict(getattr(message, event))}
    if event in ("trades", "heartbeat"):  # the frames a client resumes after (acknowledgements stay as they were)
        frame["resume_token"] = message.resume_token
    return frame


def _frame_text(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _render_frame(payload: bytes) -> str:
    return _frame_text(frame_of(md.SubscribeTradesResponse.FromString(payload)))


def _error_frame(status: status_pb2.Status) -> dict[str, Any]:
    return {"type": "error", "error": as_dict(status)}


def _reason(text: str) -> str:
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


async def serve_trades_socket(websocket: WebSocket, upstream: Upstream, renderer: StreamRenderer[str]) -> None:
    """Serve one connection until either side ends it."""
    query = websocket.query_params.get("heartbeat_interval")
    await websocket.accept()
    default_heartbeat: float | None = None
    if query is not None:
        problems = Violations()
        default_heartbeat = _heartbeat(query, problems)
        if default_heartbeat is None:
            await websocket.close(1008, "heartbeat_interval must be seconds (5) or a duration (5s)")
            return
    peer = websocket.client.host if websocket.client else None
    headers = dict(websocket.headers)
    pending: list[str] = []
    if "x-api-key" not in headers and "authorization" not in headers:
        try:
            first = await websocket.receive_text()
            key = auth_key_of(first)
        except WebSocketDisconnect:
            return
        except InvalidArgumentError as refused:
            await _close(websocket, CLOSE_POLICY_VIOLATION, str(refused))
            return
        if key is None:
            pending.append(first)  # not auth: the first command, the call goes without a key
        else:
            headers["x-api-key"] = key  # the server checks it like any key (access/interceptor.py)
    metadata = forwarded_metadata(headers, peer)
    call = upstream.bidi(METHOD)(metadata=metadata)
    sending = asyncio.Lock()

    async def send(text: str) -> None:
        async with sending, asyncio.timeout(SEND_STALL_SECONDS):
            await websocket.send_text(text)

    candles = CandleSubscriptions(upstream, metadata, send, renderer)  # {"candles": [...]}: StreamCandles calls

    async def client_to_server() -> None:
        while True:
            text = pending.pop() if pending else await websocket.receive_text()
            try:
                with_candles = frame_without_candles(text)
                if with_candles is not None:
                    rest, op, value = with_candles
                    await candles.apply(op, value)
                    if rest is None:
                        continue
                    text = rest
                request = request_of(text, default_heartbeat)
            except InvalidArgumentError as error:
                await send(_frame_text(_error_frame(status_of_exception(error, where="websocket"))))
                continue
            await call.write(request.SerializeToString())

    async def server_to_client() -> None:
        async for payload in call:
            await send(renderer.render("ws", payload, _render_frame))  # identical batches are rendered once

    reading = asyncio.ensure_future(client_to_server())
    writing = asyncio.ensure_future(server_to_client())
    try:
        done, _ = await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
        finished = done.pop()
        error = finished.exception()
        if isinstance(error, WebSocketDisconnect):
            return
        if isinstance(error, grpc.aio.AioRpcError):
            status = status_of_rpc_error(error)
            code = CLOSE_TRY_AGAIN_LATER if error.code() in RETRYABLE else CLOSE_INTERNAL_ERROR
            code = CLOSE_POLICY_VIOLATION if error.code() in REFUSED else code
            await _close(websocket, code, f"{grpc.StatusCode(error.code()).name}: {status.message}")
        elif isinstance(error, TimeoutError):
            await _close(websocket, CLOSE_TRY_AGAIN_LATER, "client took no data; reconnect")
        elif isinstance(error, Exception):
            await _close(websocket, CLOSE_INTERNAL_ERROR, status_of_exception(error, where="websocket").message)
        else:
            await _close(websocket, CLOSE_INTERNAL_ERROR, "stream ended")
    finally:
        call.cancel()  # frees the server's subscription at once when the client left
        await candles.close()
        for task in (reading, writing):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(reading, writing, return_exceptions=True)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(SEND_STALL_SECONDS):
            await websocket.close(code, _reason(reason))
