"""Calls forwarded to the gRPC server over a channel, as grpc-gateway does: every interceptor and handler of
the gRPC face (validation, errors, and later keys, limits, metrics) applies to HTTP calls unchanged.

Bytes go through untouched in both directions (no serializer on the channel), so a cached answer is
never decoded on the way: the renderer keys its JSON on those bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from wadm_client.pool import PooledChannel
from wadm_grpc.domain.errors import InvalidArgumentError

# Client headers passed to the server as metadata under their own name.
FORWARDED_HEADERS = ("authorization", "x-api-key", "x-request-id", "traceparent", "tracestate")
# Added to every forwarded call: the server's metrics label it face="http" (and it logs the call here).
FACE_METADATA = ("x-wadm-face", "http")
# grpc-gateway's convention: `Grpc-Metadata-Foo: bar` arrives as metadata `foo: bar`.
METADATA_HEADER_PREFIX = "grpc-metadata-"
_METADATA_KEY = re.compile(r"[0-9a-z_.-]{1,64}")
_METADATA_VALUE = re.compile(r"[\x20-\x7e]{0,4096}")
_GRPC_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_TIMEOUT_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

# Long streams through the gateway: keep the channel alive as the server allows (api/grpc/server.py).
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


def forwarded_metadata(headers: Mapping[str, str], peer_host: str | None) -> list[tuple[str, str]]:
    """The metadata a request's headers become; x-forwarded-for gains the peer (proxies before us kept)."""
    metadata: list[tuple[str, str]] = []
    for name, value in headers.items():
        if name in FORWARDED_HEADERS:
            key = name
        elif name.startswith(METADATA_HEADER_PREFIX):
            key = name.removeprefix(METADATA_HEADER_PREFIX)
        elif name == "user-agent":
            key = "grpcgateway-user-agent"  # gRPC sets its own user-agent
        else:
            continue
        # gRPC refuses reserved, binary or non-ASCII metadata: such headers are dropped, not a 500.
        if (
            key.startswith("grpc-")
            or key.endswith("-bin")
            or key == FACE_METADATA[0]
            or not _METADATA_KEY.fullmatch(key)
        ):
            continue
        if _METADATA_VALUE.fullmatch(value):
            metadata.append((key, value))
    chain = [part for part in (headers.get("x-forwarded-for"), peer_host) if part]
    if chain and all(_METADATA_VALUE.fullmatch(part) for part in chain):
        metadata.append(("x-forwarded-for", ", ".join(chain)))
    metadata.append(FACE_METADATA)
    host = headers.get("host")
    if host and _METADATA_VALUE.fullmatch(host):
        metadata.append(("x-forwarded-host", host))
    return metadata


def timeout_seconds(headers: Mapping[str, str]) -> float | None:
    """The client's deadline from a `Grpc-Timeout` header (gRPC's format: 5S, 250m, ...), or None."""
    raw = headers.get("grpc-timeout")
    if raw is None:
        return None
    found = _GRPC_TIMEOUT.fullmatch(raw.strip())
    if found is None:
        raise InvalidArgumentError.of("Grpc-Timeout", "must be 1-8 digits and a unit (H, M, S, m, u, n), e.g. 5S")
    return int(found.group(1)) * _TIMEOUT_UNIT_SECONDS[found.group(2)]


class Upstream:
    """The gRPC server behind the gateway: a pool of channels (one unless `calls_per_channel` calls are in
    flight on each: the public port caps calls per connection, wadm_client/pool.py), one multicallable per
    method path."""

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        calls_per_channel: int | None = None,
    ) -> None:
        self.target = target
        every = [*CHANNEL_OPTIONS, *options]

        def open_channel(extra: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
            if credentials is None:
                return grpc.aio.insecure_channel(target, options=[*every, *extra])
            return grpc.aio.secure_channel(target, credentials, options=[*every, *extra])

        self.channel = PooledChannel(open_channel, calls_per_channel=calls_per_channel)
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._streams: dict[str, grpc.aio.UnaryStreamMultiCallable[bytes, bytes]] = {}
        self._bidi: dict[str, grpc.aio.StreamStreamMultiCallable[bytes, bytes]] = {}

    def unary(self, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """The unary method at `path`, passing bytes through."""
        method = self._unary.get(path)
        if method is None:
            method = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            self._unary[path] = method
        return method

    def stream(self, path: str) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
        """The server-streaming method at `path`, passing bytes through."""
        method = self._streams.get(path)
        if method is None:
            method = self.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            self._streams[path] = method
        return method

    def bidi(self, path: str) -> grpc.aio.StreamStreamMultiCallable[bytes, bytes]:
        """The bidirectional-streaming method at `path`, passing bytes through."""
        method = self._bidi.get(path)
        if method is None:
            method = self.channel.stream_stream(path, request_serializer=None, response_deserializer=None)
            self._bidi[path] = method
        return method

    async def serving(self, *, deadline_seconds: float = 5.0) -> tuple[bool, str]:
        """(whether the server's health service says SERVING, the status name it gave or why it failed)."""
        request = health_pb2.HealthCheckRequest(service="").SerializeToString()
        try:
            answer: Any = await self.unary(HEALTH_CHECK)(request, timeout=deadline_seconds)
        except grpc.aio.AioRpcError as error:
            return False, error.code().name
        status = health_pb2.HealthCheckResponse.FromString(answer).status
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        return status == health_pb2.HealthCheckResponse.SERVING, name

    async def close(self) -> None:
        """Close the channels (calls still running are cancelled)."""
        await self.channel.close()
