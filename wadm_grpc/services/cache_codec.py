"""Exact, compact bytes for cached service answers (frozen dataclasses of decimals, ints, enums...).

Decimals travel as strings, so "61800.30" is cached and served back as "61800.30". The encoding is JSON
over the dataclass fields in declaration order; decoding is driven by the type hints, so any answer
made of dataclasses, tuples, lists, dicts with str keys, optionals, enums, Decimal, int, str and bool
round-trips without per-type code.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar, cast

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [_plain(getattr(value, f.name)) for f in dataclasses.fields(value)]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def encode(value: object) -> bytes:
    """The bytes of `value`."""
    return json.dumps(_plain(value), separators=(",", ":")).encode()


@cache
def _hints(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _build(kind: Any, data: Any) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if data is None:
            return None
        return _build(next(arg for arg in args if arg is not type(None)), data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in data)
        return tuple(_build(arg, item) for arg, item in zip(args, data, strict=True))
    if origin is list:
        return [_build(args[0], item) for item in data]
    if origin is dict:
        return {key: _build(args[1], item) for key, item in data.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        fields = zip(_hints(kind), data, strict=True)
        return kind(**{name: _build(hint, item) for (name, hint), item in fields})
    if kind is Decimal:
        return Decimal(data)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind[data]
    return data


def decode(kind: type[T] | Any, data: bytes) -> T:
    """A `kind` (a type or a type expression like list[tuple[int, Aggregate]]) from encode()'s bytes."""
    return cast(T, _build(kind, json.loads(data)))
