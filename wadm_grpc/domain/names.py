"""Symbol and exchange names: normalisation and validation."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from wadm_grpc.domain.errors import FieldViolation, InvalidArgumentError, Violations, quoted

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._/:-]{0,63}$")
_EXCHANGE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


def symbol_problem(raw: str) -> tuple[str, str | None]:
    """(normalised symbol, None) or (raw, what is wrong). Symbols are matched upper-case."""
    value = raw.strip().upper()
    if not value:
        return raw, "is required"
    if not _SYMBOL.match(value):
        return raw, f"{quoted(raw)} is not a symbol (letters, digits and . _ / : -, at most 64)"
    return value, None


def exchange_problem(raw: str) -> tuple[str, str | None]:
    """(normalised exchange, None) or (raw, what is wrong). Exchanges are matched lower-case."""
    value = raw.strip().lower()
    if not value:
        return raw, "is required"
    if not _EXCHANGE.match(value):
        return raw, f"{quoted(raw)} is not an exchange name (letters, digits and . _ -, at most 32)"
    return value, None


def normalize_symbol(raw: str, *, field: str = "symbol") -> str:
    """The normalised symbol, or InvalidArgumentError naming `field`."""
    value, problem = symbol_problem(raw)
    if problem:
        raise InvalidArgumentError.of(field, problem)
    return value


def normalize_exchanges(raw: Iterable[str], *, field: str = "exchanges") -> tuple[str, ...]:
    """Distinct normalised exchanges, sorted (empty means every exchange)."""
    values: set[str] = set()
    violations: list[FieldViolation] = []
    for index, item in enumerate(raw):
        value, problem = exchange_problem(item)
        if problem:
            violations.append(FieldViolation(f"{field}[{index}]", problem))
        values.add(value)
    if violations:
        raise InvalidArgumentError(violations)
    return tuple(sorted(values))


def check_exchanges(exchanges: Iterable[str], problems: Violations) -> tuple[str, ...]:
    """Normalised exchanges; what is wrong goes into `problems`."""
    try:
        return normalize_exchanges(exchanges)
    except InvalidArgumentError as error:
        problems.extend(error)
        return ()


def check_symbols(symbols: Sequence[str], problems: Violations) -> list[str]:
    """Normalised symbols of a stream subscription, in order (at least one); what is wrong goes into `problems`,
    naming each `symbols[i]`."""
    names = []
    for index, raw in enumerate(symbols):
        name, problem = symbol_problem(raw)
        if problem:
            problems.add(f"symbols[{index}]", problem)
        names.append(name)
    if not symbols:
        problems.add("symbols", "needs at least one symbol")
    return names


def check_market(symbol: str, exchanges: Iterable[str], problems: Violations) -> tuple[str, tuple[str, ...]]:
    """Normalised symbol and exchanges; what is wrong goes into `problems` (check it before using them)."""
    name, problem = symbol_problem(symbol)
    if problem:
        problems.add("symbol", problem)
    return name, check_exchanges(exchanges, problems)
