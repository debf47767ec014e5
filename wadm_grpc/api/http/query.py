"""Request messages from path variables and query parameters, by grpc-gateway's rules (runtime/query.go).

- Fields by proto name or JSON (lowerCamel) name, nested ones dotted (`a.b`); repeated fields as repeated
  keys or comma lists; a few aliases the old REST clients send (`exchange` for `exchanges`).
- Enums by name, number, or the short form people type (`1h` for TIMEFRAME_1H, `24h` for STATS_WINDOW_24H).
- Timestamps as RFC 3339 or epoch milliseconds; Durations in their JSON form (`5s`).
- Every problem is reported at once as an InvalidArgumentError naming the field, unknown keys included:
  a typo must not be silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from wadm_grpc.domain.errors import Violations, quoted

# Query keys that steer the gateway itself and are never request fields.
RESERVED_KEYS = frozenset({"pretty"})
# Names the REST clients used before the gateway -> the field they mean (when the message has no such field).
ALIASES = {"exchange": "exchanges", "symbol": "symbols"}

_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_TRUE = frozenset({"true", "1", ""})  # `?fill_gaps` alone means true
_FALSE = frozenset({"false", "0"})
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)


def build_request(
    request_class: type[Message],
    *,
    path_variables: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    ignore: Sequence[str] = (),
) -> Message:
    """The request message, or InvalidArgumentError listing every bad or unknown parameter.
    `ignore`: fields filled by other means (the body), so query keys naming them are errors too."""
    request = request_class()
    problems = Violations()
    given: dict[str, list[str]] = {}
    for key, value in query:
        if key in RESERVED_KEYS:
            continue
        given.setdefault(key, []).append(value)
    for path, value in path_variables.items():
        _assign(request, path, [value], problems, split_commas=False)
    bound = set(path_variables)
    for key, values in given.items():
        resolved = _resolve(request.DESCRIPTOR, key)
        if resolved is None:
            problems.add(key, "unknown query parameter")
            continue
        if resolved in bound or resolved in ignore:
            problems.add(key, "is set by the path or the body, not the query")
            continue
        bound.add(resolved)
        _assign(request, resolved, values, problems, split_commas=True)
    problems.raise_if_any()
    return request


def _resolve(descriptor: Any, key: str) -> str | None:
    """The proto field path a query key names (proto or JSON names, dotted, aliases), or None."""
    names: list[str] = []
    current: Any = descriptor
    parts = key.split(".")
    for index, part in enumerate(parts):
        if current is None:
            return None
        field = current.fields_by_name.get(part) or current.fields_by_camelcase_name.get(part)
        if field is None and index == len(parts) - 1 and part in ALIASES:
            field = current.fields_by_name.get(ALIASES[part])
            if field is not None and not field.is_repeated:
                field = None
        if field is None:
            return None
        names.append(field.name)
        current = field.message_type if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE else None
        if current is not None and current.full_name in _SCALAR_MESSAGES:
            current = None  # a Timestamp is set as a whole, not by its fields
    return ".".join(names)


def _assign(request: Message, path: str, values: list[str], problems: Violations, *, split_commas: bool) -> None:
    *parents, name = path.split(".")
    target = request
    for parent in parents:
        target = getattr(target, parent)
    field: Any = target.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and field.message_type.full_name not in _SCALAR_MESSAGES:
            problems.add(path, "a repeated message cannot be set from the query")
            return
        items = [part for value in values for part in (value.split(",") if split_commas else [value])]
        converted = [_scalar(field, item, path, problems) for item in items]
        repeated = getattr(target, name)
        for item in converted:
            if item is None:
                continue
            if isinstance(item, Message):
                repeated.add().CopyFrom(item)
            else:
                repeated.append(item)
        return
    if len(values) > 1:
        problems.add(path, f"given {len(values)} times; it takes one value")
        return
    value = _scalar(field, values[0], path, problems)
    if value is None:
        return
    if isinstance(value, Message):
        getattr(target, name).CopyFrom(value)
    elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        getattr(target, name).value = value  # a wrapper type
    else:
        setattr(target, name, value)


def _scalar(field: Any, text: str, path: str, problems: Violations) -> Any:
    """`text` as the field's type, or None after adding the problem."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return _message_value(field.message_type, text, path, problems)
    if cpp in _INT_RANGES:
        low, high = _INT_RANGES[cpp]
        if not _INTEGER.fullmatch(text):
            problems.add(path, f"must be an integer, got {quoted(text)}")
            return None
        number = int(text)
        if not low <= number <= high:
            problems.add(path, f"must be between {low} and {high}, got {quoted(text)}")
            return None
        return number
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            problems.add(path, f"must be a number, got {quoted(text)}")
            return None
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        lowered = text.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        problems.add(path, f"must be true or false, got {quoted(text)}")
        return None
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return _enum_value(field.enum_type, text, path, problems)
    if field.type == FieldDescriptor.TYPE_BYTES:
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            problems.add(path, f"must be base64, got {quoted(text)}")
            return None
    return text


def _enum_value(enum: Any, text: str, path: str, problems: Violations) -> int | None:
    """By name (TIMEFRAME_1H), number (5) or short form (1h: the name after the type's prefix, lower case)."""
    by_name = enum.values_by_name.get(text)
    if by_name is not None:
        return int(by_name.number)
    if _INTEGER.fullmatch(text):
        number = int(text)
        if number in enum.values_by_number:
            return number
    short = short_enum_names(enum).get(text)
    if short is not None:
        return short
    names = ", ".join(sorted(short_enum_names(enum), key=lambda n: short_enum_names(enum)[n]))
    problems.add(path, f"must be one of {names} (or the {enum.name} name or number), got {quoted(text)}")
    return None


def short_enum_names(enum: Any) -> dict[str, int]:
    """The short forms of an enum's values: TIMEFRAME_1H -> "1h" (the *_UNSPECIFIED value has none).
    Case matters: Binance's "1M" is a month, so it must not pass for TIMEFRAME_1M."""
    prefix = _enum_prefix(enum)
    return {
        value.name.removeprefix(prefix).lower(): int(value.number)
        for value in enum.values
        if value.number != 0 and value.name.startswith(prefix)
    }


def _enum_prefix(enum: Any) -> str:
    # buf's ENUM_VALUE_PREFIX rule: every value starts with the type's UPPER_SNAKE name and "_".
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _message_value(message: Any, text: str, path: str, problems: Violations) -> Any:
    name = message.full_name
    try:
        if name == "google.protobuf.Timestamp":
            stamp = timestamp_pb2.Timestamp()
            if _INTEGER.fullmatch(text):
                stamp.FromMilliseconds(int(text))  # epoch milliseconds, as the REST clients send
            else:
                stamp.FromJsonString(text)
            return stamp
        if name == "google.protobuf.Duration":
            duration = duration_pb2.Duration()
            duration.FromJsonString(text)
            return duration
        if name == "google.protobuf.FieldMask":
            mask = field_mask_pb2.FieldMask()
            mask.FromJsonString(text)
            return mask
    except (ValueError, TypeError, OverflowError):
        kind = name.rsplit(".", 1)[-1]
        form = {"Timestamp": "RFC 3339 or epoch milliseconds", "Duration": "like 5s or 1.5s"}.get(kind, kind)
        problems.add(path, f"must be a {kind} ({form}), got {quoted(text)}")
        return None
    if name in _WRAPPERS:
        return _scalar(message.fields_by_name["value"], text, path, problems)
    problems.add(path, "is a message: set its fields with dotted names")
    return None


_SCALAR_MESSAGES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask", *_WRAPPERS}
)
