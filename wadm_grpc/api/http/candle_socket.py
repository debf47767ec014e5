"""Live candles on the trades WebSocket: `{"op": "subscribe", "candles": [{"symbol": ..., "timeframe": "1m"}]}`.

Each candle subscription is one StreamCandles call over the gateway's channel (the server validates,
computes and conflates); its candles become `{"type": "candle", "symbol", "timeframe", "candle"}` frames
on the socket, beside the trades. Every change is acknowledged with the whole candle set
(`{"type": "subscribed", "candles": [...]}`); a subscription the server refuses or ends is an error
frame and leaves the set. The candle streams' heartbeats are not forwarded (the socket has its own).
Each candle frame carries its stream's `resume_token`; an entry's `"resume_token"` resumes that stream
(docs/streams.md, "Resume").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from wadm_grpc.api.grpc.convert import TIMEFRAME_VALUES
from wadm_grpc.api.http.errors import status_of_rpc_error
from wadm_grpc.api.http.forward import Upstream
from wadm_grpc.api.http.render import StreamRenderer, as_dict
from wadm_grpc.domain.errors import InvalidArgumentError, Violations
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

METHOD = "/wadm.market.v1.MarketDataService/StreamCandles"
# At most this many candle streams per socket.
MAX_CANDLE_STREAMS = 20
_ENTRY_FIELDS = {"symbol", "timeframe", "exchanges", "update_interval", "resume_token"}

CandleKey = tuple[str, str, tuple[str, ...]]  # symbol as sent (upper case), timeframe label, exchanges
Send = Callable[[str], Awaitable[None]]


def _text(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


Entry = tuple[CandleKey, float | None, str]  # key, update interval in seconds, resume token


def candle_entries(value: object, problems: Violations) -> list[Entry]:
    """The (key, update interval in seconds, resume token) of each `candles` entry; what is wrong goes
    into `problems`."""
    if not isinstance(value, list) or not value:
        problems.add("candles", 'must be a non-empty list of {"symbol": ..., "timeframe": "1m"}')
        return []
    entries: list[Entry] = []
    for index, entry in enumerate(value[: MAX_CANDLE_STREAMS + 1]):
        where = f"candles[{index}]"
        if not isinstance(entry, dict) or set(entry) - _ENTRY_FIELDS:
            problems.add(where, f"must be an object with {', '.join(sorted(_ENTRY_FIELDS))}")
            continue
        symbol, label, exchanges = entry.get("symbol"), entry.get("timeframe"), entry.get("exchanges", [])
        update = entry.get("update_interval")
        token = entry.get("resume_token", "")
        if not isinstance(token, str):
            problems.add(
                f"{where}.resume_token", "must be a string (the resume_token of a candle frame received before)"
            )
        if not isinstance(symbol, str):
            problems.add(f"{where}.symbol", "must be a string")
        labels = [timeframe.label for timeframe in Timeframe]
        if label not in labels:
            problems.add(f"{where}.timeframe", f"must be one of {', '.join(labels)}")
        if not isinstance(exchanges, list) or not all(isinstance(item, str) for item in exchanges):
            problems.add(f"{where}.exchanges", "must be a list of strings")
        if update is not None and (isinstance(update, bool) or not isinstance(update, int | float)):
            problems.add(f"{where}.update_interval", "must be seconds (0.1 to 60)")
        if isinstance(symbol, str) and isinstance(label, str) and isinstance(exchanges, list):
            seconds = float(update) if isinstance(update, int | float) else None
            key = (symbol.strip().upper(), label, tuple(sorted(exchanges)))
            entries.append((key, seconds, token if isinstance(token, str) else ""))
    return entries


class CandleSubscriptions:
    """The candle streams of one socket."""

    def __init__(
        self, upstream: Upstream, metadata: list[tuple[str, str]], send: Send, renderer: StreamRenderer[str]
    ) -> None:
        self._upstream = upstream
        self._metadata = metadata
        self._send = send
        self._streams: dict[CandleKey, asyncio.Task[None]] = {}
        self._renderer = renderer  # the app's: an update a thousand sockets receive is rendered once

    def keys(self) -> list[dict[str, Any]]:
        """The current set, as the acknowledgement lists it."""
        return [
            {"symbol": symbol, "timeframe": label, **({"exchanges": list(exchanges)} if exchanges else {})}
            for symbol, label, exchanges in sorted(self._streams)
        ]

    async def apply(self, op: str, value: object) -> None:
        """Subscribe or unsubscribe the frame's `candles`; answer with the whole set (or an error)."""
        if op not in ("subscribe", "unsubscribe"):
            raise InvalidArgumentError.of("op", "candles go with op subscribe or unsubscribe")
        problems = Violations()
        entries = candle_entries(value, problems)
        wanted = {key for key, _, _ in entries} - set(self._streams)
        if op == "subscribe" and len(self._streams) + len(wanted) > MAX_CANDLE_STREAMS:
            problems.add("candles", f"at most {MAX_CANDLE_STREAMS} candle streams per socket")
        problems.raise_if_any()
        for key, update, token in entries:
            if op == "unsubscribe":
                task = self._streams.pop(key, None)
                if task is not None:
                    task.cancel()
            elif key not in self._streams:
                self._streams[key] = asyncio.ensure_future(self._stream(key, update, token))
        await self._send(_text({"type": "subscribed", "candles": self.keys()}))

    async def _stream(self, key: CandleKey, update: float | None, token: str) -> None:
        symbol, label, exchanges = key
        request = md.StreamCandlesRequest(
            symbol=symbol,
            timeframe=TIMEFRAME_VALUES[Timeframe.from_label(label)],
            exchanges=exchanges,
            resume_token=token,
        )
        if update is not None:
            request.update_interval.FromNanoseconds(int(update * 1e9))
        call = self._upstream.stream(METHOD)(request.SerializeToString(), metadata=self._metadata)
        names = {"symbol": symbol, "timeframe": label}

        def render(payload: bytes) -> str:
            message = md.StreamCandlesResponse.FromString(payload)
            candle = as_dict(message.candle)
            frame = {"type": "candle", "symbol": message.symbol, "timeframe": label, "candle": candle}
            return _text({**frame, "resume_token": message.resume_token})

        try:
            async for payload in call:
                if md.StreamCandlesResponse.FromString(payload).WhichOneof("event") == "candle":
                    await self._send(self._renderer.render(f"ws-candle {label}", payload, render))
        except grpc.aio.AioRpcError as error:
            self._streams.pop(key, None)
            failed = {"type": "error", "candles": [names], "error": as_dict(status_of_rpc_error(error))}
            with contextlib.suppress(Exception):
                await self._send(_text(failed))
        finally:
            call.cancel()

    async def close(self) -> None:
        """End every candle stream (the socket closed)."""
        tasks = list(self._streams.values())
        self._streams.clear()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)


def frame_without_candles(text: str) -> tuple[str | None, str, object] | None:
    """None for a frame without `candles` (or not a JSON object: the trades side refuses it); else (the
    frame's text without them, None when it asks nothing else; its op; the `candles` value)."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or "candles" not in frame:
        return None
    rest: Mapping[str, Any] = {name: value for name, value in frame.items() if name != "candles"}
    op = str(frame.get("op"))
    alone = set(rest) <= {"op"}
    return (None if alone else _text(dict(rest))), op, frame["candles"]
