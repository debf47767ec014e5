"""Exact decimals: parsing wire strings, formatting, and arithmetic that never rounds silently."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from wadm_grpc.domain.errors import quoted

# Every stored decimal has at most this many digits after the point (stores use DECIMAL(38, 18)).
MAX_SCALE = 18
# Every price, quantity and price x quantity of a trade is below 10**MAX_INTEGER_DIGITS: with MAX_SCALE
# decimals that is at most 34 significant digits, so a single value is exact in DECIMAL(38, 18) and in
# MongoDB's Decimal128 alike. Sums of any number of them are exact too (see the stores).
MAX_INTEGER_DIGITS = 16

# Wide enough that no sum or product of stored values is ever rounded.
EXACT = decimal.Context(prec=100, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.Inexact, decimal.Overflow])
_ROUNDING = decimal.Context(prec=100, rounding=decimal.ROUND_HALF_EVEN)
# 1, 0.1, ... 1E-(MAX_SCALE + 8): the quanta `rounded` is asked for (a VWAP is rounded for every candle).
_QUANTA = tuple(Decimal(1).scaleb(-scale) for scale in range(MAX_SCALE + 9))
_PLAIN = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")


def parse_positive(text: str) -> Decimal:
    """Parse a positive plain decimal string ("61800.30"); raise ValueError saying what is wrong."""
    if not text:
        raise ValueError("is empty")
    if not _PLAIN.match(text):
        raise ValueError(f"{quoted(text)} is not a plain decimal (digits, one optional point; no sign or exponent)")
    value = Decimal(text)
    if value <= 0:
        raise ValueError(f"{quoted(text)} must be greater than zero")
    if scale_of(value) > MAX_SCALE:
        raise ValueError(f"{quoted(text)} has more than {MAX_SCALE} digits after the point")
    if len(text.split(".")[0]) > MAX_INTEGER_DIGITS:
        raise ValueError(f"{quoted(text)} has more than {MAX_INTEGER_DIGITS} digits before the point")
    return value


def scale_of(value: Decimal) -> int:
    """Digits after the point, as written ("1.50" -> 2, "7" -> 0)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), "finite decimals only"
    return max(0, -exponent)


def scale_of_text(text: str) -> int:
    """Digits after the point of a plain decimal string ("1.50" -> 2; cheaper than Decimal.as_tuple)."""
    point = text.find(".")
    return 0 if point < 0 else len(text) - point - 1


def with_scale(value: Decimal, scale: int) -> Decimal:
    """The same number written with exactly `scale` digits after the point (must not lose digits)."""
    return value.quantize(Decimal(1).scaleb(-scale), context=EXACT)


def rounded(value: Decimal, scale: int) -> Decimal:
    """`value` rounded half-even to `scale` digits after the point."""
    quantum = _QUANTA[scale] if 0 <= scale < len(_QUANTA) else Decimal(1).scaleb(-scale)
    return value.quantize(quantum, context=_ROUNDING)


def multiply(a: Decimal, b: Decimal) -> Decimal:
    """Exact product."""
    return EXACT.multiply(a, b)


def subtract(a: Decimal, b: Decimal) -> Decimal:
    """Exact difference."""
    return EXACT.subtract(a, b)


def divide(a: Decimal, b: Decimal, scale: int) -> Decimal:
    """a / b rounded half-even to `scale` digits after the point."""
    return rounded(_ROUNDING.divide(a, b), scale)


def to_wire(value: Decimal) -> str:
    """Plain notation, never an exponent ("0.00000001", not "1E-8")."""
    return format(value, "f")
