"""JSON Schemas of the answers exactly as render.py prints them, described by the protos' own comments.

Proto3 canonical JSON with proto field names: int64 as strings, Timestamps as RFC 3339 strings,
Durations as "1.5s", enums by name, fields without presence always printed (so they are `required`),
messages, proto3 `optional` fields and oneof members only when set (at most one member of a oneof).

The generated modules carry no comments, so they come from wadm_grpc/pb/wadm.binpb, a FileDescriptorSet
with source info that `make protos` writes beside them (and CI checks for staleness with the rest of pb/):
reading it is exact (comments are located by descriptor path, not by parsing .proto text) and needs
neither protoc nor the .proto files at run time.
"""

from __future__ import annotations

from importlib import resources
from itertools import combinations
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

Schema = dict[str, Any]

DESCRIPTOR_SET = "wadm.binpb"  # protos/generate.py writes it into wadm_grpc/pb
SCHEMA_REF_PREFIX = "#/components/schemas/"

# Field numbers of descriptor.proto that SourceCodeInfo paths are made of.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

INT64_PATTERN = r"^-?[0-9]+$"
DURATION_PATTERN = r"^-?[0-9]+(\.[0-9]{1,9})?s$"
_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT32_CPP = frozenset({FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32})
_FLOAT_CPP = frozenset({FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT})
_WRAPPER_SUFFIX = "Value"
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


# google.rpc.Status as errors.py renders it (googleapis' comments are not in wadm.binpb).
STATUS: Schema = {
    "type": "object",
    "description": "google.rpc.Status: the gRPC status of the failed call. The HTTP status follows "
    "grpc-gateway's table (INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, ...).",
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "The google.rpc.Code (3 INVALID_ARGUMENT, ...)."},
        "message": {"type": "string", "description": "For people; bounded in length."},
        "details": {
            "type": "array",
            "description": "Rich details, each tagged by `@type`: `type.googleapis.com/google.rpc.BadRequest` "
            "(`field_violations` naming every bad field), `google.rpc.RetryInfo` (`retry_delay`, also sent as "
            "Retry-After), `google.rpc.RequestInfo` (`request_id` of an INTERNAL error).",
            "items": {
                "type": "object",
                "properties": {"@type": {"type": "string", "description": "type.googleapis.com/<message name>"}},
                "required": ["@type"],
            },
        },
    },
    "required": ["code", "message", "details"],
    "additionalProperties": False,
}


