"""A pool of grpc.aio channels that looks like one channel: each call goes to a channel with a free slot.

A gRPC server caps the calls in flight on one HTTP/2 connection (wadm's public port: 16, so one connection
cannot queue a flood ahead of other clients). A client's calls beyond the cap wait inside its channel until
one ends, so a client holding 16 long-lived streams on one channel could not make a 17th call of any kind.
gRPC's own advice for that case is a pool of channels; this one opens another channel (its own TCP
connection) only when every open one has `calls_per_channel` calls in flight, and drops none while open.

The generated stubs take a `PooledChannel` as their channel: it hands out multicallables that pick the
channel per call and count the call until it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

# One channel per TCP connection: without this, channels with the same target and arguments share one.
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


class _Member:
    __slots__ = ("channel", "in_flight", "methods")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.in_flight = 0
        self.methods: dict[tuple[str, str], Any] = {}


class _PooledMethod:
    """A multicallable of one method on every channel of the pool; each call picks its channel."""

    __slots__ = ("_kind", "_kwargs", "_path", "_pool")

    def __init__(self, pool: PooledChannel, kind: str, path: str, kwargs: dict[str, Any]) -> None:
        self._pool, self._kind, self._path, self._kwargs = pool, kind, path, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        member = self._pool._member()
        key = (self._kind, self._path)
        method = member.methods.get(key)
        if method is None:
            method = getattr(member.channel, self._kind)(self._path, **self._kwargs)
            member.methods[key] = method
        call = method(*args, **kwargs)
        member.in_flight += 1

        def done(_: object) -> None:
            member.in_flight -= 1

        call.add_done_callback(done)
        return call


class PooledChannel:
    """Channels opened by `open_channel(extra_options)` as calls need them: a new one when every channel has
    `calls_per_channel` calls in flight (None: one channel, never more). `channels` says how many are open."""

    def __init__(
        self,
        open_channel: Callable[[list[tuple[str, Any]]], grpc.aio.Channel],
        *,
        calls_per_channel: int | None,
    ) -> None:
        if calls_per_channel is not None and calls_per_channel < 1:
            raise ValueError("calls_per_channel must be at least 1")
        self._open = open_channel
        self._limit = calls_per_channel
        extra = [] if calls_per_channel is None else [OWN_CONNECTION]
        self._extra: list[tuple[str, Any]] = extra
        self._members = [_Member(open_channel(extra))]

    @property
    def channels(self) -> int:
        return len(self._members)

    @property
    def in_flight(self) -> int:
        return sum(member.in_flight for member in self._members)

    def _member(self) -> _Member:
        if self._limit is None:
            return self._members[0]
        for member in self._members:
            if member.in_flight < self._limit:
                return member
        member = _Member(self._open(self._extra))
        self._members.append(member)
        return member

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        return _PooledMethod(self, "unary_unary", method, kwargs)

    def unary_stream(self, method: str, **kwargs: Any) -> Any:
        return _PooledMethod(self, "unary_stream", method, kwargs)

    def stream_unary(self, method: str, **kwargs: Any) -> Any:
        return _PooledMethod(self, "stream_unary", method, kwargs)

    def stream_stream(self, method: str, **kwargs: Any) -> Any:
        return _PooledMethod(self, "stream_stream", method, kwargs)

    async def channel_ready(self) -> None:
        """Wait until the first channel is connected (grpc.aio.Channel.channel_ready)."""
        await self._members[0].channel.channel_ready()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The first channel's connectivity state."""
        return self._members[0].channel.get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        """Close every channel (calls still running are cancelled, after `grace` seconds if given)."""
        for member in self._members:
            await member.channel.close(grace)
