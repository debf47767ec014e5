"""Routes come from the protos' google.api.http rules; the template parser follows http.proto's grammar."""

from __future__ import annotations

import pytest

from wadm_grpc.api.http.routes import Router, build_routes, http_rule, wadm_services
from wadm_grpc.api.http.templates import PathEncodingError, TemplateError, parse_template, split_path


def test_every_annotated_rpc_is_routed_and_every_route_is_annotated() -> None:
    annotated = {
        (f"/{service.full_name}/{rpc.name}", path)
        for service in wadm_services()
        for rpc in service.methods
        if (rule := http_rule(rpc)) is not None
        for path in [rule.get, *(extra.get for extra in rule.additional_bindings)]
    }
    routed = {(route.grpc_path, route.template.text) for route in build_routes()}

    assert routed == annotated
    assert ("/wadm.market.v1.MarketDataService/GetMultiStats", "/api/v1/market/stats/multi") in routed
    # The client-streaming ingest RPC has no binding and no route.
    assert not any(path.endswith("/PublishTrades") for path, _ in routed)


@pytest.mark.parametrize(
    ("path", "rpc", "variables"),
    [
        ("/api/v1/market/candles/BTCUSDT/1h", "GetCandles", {"symbol": "BTCUSDT", "timeframe": "1h"}),
        ("/api/v1/market/stats/multi", "GetMultiStats", {}),  # the literal wins over {symbol}
        ("/api/v1/market/stats:multi", "GetMultiStats", {}),
        ("/api/v1/market/stats/BTCUSDT", "GetMarketStats", {"symbol": "BTCUSDT"}),
        ("/api/v1/market/trades:stream", "StreamTrades", {}),
        ("/api/v1/market/trades/BTCUSDT", "ListTrades", {"symbol": "BTCUSDT"}),
        ("/api/v1/market/trades/BTC:USDT", "ListTrades", {"symbol": "BTC:USDT"}),  # no such verb: a value
        ("/api/v1/market/trades/BTC%2FUSDT", "ListTrades", {"symbol": "BTC/USDT"}),
        ("/api/v1/admin/cache", "GetCacheStats", {}),
    ],
)
def test_paths_route_to_their_rpc(path: str, rpc: str, variables: dict[str, str]) -> None:
    match, allowed = Router(build_routes()).resolve("GET", path)

    assert match is not None
    assert (match.route.rpc.name, match.variables) == (rpc, variables)
    assert allowed == ["GET"]


@pytest.mark.parametrize(
    "path", ["/", "/api/v1/market", "/api/v1/market/candles/BTCUSDT", "/api/v1/market/stats/", "/api/v1/x:y"]
)
def test_unknown_paths_match_nothing(path: str) -> None:
    assert Router(build_routes()).resolve("GET", path) == (None, [])


def test_a_known_path_with_another_method_reports_the_allowed_ones() -> None:
    router = Router(build_routes())

    assert router.resolve("POST", "/api/v1/market/symbols") == (None, ["GET"])
    assert router.resolve("HEAD", "/api/v1/market/symbols")[0] is not None


def test_the_grammar_variables_with_segments_double_wildcards_and_verbs() -> None:
    template = parse_template("/v1/{name=shelves/*/books/**}:get")

    assert template.variables == ("name",)
    assert template.verb == "get"
    segments, verb = split_path("/v1/shelves/s1/books/a/b%2Fc:get")
    assert template.match(segments, verb) == {"name": "shelves/s1/books/a/b%2Fc"}
    assert template.match(*split_path("/v1/shelves/s1/books:get")) == {"name": "shelves/s1/books"}
    assert template.match(*split_path("/v1/shelves/s1/books/a")) is None  # the verb is part of the template
    nested = parse_template("/v1/{book.shelf.id}/x/*")
    assert nested.variables == ("book.shelf.id",)
    assert nested.match(*split_path("/v1/7/x/anything")) == {"book.shelf.id": "7"}


@pytest.mark.parametrize(
    "text",
    ["", "v1/a", "/v1/{a", "/v1/{a=**}/b", "/v1/{a={b}}", "/v1/{1a}", "/v1/a:", "/v1//a", "/v1/{a}x"],
)
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(text)


def test_invalid_percent_encoding_is_an_error_not_a_replacement_character() -> None:
    template = parse_template("/a/{b}")

    with pytest.raises(PathEncodingError):
        template.match(*split_path("/a/%ff"))
