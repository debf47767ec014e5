"""Channels and stubs from ConnectOptions, for grpc.aio and for blocking grpc, and the connection every client
is built on."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from wadm_client.options import DEFAULT_TARGET, ConnectOptions
from wadm_client.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_client.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_client.pool import PooledChannel


def aio_channel(options: ConnectOptions, extra: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    every = [*options.channel_options(), *extra]
    if options.secure:
        return grpc.aio.secure_channel(options.target, options.credentials(), options=every)
    return grpc.aio.insecure_channel(options.target, options=every)


def sync_channel(options: ConnectOptions) -> grpc.Channel:
    if options.secure:
        return grpc.secure_channel(options.target, options.credentials(), options=options.channel_options())
    return grpc.insecure_channel(options.target, options=options.channel_options())


class Stubs:
    """The generated stubs on one channel (raw protobuf in and out): `market`, `ingest`, `admin`."""

    def __init__(self, channel: Any) -> None:
        self.market = md_grpc.MarketDataServiceStub(channel)
        self.ingest = ingest_grpc.TradeIngestServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)


class _Connection:
    """What every client has: its options, the generated stubs on its channel, and each call's settings."""

    def __init__(self, options: ConnectOptions | None = None) -> None:
        self.options = options or ConnectOptions()
        self.reconnects = 0  # live streams reopened (with their resume token) since this client was made
        stubs = Stubs(self._open(self.options))
        self.market, self.ingest, self.admin = stubs.market, stubs.ingest, stubs.admin

    @classmethod
    def connect(cls, target: str = DEFAULT_TARGET, **options: Any) -> Self:
        """A client of `target` ("host:port"); `options` are ConnectOptions' fields (api_key, tls, ca_file, ...)."""
        return cls(ConnectOptions(target=target, **options))

    @property
    def timeout_seconds(self) -> float | None:
        return self.options.timeout_seconds

    def _call(self) -> dict[str, Any]:
        return {"timeout": self.options.timeout_seconds, "metadata": self.options.metadata()}

    def _open(self, options: ConnectOptions) -> Any:
        """Open the channel (kept as `self.channel`) and return it."""
        raise NotImplementedError


class AsyncConnection(_Connection):
    """grpc.aio channels, a pool that opens another connection when one has `calls_per_channel` calls in
    flight (wadm_client/pool.py): `async with` closes them."""

    channel: PooledChannel

    def _open(self, options: ConnectOptions) -> PooledChannel:
        self.channel = PooledChannel(
            lambda extra: aio_channel(options, extra), calls_per_channel=options.calls_per_channel
        )
        return self.channel

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channels."""
        await self.channel.close()


class SyncConnection(_Connection):
    """A blocking grpc channel: `with` closes it."""

    channel: grpc.Channel

    def _open(self, options: ConnectOptions) -> grpc.Channel:
        self.channel = sync_channel(options)
        return self.channel

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
