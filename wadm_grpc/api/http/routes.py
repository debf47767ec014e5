"""The route table, built at start from the services' google.api.http rules: nothing hand-written to drift.

Each Route carries the method descriptor it forwards to, so other readers (an OpenAPI generator, docs)
can derive everything they need from the same table the gateway dispatches on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from wadm_grpc.api.http.templates import PathTemplate, TemplateError, parse_template, split_path
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2, market_data_service_pb2, trade_ingest_service_pb2

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of one RPC."""

    rpc: MethodDescriptor
    http_method: str  # upper case: GET, POST, ...
    template: PathTemplate
    body: str  # "" (no body), "*" (the whole request) or the request field the body fills
    additional: bool  # from additional_bindings rather than the rule itself

    @property
    def grpc_path(self) -> str:
        """The gRPC method path, "/package.Service/Method"."""
        return f"/{self.rpc.containing_service.full_name}/{self.rpc.name}"

    @property
    def server_streaming(self) -> bool:
        """True for server-streaming RPCs (answered as NDJSON or SSE)."""
        return bool(self.rpc.server_streaming)

    @property
    def request_class(self) -> type[Message]:
        """The generated request message class."""
        return _message_class(self.rpc.input_type)

    @property
    def response_class(self) -> type[Message]:
        """The generated response message class."""
        return _message_class(self.rpc.output_type)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A route chosen for a request, with the values its path variables bound."""

    route: Route
    variables: dict[str, str]


def _message_class(descriptor: Any) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def wadm_services() -> tuple[ServiceDescriptor, ...]:
    """Every service this project defines (routes come from those with google.api.http rules)."""
    return (
        market_data_service_pb2.DESCRIPTOR.services_by_name["MarketDataService"],
        admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
        trade_ingest_service_pb2.DESCRIPTOR.services_by_name["TradeIngestService"],
    )


def http_rule(rpc: MethodDescriptor) -> http_pb2.HttpRule | None:
    """The method's google.api.http option, or None when it has none."""
    options = rpc.GetOptions()
    extension: Any = annotations_pb2.http  # typed as a plain FieldDescriptor by googleapis' stubs
    if not options.HasExtension(extension):
        return None
    rule: http_pb2.HttpRule = options.Extensions[extension]
    return rule


def _binding(rpc: MethodDescriptor, rule: http_pb2.HttpRule, *, additional: bool) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise TemplateError(f"{rpc.full_name}: an http rule without a pattern")
    if kind == "custom":
        method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        method, path = kind.upper(), getattr(rule, kind)
    if rpc.client_streaming:
        raise TemplateError(f"{rpc.full_name}: client-streaming RPCs have no HTTP binding here")
    return Route(rpc=rpc, http_method=method, template=parse_template(path), body=rule.body, additional=additional)


def build_routes(services: Iterable[ServiceDescriptor] | None = None) -> tuple[Route, ...]:
    """One Route per binding (the rule and its additional_bindings) of every annotated RPC."""
    routes: list[Route] = []
    for service in wadm_services() if services is None else services:
        for rpc in service.methods:
            rule = http_rule(rpc)
            if rule is None:
                continue
            routes.append(_binding(rpc, rule, additional=False))
            routes.extend(_binding(rpc, extra, additional=True) for extra in rule.additional_bindings)
    return tuple(routes)


class Router:
    """Picks the most specific route for a method and a raw path: literals win over variables."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def resolve(self, method: str, raw_path: str) -> tuple[RouteMatch | None, list[str]]:
        """(the match, or None) and the HTTP methods some route accepts at this path (for 405's Allow).
        HEAD is served as GET. Raises PathEncodingError for a path that is not valid percent-encoding."""
        segments, verb = split_path(raw_path)
        found = self._matching(segments, verb)
        if not found and verb is not None:
            # "/trades/BTC:USDT" is a path without a verb when no template has that verb.
            found = self._matching([*segments[:-1], f"{segments[-1]}:{verb}"], None)
        wanted = "GET" if method == "HEAD" else method
        allowed = sorted({match.route.http_method for match in found})
        chosen = [match for match in found if match.route.http_method == wanted]
        if not chosen:
            return None, allowed
        return max(chosen, key=lambda match: match.route.template.specificity), allowed

    def _matching(self, segments: list[str], verb: str | None) -> list[RouteMatch]:
        matches = []
        for route in self.routes:
            variables = route.template.match(segments, verb)
            if variables is not None:
                matches.append(RouteMatch(route, variables))
        return matches
