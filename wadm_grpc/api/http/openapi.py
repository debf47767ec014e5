"""The OpenAPI 3.1 document of the gateway, generated at start from the same route table it dispatches on.

Paths and methods from `build_routes()`; parameters from the request messages by query.py's rules (path
variables, every other field as a query parameter, nested ones dotted); answers from schemas.py; errors
as google.rpc.Status; streams as NDJSON and SSE. Descriptions are the protos' comments. Nothing is
written by hand per route, so the document cannot drift from what the gateway serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from wadm_grpc.api.http.query import ALIASES, RESERVED_KEYS, short_enum_names
from wadm_grpc.api.http.routes import Route
from wadm_grpc.api.http.schemas import (
    DURATION_PATTERN,
    SCHEMA_REF_PREFIX,
    STATUS,
    AnswerSchemas,
    Schema,
    enum_values_text,
    is_map,
    load_comments,
)
from wadm_grpc.api.http.streams import EVENT_STREAM, NDJSON
from wadm_grpc.api.http.templates import PathTemplate

OPENAPI_VERSION = "3.1.0"
TITLE = "WADM market data (HTTP/JSON gateway)"
STATUS_SCHEMA = "google.rpc.Status"
ERROR_RESPONSE = "#/components/responses/Error"
PRETTY_PARAMETER = "#/components/parameters/pretty"
# Request fields set as a whole from one query value, not field by field.
_SCALAR_MESSAGES = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"})
_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64})
_UINT64_TYPES = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
# Values "Try it out" starts from (and schemathesis's examples phase sends), by request field name: the
# demo feed's and the tests' data, so the first click answers 200.
PARAMETER_EXAMPLES: dict[str, object] = {
    "symbol": "BTCUSDT",
    "symbols": ["BTCUSDT", "ETHUSDT"],
    "exchanges": ["binance"],
    "timeframe": "1m",
    "window": "24h",
}


def build_openapi(
    routes: Sequence[Route], *, liveness_paths: Sequence[str] = (), readiness_path: str | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (and the gateway's own health paths)."""
    comments = load_comments()
    answers = AnswerSchemas(comments)
    answers.components[STATUS_SCHEMA] = STATUS
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, answers, comments)
        paths.setdefault(openapi_path(route.template), {})[route.http_method.lower()] = operation
    for path in liveness_paths:
        paths[path] = {"get": _health_operation(path, "Liveness: 200 while the process serves.")}
    if readiness_path is not None:
        readiness = _health_operation(readiness_path, "Readiness: 200 while the gRPC server reports SERVING.")
        readiness["responses"]["503"] = {"$ref": ERROR_RESPONSE}
        paths[readiness_path] = {"get": readiness}
    services = list(dict.fromkeys(route.rpc.containing_service for route in routes))  # in the routes' order
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": _version(), "description": _INFO},
        "tags": [{"name": s.name, "description": comments.get(s.full_name, "")} for s in services]
        + [{"name": "system", "description": "Liveness and readiness of the gateway and its gRPC server."}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(answers.components.items())),
            "responses": {
                "Error": {
                    "description": "The call failed: a google.rpc.Status.",
                    "content": {"application/json": {"schema": {"$ref": SCHEMA_REF_PREFIX + STATUS_SCHEMA}}},
                }
            },
            "parameters": {
                "pretty": {
                    "name": "pretty",
                    "in": "query",
                    "description": "Indented JSON (any value but `false`/`0`; a bare `?pretty` too).",
                    "schema": {"type": "boolean"},
                }
            },
        },
    }


def openapi_path(template: PathTemplate) -> str:
    """The template as an OpenAPI path: each variable (however many segments it spans) as `{field.path}`."""
    parts: list[str] = []
    seen: set[str] = set()
    for segment in template.segments:
        if segment.variable is None:
            parts.append(segment.literal if segment.literal is not None else ("**" if segment.many else "*"))
        elif segment.variable not in seen:
            seen.add(segment.variable)
            parts.append("{" + segment.variable + "}")
    return "/" + "/".join(parts) + (f":{template.verb}" if template.verb else "")


