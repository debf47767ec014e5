"""The one place JSON is rendered: answers, stream lines and errors, all proto3 canonical JSON.

Field names as in the protos (snake_case, as grpcurl prints them), fields without presence printed even
when unset, int64 as strings, decimals stay the strings they are. Answers are rendered once per distinct
gRPC answer: a bounded LRU maps the answer's bytes to its JSON and ETag, so a cached answer costs the
HTTP side a dictionary lookup, not a parse and a render per request.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

# Rendered answers kept, by total size: a 1,000-candle answer renders to about 450 KB.
DEFAULT_RENDER_CACHE_BYTES = 64 * 1024 * 1024
# Distinct stream messages remembered rendered: a few seconds of every symbol's batches.
DEFAULT_STREAM_RENDERS = 4096
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}
_PRETTY = {"indent": 2, "ensure_ascii": False}


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer's JSON body and its ETag (a strong validator of exactly these bytes)."""

    body: bytes
    etag: str


def as_dict(message: Message) -> dict[str, Any]:
    """`message` as canonical JSON's object."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    """JSON bytes, compact unless `pretty`; a trailing newline either way (curl prompts stay on their line)."""
    return (json.dumps(value, **(_PRETTY if pretty else _COMPACT)) + "\n").encode()


def status_json(status: status_pb2.Status, *, pretty: bool = False) -> bytes:
    """A google.rpc.Status (code, message, details with @type) as JSON."""
    return dumps(as_dict(status), pretty=pretty)


def stream_line(envelope: str, message: Message) -> bytes:
    """One NDJSON line: {"result": ...} or {"error": ...} (grpc-gateway's stream envelope)."""
    return dumps({envelope: as_dict(message)})


class AnswerRenderer:
    """gRPC answer bytes -> Rendered JSON, remembered in an LRU bounded by total bytes."""

    def __init__(self, *, max_bytes: int = DEFAULT_RENDER_CACHE_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, bool, bytes], Rendered] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def render(self, response_class: type[Message], payload: bytes, *, pretty: bool) -> Rendered:
        """The JSON of `payload`, a serialised `response_class`, rendered at most once while remembered."""
        key = (response_class.DESCRIPTOR.full_name, pretty, payload)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        body = dumps(as_dict(response_class.FromString(payload)), pretty=pretty)
        rendered = Rendered(body=body, etag='"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"')
        size = len(payload) + len(body)
        if size <= self._max_bytes:
            self._entries[key] = rendered
            self._bytes += size
            while self._bytes > self._max_bytes:
                (_, _, old_payload), old = self._entries.popitem(last=False)
                self._bytes -= len(old_payload) + len(old.body)
        return rendered


T = TypeVar("T")


class StreamRenderer(Generic[T]):
    """Stream message bytes -> their rendering, remembered for the last `max_entries` distinct messages.

    The server sends every stream of a symbol the same bytes for the same batch (api/grpc/stream_wire.py),
    so a batch that a thousand clients receive is rendered once, not a thousand times. Keyed on the bytes
    and the form (`ndjson`, `sse`, `ws`, ...), as AnswerRenderer keys unary answers.
    """

    def __init__(self, *, max_entries: int = DEFAULT_STREAM_RENDERS) -> None:
        self._entries: OrderedDict[tuple[str, bytes], T] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def render(self, form: str, payload: bytes, build: Callable[[bytes], T]) -> T:
        """`build(payload)`, or what it gave for the same form and bytes while remembered."""
        key = (form, payload)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        rendered = build(payload)
        self._entries[key] = rendered
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return rendered
