"""Which scope each RPC needs and what it weighs, derived from the service descriptors (none can be missed).

Scopes: `read` (MarketDataService's unary reads), `stream` (its streams), `ingest` (TradeIngestService),
`admin` (AdminService). Health and reflection are open by default (WADM_AUTH_OPEN_SERVICES).
Weights follow Binance's idea: a call costs what it asks the server to do. The table is docs/access.md's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2, market_data_service_pb2, trade_ingest_service_pb2

DEFAULT_OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """What one RPC needs: a scope, whether it is a long-lived stream (capped per key)."""

    scope: str
    streaming: bool


def _service(module: Any, name: str) -> ServiceDescriptor:
    service: ServiceDescriptor = module.DESCRIPTOR.services_by_name[name]
    return service


def method_policies() -> dict[str, MethodPolicy]:
    """ "/package.Service/Method" -> its policy, for every RPC of the three services."""
    services = (
        (_service(market_data_service_pb2, "MarketDataService"), None),
        (_service(trade_ingest_service_pb2, "TradeIngestService"), "ingest"),
        (_service(admin_service_pb2, "AdminService"), "admin"),
    )
    table: dict[str, MethodPolicy] = {}
    for service, scope in services:
        for method in service.methods:
            streaming = bool(method.server_streaming)
            chosen = scope or ("stream" if streaming else "read")
            table[f"/{service.full_name}/{method.name}"] = MethodPolicy(chosen, streaming and scope is None)
    return table


def _tiered(value: int, tiers: tuple[tuple[int, int], ...]) -> int:
    """The weight of the first tier whose bound `value` is within (tiers ascending), else the last's."""
    for bound, weight in tiers:
        if value <= bound:
            return weight
    return tiers[-1][1]


def weight(method: str, message: object) -> int:
    """The weight of one call of `method` (its last path segment) asking `request` (None for client streams)."""
    if not isinstance(message, Message):  # a client stream, or bytes that did not decode (refused later)
        return 2 if method == "SubscribeTrades" else 1
    request: Any = message
    if method == "GetCandles":
        limit = request.limit if request.HasField("limit") else 500
        return _tiered(limit, ((99, 1), (499, 2), (1000, 5))) + (1 if request.fill_gaps else 0)
    if method == "GetMultiStats":
        return max(1, math.ceil(len(set(request.symbols)) / 2))
    if method == "GetOrderbook":
        depth = request.depth if request.HasField("depth") else 20
        return _tiered(depth, ((20, 1), (100, 2)))
    if method == "ListTrades":
        return _tiered(request.page_size or 100, ((100, 1), (500, 5), (1000, 10)))
    if method in ("StreamTrades", "SubscribeTrades", "StreamCandles"):
        return 2
    return 1