def operation_id(route: Route) -> str:
    """The RPC's name, with the binding's path for additional bindings (operation ids are unique)."""
    if not route.additional:
        return str(route.rpc.name)
    literals = [s.literal for s in route.template.segments if s.literal is not None]
    return f"{route.rpc.name}_" + "_".join(literals[-2:])


def summary(comment: str) -> str:
    """The comment's first sentence, on one line."""
    first = comment.split("\n\n", 1)[0].replace("\n", " ")
    return first.split(". ", 1)[0].rstrip(".") + "."


def _operation(route: Route, answers: AnswerSchemas, comments: dict[str, str]) -> dict[str, Any]:
    if route.body:
        # No route takes a body yet: describing one needs request-side schemas (nothing `required`).
        raise NotImplementedError(f"{route.rpc.full_name}: request bodies are not described yet")
    rpc_comment = comments.get(route.rpc.full_name, route.rpc.name)
    request: Descriptor = route.rpc.input_type
    parameters: list[dict[str, Any]] = [
        _parameter(path, request, comments, where="path") for path in route.template.variables
    ]
    bound = set(route.template.variables)
    parameters += [
        _parameter(path, request, comments, where="query")
        for path in _query_fields(request, "")
        if path not in bound and path not in RESERVED_KEYS
    ]
    parameters.append({"$ref": PRETTY_PARAMETER})
    grpc_note = f"gRPC: `{route.grpc_path}`" + (" (an additional binding)" if route.additional else "")
    return {
        "operationId": operation_id(route),
        "tags": [route.rpc.containing_service.name],
        "summary": summary(rpc_comment),
        "description": f"{rpc_comment}\n\n{grpc_note}",
        "parameters": parameters,
        "responses": _stream_responses(route, answers) if route.server_streaming else _unary_responses(route, answers),
    }


def _unary_responses(route: Route, answers: AnswerSchemas) -> dict[str, Any]:
    headers = {
        "ETag": {"description": "Strong validator of the body.", "required": True, "schema": {"type": "string"}},
        "Cache-Control": {
            "description": "`max-age=N` for answers the server caches, else `no-cache`.",
            "required": True,
            "schema": {"type": "string"},
        },
    }
    return {
        "200": {
            "description": f"A {route.rpc.output_type.name}.",
            "headers": headers,
            "content": {"application/json": {"schema": answers.ref(route.rpc.output_type)}},
        },
        "304": {"description": "Not modified: `If-None-Match` named the current ETag."},
        "default": {"$ref": ERROR_RESPONSE},
    }


def _stream_responses(route: Route, answers: AnswerSchemas) -> dict[str, Any]:
    message = answers.ref(route.rpc.output_type)
    status = {"$ref": SCHEMA_REF_PREFIX + STATUS_SCHEMA}
    line = {
        "description": 'One line per message: {"result": ...}; a last {"error": Status} if the stream fails.',
        "oneOf": [
            {
                "type": "object",
                "properties": {"result": message},
                "required": ["result"],
                "additionalProperties": False,
            },
            {"type": "object", "properties": {"error": status}, "required": ["error"], "additionalProperties": False},
        ],
    }
    events = (
        f"Server-Sent Events (send `Accept: {EVENT_STREAM}`): one event per message, named after the set "
        "member of its oneof (`trades`, `heartbeat`), the data being the message's JSON; `event: error` with "
        "a Status last if the stream fails."
    )
    return {
        "200": {
            "description": f"A stream of {route.rpc.output_type.name}, flushed per message, until the client leaves.",
            "content": {NDJSON: {"schema": line}, EVENT_STREAM: {"schema": {"type": "string", "description": events}}},
        },
        "default": {"$ref": ERROR_RESPONSE},
    }


def _health_operation(path: str, summary: str) -> dict[str, Any]:
    answer = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
    return {
        "operationId": "health_" + path.strip("/").replace("/", "_"),
        "tags": ["system"],
        "summary": summary,
        "parameters": [{"$ref": PRETTY_PARAMETER}],
        "responses": {"200": {"description": summary, "content": {"application/json": {"schema": answer}}}},
    }


