"""The OpenAPI document served at /api/openapi.json: valid 3.1, exactly the gateway's routes, the protos'
comments as descriptions, and schemas the real answers (and errors) satisfy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.gateway.conftest import Gatewayed
from wadm_grpc.api.http.app import LIVENESS_PATHS, READINESS_PATH
from wadm_grpc.api.http.openapi import build_openapi, openapi_path
from wadm_grpc.api.http.routes import build_routes
from wadm_grpc.api.http.schemas import clean_comment

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "wadm" / "market" / "v1"
CANDLES = "/api/v1/market/candles/{symbol}/{timeframe}"
STREAM = "/api/v1/market/trades:stream"


@pytest.fixture
async def document(gateway: Gatewayed) -> dict[str, Any]:
    response = await gateway.client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()}


def conforms(document: dict[str, Any], schema_name: str, instance: object) -> None:
    """Validate `instance` against a component schema, resolving the document's own $refs."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": document["components"]}
    schema["$ref"] = f"#/components/schemas/{schema_name}"
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


async def test_the_served_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator: raises on any violation of the 3.1 schema


async def test_it_lists_exactly_the_gateways_routes_and_its_health_paths(document: dict[str, Any]) -> None:
    from_routes = {(route.http_method, openapi_path(route.template)) for route in build_routes()}
    system = {("GET", path) for path in (*LIVENESS_PATHS, READINESS_PATH)}

    assert set(operations(document)) == from_routes | system
    ids = [op["operationId"] for op in operations(document).values()]
    assert len(ids) == len(set(ids))
    assert {"GetCandles", "StreamTrades", "GetMultiStats", "GetCacheStats"} <= set(ids)


def test_a_new_binding_appears_without_touching_the_generator() -> None:
    routes = build_routes()
    fewer = build_openapi(routes[:-1])
    assert len(operations(build_openapi(routes))) == len(operations(fewer)) + 1


async def test_parameters_are_the_request_fields_with_the_protos_comments(document: dict[str, Any]) -> None:
    candles = document["paths"][CANDLES]["get"]
    by_name = {p.get("name", p.get("$ref")): p for p in candles["parameters"]}

    assert set(by_name) == {
        "symbol",
        "timeframe",
        "exchanges",
        "start_time",
        "end_time",
        "limit",
        "fill_gaps",
        "#/components/parameters/pretty",
    }
    assert by_name["symbol"]["in"] == "path" and by_name["symbol"]["required"] is True
    assert by_name["symbol"]["description"].startswith('Symbol, e.g. "BTCUSDT".')
    assert by_name["exchanges"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert "comma list" in by_name["exchanges"]["description"]
    assert "`exchange` works too" in by_name["exchanges"]["description"]
    assert "Also as `startTime`" in by_name["start_time"]["description"]
    assert "epoch milliseconds" in by_name["start_time"]["description"]
    # The RPC's comment, its failure modes included, is the operation's description.
    assert "Binance kline semantics" in candles["summary"]
    assert "INVALID_ARGUMENT: empty or malformed symbol" in candles["description"]


async def test_enums_list_their_short_forms_names_and_comments(document: dict[str, Any]) -> None:
    timeframe = next(p for p in document["paths"][CANDLES]["get"]["parameters"] if p.get("name") == "timeframe")
    window = next(
        p for p in document["paths"]["/api/v1/market/stats/{symbol}"]["get"]["parameters"] if p.get("name") == "window"
    )

    assert timeframe["schema"]["enum"][:8] == ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]
    assert "TIMEFRAME_1W" in timeframe["schema"]["enum"]
    assert "TIMEFRAME_UNSPECIFIED" not in timeframe["schema"]["enum"]  # accepted by the parser, refused by the server
    assert "- `TIMEFRAME_1W` (8, `1w`): One week, starting Monday 00:00 UTC." in timeframe["description"]
    assert window["schema"]["enum"][:4] == ["1h", "4h", "24h", "7d"]


def test_every_wadm_comment_reaches_the_document_as_written_in_the_proto() -> None:
    # The comment above `rpc GetCandles` in the .proto text, against what the document says.
    text = (PROTOS / "market_data_service.proto").read_text()
    block = re.search(r"((?:  //.*\n)+)  rpc GetCandles\(", text)
    assert block is not None
    written = clean_comment("\n".join(line.strip().removeprefix("//") for line in block.group(1).splitlines()))
    candles = operations(build_openapi(build_routes()))[("GET", CANDLES)]
    assert candles["description"].startswith(written)


async def test_answer_schemas_are_canonical_json(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    candle = schemas["wadm.market.v1.Candle"]["properties"]
    stats = schemas["wadm.market.v1.SymbolStats"]

    assert candle["trade_count"] == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]+$",
        "description": "Number of trades.",
    }
    assert candle["open_time"]["format"] == "date-time"
    assert "open_time" not in schemas["wadm.market.v1.Candle"]["required"]  # a message: printed only when set
    assert "trade_count" in schemas["wadm.market.v1.Candle"]["required"]  # no presence: always printed
    assert {"not": {"required": ["stats", "no_trades"]}} in stats["allOf"]  # a oneof: at most one member
    assert schemas["wadm.market.v1.GetCandlesResponse"]["properties"]["timeframe"]["enum"][1] == "TIMEFRAME_1M"


async def test_real_answers_conform_and_a_oneof_with_both_members_does_not(
    gateway: Gatewayed, document: dict[str, Any]
) -> None:
    candles = (await gateway.client.get("/api/v1/market/candles/BTCUSDT/1m?limit=3")).json()
    multi = (await gateway.client.get("/api/v1/market/stats:multi?symbols=BTCUSDT,ETHUSDT")).json()

    conforms(document, "wadm.market.v1.GetCandlesResponse", candles)
    conforms(document, "wadm.market.v1.GetMultiStatsResponse", multi)
    assert [sorted(set(r) - {"symbol"}) for r in multi["results"]] == [["stats"], ["no_trades"]]
    both = {**multi["results"][0], "no_trades": {"reason": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, "wadm.market.v1.SymbolStats", both)
    with pytest.raises(jsonschema.ValidationError):  # int64 must stay a string
        conforms(document, "wadm.market.v1.Candle", {**candles["candles"][0], "trade_count": 3})


async def test_errors_are_described_as_google_rpc_status_with_typed_details(
    gateway: Gatewayed, document: dict[str, Any]
) -> None:
    response = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1M?limit=0")
    candles = document["paths"][CANDLES]["get"]

    assert response.status_code == 400
    conforms(document, "google.rpc.Status", response.json())
    assert response.json()["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert candles["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, "google.rpc.Status", {"code": 3, "message": "m", "details": [{"no": "type"}]})


async def test_the_stream_answers_ndjson_or_server_sent_events(document: dict[str, Any]) -> None:
    stream = document["paths"][STREAM]["get"]
    content = stream["responses"]["200"]["content"]

    assert set(content) == {"application/x-ndjson", "text/event-stream"}
    lines = content["application/x-ndjson"]["schema"]["oneOf"]
    assert [sorted(line["required"]) for line in lines] == [["result"], ["error"]]
    names = {p.get("name") for p in stream["parameters"]}
    assert {"symbols", "exchanges", "heartbeat_interval"} <= names
