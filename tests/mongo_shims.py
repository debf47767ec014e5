"""Test code only: emulator shims, patched into mongomock, where it lacks what MongoDB documents.

Each shim is listed in docs/mongo.md ("Verified only on the emulator"):

1. Decimal128 as a number: MongoDB compares, sums, subtracts, multiplies, truncates and floors Decimal128
   values numerically; mongomock cannot order or multiply them. Values are wrapped in `NumericDecimal128`
   (still a Decimal128) as they enter mongomock, and every result is rounded exactly as a server rounds it
   (IEEE 754-2008 decimal128: 34 significant digits, half-even, exponents clamped to [-6176, 6111]), never
   computed with Python's wider precision: the emulator fails wherever a server would round. A decimal
   compares with a double exactly (the double's binary value), as the server compares numbers of any type;
   arithmetic with a double first converts it as Decimal128(double) does (15 significant digits).
2. $min/$max accumulators compare with BSON order (embedded documents field by field), as MongoDB does;
   mongomock uses Python's `min`/`max`, which cannot compare dicts.
3. $toDecimal of a double rounds to 15 significant digits (MongoDB's Decimal128(double)); mongomock
   quantizes to 14 decimal places.
4. $strLenCP (code points of a string), missing from mongomock.
5. $unionWith (MongoDB 4.4+): the sub-pipeline's results on the other collection follow the input's.
9. $type of a value (the server's type names: "double", "string", "int", "long", "decimal", ...), missing.
10. $toString of a double as the server writes it: printf's %g, six significant digits
    (123456789.0 -> "1.23457e+08"); mongomock writes Python's repr. $toLong truncates a double as the server.
"""

from __future__ import annotations

import datetime
import decimal
import numbers
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import mongomock
from bson import Decimal128, Int64, ObjectId
from mongomock import aggregate as mongomock_aggregate
from mongomock import filtering as mongomock_filtering

# IEEE 754-2008 decimal128, as MongoDB computes: inexact results are rounded silently, never trapped.
DECIMAL128_ARITHMETIC = decimal.Context(
    prec=34, rounding=decimal.ROUND_HALF_EVEN, Emax=6144, Emin=-6143, clamp=1, traps=[decimal.InvalidOperation]
)


class NumericDecimal128(Decimal128):
    """A Decimal128 that orders and computes like MongoDB's (shim 1)."""

    __slots__ = ("_decimal",)

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self._decimal = value if isinstance(value, Decimal) else self.to_decimal()

    def _value(self) -> Decimal:
        try:
            return self._decimal
        except AttributeError:  # copies (deepcopy, pickle) restore only the Decimal128 state
            self._decimal = self.to_decimal()
            return self._decimal

    @staticmethod
    def _other(other: object) -> Decimal | None:
        if isinstance(other, Decimal128):
            return other.to_decimal()
        if isinstance(other, bool):
            return None
        if isinstance(other, int):
            return Decimal(other)
        if isinstance(other, float):
            return _from_double(other)
        return None

    def _compare(self, other: object, test: Callable[[Decimal, Decimal], bool]) -> bool:
        # Comparisons are exact across types (a double's binary value), unlike arithmetic (Decimal128(double)).
        value = Decimal(other) if isinstance(other, float) else self._other(other)
        if value is None:
            return NotImplemented
        return test(self._value(), value)

    def __lt__(self, other: object) -> bool:
        return self._compare(other, Decimal.__lt__)

    def __le__(self, other: object) -> bool:
        return self._compare(other, Decimal.__le__)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, Decimal.__gt__)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, Decimal.__ge__)

    def __eq__(self, other: object) -> bool:
        return self._compare(other, Decimal.__eq__)

    def __ne__(self, other: object) -> bool:
        return self._compare(other, Decimal.__ne__)

    def __hash__(self) -> int:
        return hash(self._value())

    def __add__(self, other: object) -> NumericDecimal128:
        value = self._other(other)
        if value is None:
            return NotImplemented
        return NumericDecimal128(DECIMAL128_ARITHMETIC.add(self._value(), value))

    __radd__ = __add__

    def __mul__(self, other: object) -> NumericDecimal128:
        value = self._other(other)
        if value is None:
            return NotImplemented
        return NumericDecimal128(DECIMAL128_ARITHMETIC.multiply(self._value(), value))

    __rmul__ = __mul__

    def __sub__(self, other: object) -> NumericDecimal128:
        value = self._other(other)
        if value is None:
            return NotImplemented
        return NumericDecimal128(DECIMAL128_ARITHMETIC.subtract(self._value(), value))

    def __rsub__(self, other: object) -> NumericDecimal128:
        value = self._other(other)
        if value is None:
            return NotImplemented
        return NumericDecimal128(DECIMAL128_ARITHMETIC.subtract(value, self._value()))

    def __trunc__(self) -> NumericDecimal128:
        return NumericDecimal128(self._value().to_integral_value(rounding=decimal.ROUND_DOWN))

    def __floor__(self) -> NumericDecimal128:
        # Without it, mongomock's $floor (math.floor) would go through float and lose digits.
        return NumericDecimal128(self._value().to_integral_value(rounding=decimal.ROUND_FLOOR))

    def __float__(self) -> float:
        return float(self._value())


numbers.Number.register(NumericDecimal128)


def _from_double(value: float) -> Decimal:
    """MongoDB's Decimal128(double): rounded half-even to 15 significant digits, trailing zeros kept."""
    return Decimal(format(value, ".14e"))