def _query_fields(message: Descriptor, prefix: str) -> list[str]:
    """Dotted paths of every field query.py can set (nested messages by their fields, Timestamps whole)."""
    paths: list[str] = []
    for field in message.fields:
        path = prefix + field.name
        nested: Any = field.message_type
        if nested is not None and not field.is_repeated and not _is_scalar_message(nested):
            paths += _query_fields(nested, path + ".")
        elif not is_map(field):
            paths.append(path)
    return paths


def _is_scalar_message(message: Descriptor) -> bool:
    name = message.full_name
    return name in _SCALAR_MESSAGES or (name.startswith("google.protobuf.") and name.endswith("Value"))


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    current: Any = message
    field: Any = None
    for name in path.split("."):
        field = current.fields_by_name[name]
        current = field.message_type
    assert field is not None
    return field  # type: ignore[no-any-return]


def _parameter(path: str, request: Descriptor, comments: dict[str, str], *, where: str) -> dict[str, Any]:
    field = _field_at(request, path)
    value, form = _query_value(field, comments)
    notes = [comments.get(field.full_name, "")]
    camel = ".".join(
        _field_at(request, ".".join(path.split(".")[: i + 1])).json_name for i in range(path.count(".") + 1)
    )
    if where == "query" and camel != path:
        notes.append(f"Also as `{camel}`.")
    if where == "query" and field.is_repeated:
        aliases = [
            alias for alias, target in ALIASES.items() if target == field.name and alias not in request.fields_by_name
        ]
        notes.append("Repeat the key or give a comma list." + "".join(f" `{alias}` works too." for alias in aliases))
    notes.append(form)
    parameter: dict[str, Any] = {
        "name": path,
        "in": where,
        "description": "\n\n".join(note for note in notes if note),
        "schema": {"type": "array", "items": value} if field.is_repeated and where == "query" else value,
    }
    if where == "path":
        parameter["required"] = True
    if field.name in PARAMETER_EXAMPLES:
        parameter["example"] = PARAMETER_EXAMPLES[field.name]
    return parameter


def _query_value(field: FieldDescriptor, comments: dict[str, str]) -> tuple[Schema, str]:
    """The schema of one value as query.py reads it, and how to write it."""
    cpp = field.cpp_type
    if field.enum_type is not None:
        short = short_enum_names(field.enum_type)
        names = [value.name for value in field.enum_type.values if value.number != 0]
        listed = enum_values_text(field.enum_type, comments, short_forms=short)
        return {"type": "string", "enum": [*short, *names]}, f"A short form, a name or a number:\n\n{listed}"
    message: Any = field.message_type
    if message is not None:
        if message.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}, "RFC 3339 (`2024-08-08T23:59:00Z`) or epoch milliseconds."
        if message.full_name == "google.protobuf.Duration":
            return {"type": "string", "pattern": DURATION_PATTERN}, "A JSON Duration, like `5s` or `1.5s`."
        if "value" in message.fields_by_name:
            return _query_value(message.fields_by_name["value"], comments)
        return {"type": "string"}, ""
    if field.type in _INT64_TYPES:
        return {"type": "integer", "format": "int64"}, ""
    if field.type in _UINT64_TYPES:
        return {"type": "integer", "format": "int64", "minimum": 0}, ""
    if cpp in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        schema: Schema = {"type": "integer", "format": "int32"}
        return ({**schema, "minimum": 0} if cpp == FieldDescriptor.CPPTYPE_UINT32 else schema), ""
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return {"type": "number"}, ""
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return {"type": "boolean"}, "`true`/`false`/`1`/`0`; a bare key is true."
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "format": "byte"}, "URL-safe base64."
    return {"type": "string"}, ""


def _version() -> str:
    try:
        return metadata.version("wadm-grpc")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


_INFO = """Every route is a gRPC call forwarded to the server (same validation, same errors).

- Answers are proto3 canonical JSON with proto field names: int64 as strings, times as RFC 3339 strings,
  decimals as exact strings, enums by name.
- Query parameters by proto or lowerCamel name; repeated ones as repeated keys or comma lists; enums by
  short form (`1m`, `24h`), name or number; times as RFC 3339 or epoch milliseconds.
- Errors are a google.rpc.Status with the HTTP status of grpc-gateway's table; `Retry-After` from RetryInfo.
- `Grpc-Timeout` (`5S`, `250m`) sets the call's deadline (504 past it); `If-None-Match` gives 304.
"""