def load_comments() -> dict[str, str]:
    """The leading comment of every message, field, oneof, enum, enum value, service and method of the
    project's protos, by full name (enum values as `<enum full name>.<VALUE>`)."""
    data = resources.files("wadm_grpc.pb").joinpath(DESCRIPTOR_SET).read_bytes()
    comments: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        names = _names_by_path(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = clean_comment(location.leading_comments)
            if name is not None and text:
                comments[name] = text
    return comments


def clean_comment(raw: str) -> str:
    """A `//` comment's text without the one space after each `//`, as Markdown paragraphs."""
    lines = [line.removeprefix(" ").rstrip() for line in raw.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def _names_by_path(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    names: dict[tuple[int, ...], str] = {}

    def enum(path: tuple[int, ...], proto: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        full = f"{scope}.{proto.name}"
        names[path] = full
        for index, value in enumerate(proto.value):
            names[(*path, _ENUM_VALUE, index)] = f"{full}.{value.name}"

    def message(path: tuple[int, ...], proto: descriptor_pb2.DescriptorProto, scope: str) -> None:
        full = f"{scope}.{proto.name}"
        names[path] = full
        for index, field in enumerate(proto.field):
            names[(*path, _MESSAGE_FIELD, index)] = f"{full}.{field.name}"
        for index, oneof in enumerate(proto.oneof_decl):
            names[(*path, _MESSAGE_ONEOF, index)] = f"{full}.{oneof.name}"
        for index, nested in enumerate(proto.nested_type):
            message((*path, _MESSAGE_NESTED, index), nested, full)
        for index, nested_enum in enumerate(proto.enum_type):
            enum((*path, _MESSAGE_ENUM, index), nested_enum, full)

    for index, proto in enumerate(file.message_type):
        message((_FILE_MESSAGE, index), proto, file.package)
    for index, enum_proto in enumerate(file.enum_type):
        enum((_FILE_ENUM, index), enum_proto, file.package)
    for index, service in enumerate(file.service):
        full = f"{file.package}.{service.name}"
        names[(_FILE_SERVICE, index)] = full
        for method_index, method in enumerate(service.method):
            names[(_FILE_SERVICE, index, _SERVICE_METHOD, method_index)] = f"{full}.{method.name}"
    return names


def real_oneofs(message: Descriptor) -> list[Any]:
    """The message's oneofs, without the synthetic ones protoc makes for proto3 `optional` fields."""
    return [
        oneof for oneof in message.oneofs if not (len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name)
    ]


def is_map(field: FieldDescriptor) -> bool:
    """True for `map<K, V>` fields (repeated entries on the wire, a JSON object in canonical JSON)."""
    message: Any = field.message_type
    return bool(field.is_repeated and message is not None and message.GetOptions().map_entry)


def enum_values_text(enum: EnumDescriptor, comments: dict[str, str], *, short_forms: dict[str, int]) -> str:
    """A Markdown list of the enum's values with their comments (and short forms, where given)."""
    short_of = {number: short for short, number in short_forms.items()}
    lines = []
    for value in enum.values:
        short = short_of.get(value.number)
        label = f"`{value.name}` ({value.number}" + (f", `{short}`)" if short else ")")
        comment = comments.get(f"{enum.full_name}.{value.name}", "")
        lines.append(f"- {label}: {comment}".rstrip(": "))
    return "\n".join(lines)


class AnswerSchemas:
    """JSON Schemas of messages as answers, collected as OpenAPI components (one per message, by full
    name) so recursive and shared messages are described once."""

    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}

    def ref(self, message: Descriptor) -> Schema:
        """A reference to the message's schema, building it (and those it uses) on first use."""
        name = message.full_name
        if name not in self.components:
            self.components[name] = {}  # claimed first: a recursive message refers to itself
            self.components[name] = self._message(message)
        return {"$ref": SCHEMA_REF_PREFIX + name}

    def _message(self, message: Descriptor) -> Schema:
        properties = {field.name: self._field(field) for field in message.fields}
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [field.name for field in message.fields if not field.has_presence]
        if required:
            schema["required"] = required
        at_most_one = [
            {"not": {"required": list(pair)}}
            for oneof in real_oneofs(message)
            for pair in combinations([field.name for field in oneof.fields], 2)
        ]
        if at_most_one:
            schema["allOf"] = at_most_one
        comment = self.comments.get(message.full_name)
        if comment:
            schema["description"] = comment
        return schema

    def _field(self, field: FieldDescriptor) -> Schema:
        if is_map(field):
            entry: Any = field.message_type
            schema: Schema = {"type": "object", "additionalProperties": self.value(entry.fields_by_name["value"])}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field)}
        else:
            schema = self.value(field)
        notes = [self.comments.get(field.full_name, "")]
        oneof: Any = field.containing_oneof
        owner: Any = field.containing_type
        if oneof is not None and oneof in real_oneofs(owner):
            others = ", ".join(f"`{other.name}`" for other in oneof.fields)
            notes.append(f"Oneof `{oneof.name}`: at most one of {others} is present.")
        if field.enum_type is not None:
            notes.append(enum_values_text(field.enum_type, self.comments, short_forms={}))
        description = "\n\n".join(note for note in notes if note)
        if description:
            schema = (
                {**schema, "description": description}
                if "$ref" not in schema
                else {"allOf": [schema], "description": description}
            )
        return schema

    def value(self, field: FieldDescriptor) -> Schema:
        """The schema of one value of the field (one element of a repeated field)."""
        enum: Any = field.enum_type
        message: Any = field.message_type
        if field.type in _INT64_TYPES:
            return {"type": "string", "format": "int64", "pattern": INT64_PATTERN}
        cpp = field.cpp_type
        if cpp in _INT32_CPP:
            return {"type": "integer", "format": "int32"}
        if cpp in _FLOAT_CPP:
            return {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
        if cpp == FieldDescriptor.CPPTYPE_BOOL:
            return {"type": "boolean"}
        if cpp == FieldDescriptor.CPPTYPE_ENUM:
            return {"type": "string", "enum": [value.name for value in enum.values]}
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
            return self._well_known(message) or self.ref(message)
        return {"type": "string"}

    def _well_known(self, message: Descriptor) -> Schema | None:
        name = message.full_name
        if name == _TIMESTAMP:
            return {"type": "string", "format": "date-time"}
        if name == _DURATION:
            return {"type": "string", "pattern": DURATION_PATTERN}
        if name == "google.protobuf.FieldMask":
            return {"type": "string"}
        if name == "google.protobuf.Any":
            return {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]}
        if name.startswith("google.protobuf.") and name.endswith(_WRAPPER_SUFFIX) and "value" in message.fields_by_name:
            return self.value(message.fields_by_name["value"])
        if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
            return {}  # any JSON
        return None
