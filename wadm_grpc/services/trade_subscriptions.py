"""SubscribeTrades' vocabulary: the client's commands, the events it gets, and the symbol set they change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wadm_grpc.domain.errors import Violations, WadmError
from wadm_grpc.domain.names import check_exchanges, check_symbols
from wadm_grpc.domain.trade import Trade

MAX_SUBSCRIBED_SYMBOLS = 100


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Add `symbols` (on `exchanges`, every exchange if empty); optionally change the heartbeat interval."""

    symbols: Sequence[str]
    exchanges: Sequence[str] = ()
    heartbeat_seconds: float | None = None
    resume_token: str = ""  # only in the first subscribe: replay from there (services/streaming.py)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Remove `symbols` (those not subscribed are ignored)."""

    symbols: Sequence[str]


@dataclass(frozen=True, slots=True)
class Ping:
    """Ask for a Pong."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A command refused (as an event), or one the API layer could not read (as a command): the stream goes on."""

    error: WadmError
    resume_token: str = ""  # as an event: the stream's position, like every message


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The whole symbol set after a change, alphabetically."""

    symbols: tuple[str, ...]
    resume_token: str = ""  # the stream's position, like every message


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a Ping."""

    resume_token: str = ""  # the stream's position, like every message


Command = Subscribe | Unsubscribe | Ping | Refused


class SymbolSelection:
    """The symbols of one stream, each with its own exchange filter (empty: every exchange)."""

    def __init__(self) -> None:
        self._exchanges: dict[str, frozenset[str]] = {}

    @property
    def symbols(self) -> frozenset[str]:
        """Every subscribed symbol."""
        return frozenset(self._exchanges)

    @property
    def bus_exchanges(self) -> frozenset[str]:
        """The filter the bus can apply for all symbols at once: the union, or every exchange if any wants all."""
        filters = list(self._exchanges.values())
        if not filters or any(not selected for selected in filters):
            return frozenset()
        return frozenset().union(*filters)

    def subscribed(self) -> Subscribed:
        """The acknowledgement of the current set."""
        return Subscribed(tuple(sorted(self._exchanges)))

    def subscribe(self, command: Subscribe, problems: Violations) -> None:
        """Add the command's symbols (replacing the exchanges of those already there), or raise
        InvalidArgumentError naming every problem, those already in `problems` too (and change nothing)."""
        names = check_symbols(command.symbols, problems)
        exchanges = frozenset(check_exchanges(command.exchanges, problems))
        total = len(self._exchanges.keys() | set(names))
        if total > MAX_SUBSCRIBED_SYMBOLS:
            problems.add("symbols", f"at most {MAX_SUBSCRIBED_SYMBOLS} symbols per stream, would be {total}")
        problems.raise_if_any()
        for name in names:
            self._exchanges[name] = exchanges

    def unsubscribe(self, command: Unsubscribe) -> None:
        """Remove the command's symbols, or raise InvalidArgumentError (and change nothing)."""
        problems = Violations()
        names = check_symbols(command.symbols, problems)
        problems.raise_if_any()
        for name in names:
            self._exchanges.pop(name, None)

    def wanted(self, trades: list[Trade]) -> list[Trade]:
        """The trades this selection wants (the bus filters by symbol, and by exchange only for all at once)."""
        selected = self._exchanges
        kept = []
        for trade in trades:
            allowed = selected.get(trade.symbol)
            if allowed is not None and (not allowed or trade.exchange in allowed):
                kept.append(trade)
        return kept