def numeric(value: Any) -> Any:
    """`value` with every Decimal128 inside made a NumericDecimal128."""
    if isinstance(value, Decimal128) and not isinstance(value, NumericDecimal128):
        return NumericDecimal128(value.to_decimal())
    if isinstance(value, dict):
        return {key: numeric(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [numeric(item) for item in value]
    return value


# -- shims 2-5: patched into mongomock once ---------------------------------------------------------------


def _bson_extreme(pick: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    def accumulate(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return pick(present, key=mongomock_filtering.BsonComparable) if present else None

    return accumulate


def _sum(values: list[Any]) -> Any:
    """$sum as MongoDB computes it: numbers only; decimal (34 digits) as soon as one value is a decimal."""
    numbers_only = [v for v in values if isinstance(v, numbers.Number) and not isinstance(v, bool)]
    if not any(isinstance(v, Decimal128) for v in numbers_only):
        return sum(numbers_only)
    total = Decimal(0)
    for value in numbers_only:
        total = DECIMAL128_ARITHMETIC.add(total, NumericDecimal128._other(value))
    return NumericDecimal128(total)


_to_decimal_original = mongomock_aggregate._Parser._handle_type_convertion_operator
_string_original = mongomock_aggregate._Parser._handle_string_operator


def _type_conversion(self: Any, operator: str, values: Any) -> Any:
    if operator == "$toDecimal":
        try:
            value = self.parse(values)
        except KeyError:
            return None
        if value is None:
            return None
        if isinstance(value, float):
            return NumericDecimal128(_from_double(value))
        if isinstance(value, Decimal128):
            return numeric(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return NumericDecimal128(Decimal(value))
    if operator in ("$toString", "$toLong"):
        try:
            value = self.parse(values)
        except KeyError:
            return None
        if isinstance(value, float):
            return server_string(value) if operator == "$toString" else Int64(int(value))
    return _to_decimal_original(self, operator, values)


def _string(self: Any, operator: str, values: Any) -> Any:
    if operator == "$strLenCP":
        return len(self.parse(values))
    return _string_original(self, operator, values)


_TYPE_NAMES: list[tuple[type | tuple[type, ...], str]] = [
    (bool, "bool"),
    (Int64, "long"),
    (int, "int"),
    (float, "double"),
    (Decimal128, "decimal"),
    (str, "string"),
    (ObjectId, "objectId"),
    (datetime.datetime, "date"),
    (dict, "object"),
    ((list, tuple), "array"),
]


def bson_type(value: Any) -> str:
    """The server's $type name of a value (shim 9); ints beyond 32 bits are longs, as PyMongo encodes them."""
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
        return "long"
    return next(name for kind, name in _TYPE_NAMES if isinstance(value, kind))


def server_string(value: Any) -> Any:
    """$toString of a double as the server writes it (shim 10): %g, six significant digits."""
    return format(value, "g") if isinstance(value, float) else None


_type_original = mongomock_aggregate._Parser._handle_type_operator


def _type_operator(self: Any, operator: str, values: Any) -> Any:
    if operator == "$type":
        try:
            return bson_type(self.parse(values))
        except KeyError:
            return "missing"
    return _type_original(self, operator, values)


def _union_with(in_collection: list[Any], database: Any, options: Any) -> list[Any]:
    other = database.get_collection(options["coll"])
    joined = mongomock_aggregate.process_pipeline(stored(other), database, options.get("pipeline", []), None)
    return [*in_collection, *joined]


def stored(collection: mongomock.Collection) -> list[Any]:
    """The stored documents themselves (dates naive UTC), without find()'s deep copies (speed only: pipeline
    stages copy what they change)."""
    return list(collection._store.documents)


def candidates(collection: mongomock.Collection, pipeline: list[Any]) -> list[Any]:
    """The documents a leading {$or: [{symbol, exchange, ...}, ...]} $match can accept, as an index on
    (symbol, exchange) would find them (speed only: the $match still runs on each)."""
    documents = stored(collection)
    match = pipeline[0].get("$match", {}) if pipeline else {}
    clauses = match.get("$or") if list(match) == ["$or"] else None

    def values(condition: Any) -> list[Any] | None:
        if isinstance(condition, str):
            return [condition]
        return list(condition["$in"]) if isinstance(condition, dict) and list(condition) == ["$in"] else None

    if not clauses:
        return documents
    markets = set()
    for clause in clauses:
        symbols, exchanges = values(clause.get("symbol")), values(clause.get("exchange"))
        if symbols is None or exchanges is None:
            return documents
        markets.update((symbol, exchange) for symbol in symbols for exchange in exchanges)
    return [d for d in documents if (d.get("symbol"), d.get("exchange")) in markets]


mongomock_aggregate._GROUPING_OPERATOR_MAP["$sum"] = _sum
mongomock_aggregate._GROUPING_OPERATOR_MAP["$max"] = _bson_extreme(max)
mongomock_aggregate._GROUPING_OPERATOR_MAP["$min"] = _bson_extreme(min)
mongomock_aggregate._Parser._handle_type_convertion_operator = _type_conversion
mongomock_aggregate._Parser._handle_string_operator = _string
mongomock_aggregate._PIPELINE_HANDLERS["$unionWith"] = _union_with
mongomock_aggregate.type_operators.append("$type")
mongomock_aggregate._Parser._handle_type_operator = _type_operator
