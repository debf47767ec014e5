"""The gRPC server factory: servicers, health, reflection, and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from wadm_client.options import DEFAULT_CALLS_PER_CHANNEL
from wadm_grpc.api.grpc.admin import AdminServicer
from wadm_grpc.api.grpc.health import HealthServicer
from wadm_grpc.api.grpc.ingest import TradeIngestServicer
from wadm_grpc.api.grpc.malformed import MalformedRequestInterceptor
from wadm_grpc.api.grpc.market_data import MarketDataServicer
from wadm_grpc.api.grpc.reflection import add_reflection
from wadm_grpc.api.grpc.stream_wire import serialize_response
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc

log = logging.getLogger("wadm_grpc.server")

MARKET_DATA = md.DESCRIPTOR.services_by_name["MarketDataService"].full_name
TRADE_INGEST = ingest_pb.DESCRIPTOR.services_by_name["TradeIngestService"].full_name
ADMIN = admin_pb.DESCRIPTOR.services_by_name["AdminService"].full_name
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVICES = (MARKET_DATA, TRADE_INGEST, ADMIN)

# Long-lived streams behind proxies: let clients keep connections alive with pings every 10 s,
# and ping idle clients ourselves so dead peers are noticed. A client pinging more often gets a strike
# per ping; past MAX_PING_STRIKES the server sends GOAWAY (too_many_pings) and closes, as gRPC servers do.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
MAX_PING_STRIKES = 2


def transport_options(
    *, max_message_bytes: int, max_concurrent_streams: int, min_ping_interval_seconds: float
) -> list[tuple[str, int]]:
    """Message size limits (both ways), concurrent calls per connection and keepalive enforcement."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        # A stream stops counting against the cap when it closes, as the client counts it, not when the
        # server has freed it: else a client reusing a slot at once gets RST_STREAM (REFUSED_STREAM).
        ("grpc.http.overload_protection", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(min_ping_interval_seconds * 1000)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


# 16 calls in flight per connection (the size at which wadm's clients open another, wadm_client/pool.py):
# a client's further calls wait in its own channel (gRPC clients queue them) instead of in the server's
# queue of calls to pick up, where they would delay every other client's calls of the same method
# (docs/access.md, "Transport limits").
DEFAULT_MAX_CONCURRENT_STREAMS = DEFAULT_CALLS_PER_CHANNEL
DEFAULT_TRANSPORT = transport_options(
    max_message_bytes=4 * 1024 * 1024,
    max_concurrent_streams=DEFAULT_MAX_CONCURRENT_STREAMS,
    min_ping_interval_seconds=10.0,
)
# The local addresses (the HTTP gateway's hop: every HTTP client over one connection) are not capped.
LOCAL_MAX_CONCURRENT_STREAMS = 2**31 - 1


class _Registration:
    """Stands in for a server to capture the method handlers generated code registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = dict(handlers)


def _add_market_data(servicer: MarketDataServicer, server: grpc.aio.Server) -> None:
    """Register MarketDataService with response serializers that pass pre-rendered bytes through
    (cached answers, pre-encoded stream messages) and serialise messages as usual."""
    registration = _Registration()
    md_grpc.add_MarketDataServiceServicer_to_server(servicer, registration)  # type: ignore[arg-type]
    handlers = {
        name: handler._replace(response_serializer=serialize_response)  # type: ignore[attr-defined]
        for name, handler in registration.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(MARKET_DATA, handlers),))
    server.add_registered_method_handlers(MARKET_DATA, handlers)


@dataclass
class GrpcServer:
    """A started server and the health service that reports its lifecycle; `local` serves the local
    addresses (the HTTP gateway's hop) without the per-connection stream cap of the public port."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer
    ingest: TradeIngestServicer | None = None
    local: grpc.aio.Server | None = None

    async def start_draining(self) -> None:
        """Report NOT_SERVING for every service (first step of shutdown); calls are still served."""
        await self.health.enter_graceful_shutdown()

    def finish_ingest(self) -> None:
        """Make open PublishTrades calls stop reading, store what they read and end with UNAVAILABLE
        saying what was stored (before `stop`, so they do not hold its grace period)."""
        if self.ingest is not None:
            self.ingest.finish_calls()

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking calls, let running ones finish for up to `grace_seconds`, then cancel the rest."""
        await self.start_draining()
        servers = [self.server] if self.local is None else [self.server, self.local]
        await asyncio.gather(*(server.stop(grace_seconds) for server in servers))


def _listen(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


@dataclass(frozen=True)
class _Servicers:
    market_data: MarketDataServicer
    ingest: TradeIngestServicer
    admin: AdminServicer
    health: HealthServicer


def _make_server(
    options: dict[str, Any], interceptors: Sequence[grpc.aio.ServerInterceptor], servicers: _Servicers
) -> grpc.aio.Server:
    server = grpc.aio.server(options=list(options.items()), interceptors=[*interceptors, MalformedRequestInterceptor()])
    _add_market_data(servicers.market_data, server)
    ingest_grpc.add_TradeIngestServiceServicer_to_server(servicers.ingest, server)
    admin_grpc.add_AdminServiceServicer_to_server(servicers.admin, server)
    health_pb2_grpc.add_HealthServicer_to_server(servicers.health, server)
    add_reflection(server, (*SERVICES, HEALTH))
    return server


async def build_server(
    *,
    market_data: MarketDataServicer,
    ingest: TradeIngestServicer,
    admin: AdminServicer,
    address: str,
    extra_options: list[tuple[str, int]] | None = None,
    local_addresses: tuple[str, ...] = (),
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> GrpcServer:
    """Create, bind and start the server; `address` like "127.0.0.1:0" (port 0 picks a free one).
    `local_addresses`: more to listen on, plaintext, e.g. this process's own socket for its HTTP gateway;
    they are served by a second server of the same services whose connections are not capped
    (`LOCAL_MAX_CONCURRENT_STREAMS`): the gateway carries every HTTP client over its one connection.
    `credentials`: TLS for `address` (plaintext without). `interceptors` run first, in order (observing,
    then access control), then the malformed-request guard. `extra_options` override the defaults
    (DEFAULT_TRANSPORT)."""
    options = dict(CHANNEL_OPTIONS + DEFAULT_TRANSPORT + (extra_options or []))
    health = HealthServicer()
    servicers = _Servicers(market_data=market_data, ingest=ingest, admin=admin, health=health)
    server = _make_server(options, interceptors, servicers)
    port = _listen(server, address, credentials)
    local = None
    if local_addresses:
        uncapped = options | {"grpc.max_concurrent_streams": LOCAL_MAX_CONCURRENT_STREAMS, "grpc.so_reuseport": 0}
        local = _make_server(uncapped, interceptors, servicers)
        for local_address in local_addresses:
            local.add_insecure_port(local_address)
        await local.start()
    await server.start()
    for name in ("", *SERVICES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"address": address, "port": port, "tls": credentials is not None})
    return GrpcServer(server=server, port=port, health=health, ingest=ingest, local=local)
