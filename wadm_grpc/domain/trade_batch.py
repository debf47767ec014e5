"""Validated trades that also carry their columns as received, so stores can bulk-load them without
going back through every Trade (the fast path of ingest)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from typing import Literal, overload

from wadm_grpc.domain.decimals import to_wire
from wadm_grpc.domain.trade import Side, Trade


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Validated trades column by column: names normalised, decimals as their exact plain text."""

    exchange: list[str]
    symbol: list[str]
    trade_id: list[str]
    price: list[str]
    quantity: list[str]
    is_buy: list[bool]
    time_us: list[int]

    @classmethod
    def of_trades(cls, trades: Sequence[Trade]) -> TradeColumns:
        """The columns of trades that came without them."""
        return cls(
            exchange=[t.exchange for t in trades],
            symbol=[t.symbol for t in trades],
            trade_id=[t.trade_id for t in trades],
            price=[to_wire(t.price) for t in trades],
            quantity=[to_wire(t.quantity) for t in trades],
            is_buy=[t.side is Side.BUY for t in trades],
            time_us=[t.time_us for t in trades],
        )

    def rows(self) -> Iterator[tuple[str, str, str, str, str, bool, int]]:
        """Trade by trade: (exchange, symbol, trade_id, price, quantity, is_buy, time_us)."""
        return zip(
            self.exchange, self.symbol, self.trade_id, self.price, self.quantity, self.is_buy, self.time_us, strict=True
        )


class TradeBatch(Sequence[Trade]):
    """A sequence of validated trades held as columns; the Trade objects are built on first use (ingest
    without live subscribers never needs them). A batch joined from others keeps them as `parts` and
    joins their columns only if asked. `rows` is free for the store to keep the batch in its own form,
    built ahead of the write (`TradeStore.prepare_batch`, on a worker thread, not the writer's)."""

    __slots__ = ("_columns", "_trades", "parts", "rows")

    def __init__(self, columns: TradeColumns | None, parts: tuple[TradeBatch, ...] = ()) -> None:
        self._columns = columns
        self.parts = parts
        self.rows: object = None
        self._trades: list[Trade] | None = None

    @classmethod
    def of_parts(cls, parts: Sequence[TradeBatch]) -> TradeBatch:
        """The parts as one batch, in order."""
        flat = tuple(chain.from_iterable(part.parts or (part,) for part in parts))
        return cls(None, flat)

    @property
    def columns(self) -> TradeColumns:
        """The trades column by column (a joined batch's are joined on first use)."""
        if self._columns is None:
            names = TradeColumns.__dataclass_fields__
            self._columns = TradeColumns(
                **{name: list(chain.from_iterable(getattr(p.columns, name) for p in self.parts)) for name in names}
            )
        return self._columns

    def sliced(self, start: int, end: int) -> TradeBatch:
        """Trades [start:end) as a batch, column by column (within one part, without joining the parts)."""
        offset = 0
        for part in self.parts:
            if offset <= start and end <= offset + len(part):
                return part.sliced(start - offset, end - offset)
            offset += len(part)
        c = self.columns
        return TradeBatch(
            TradeColumns(**{name: getattr(c, name)[start:end] for name in TradeColumns.__dataclass_fields__})
        )

    @property
    def trades(self) -> list[Trade]:
        """The trades as Trade objects."""
        if self._trades is None:
            self._trades = [
                Trade(e, s, i, Decimal(p), Decimal(q), Side.BUY if buy else Side.SELL, t)
                for e, s, i, p, q, buy, t in self.columns.rows()
            ]
        return self._trades

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-equal like a list

    @overload
    def __getitem__(self, index: int) -> Trade: ...
    @overload
    def __getitem__(self, index: slice) -> list[Trade]: ...
    def __getitem__(self, index: int | slice) -> Trade | list[Trade]:
        return self.trades[index]

    def __len__(self) -> int:
        if self._columns is None:
            return sum(map(len, self.parts))
        return len(self._columns.trade_id)

    def __iter__(self) -> Iterator[Trade]:
        return iter(self.trades)


def columns_of(trades: Sequence[Trade]) -> TradeColumns:
    """The columns of `trades`: carried along by a TradeBatch, else built from each Trade."""
    if isinstance(trades, TradeBatch):
        return trades.columns
    return TradeColumns.of_trades(trades)


def symbols_of(trades: Sequence[Trade]) -> set[str]:
    """The symbols that `trades` hold."""
    return _names_of(trades, "symbol")


def exchanges_of(trades: Sequence[Trade]) -> set[str]:
    """The exchanges that `trades` hold."""
    return _names_of(trades, "exchange")


def _names_of(trades: Sequence[Trade], field: Literal["exchange", "symbol"]) -> set[str]:
    """The distinct values of a name field: a joined batch's part by part (its columns are not joined)."""
    if isinstance(trades, TradeBatch):
        names: set[str] = set()
        for part in trades.parts or (trades,):
            names.update(getattr(part.columns, field))
        return names
    return {getattr(t, field) for t in trades}


def symbols_traded_before(trades: Sequence[Trade], time_us: int) -> set[str]:
    """The symbols of the trades dated before `time_us`."""
    if isinstance(trades, TradeBatch):
        c = trades.columns
        if min(c.time_us, default=time_us) >= time_us:
            return set()
        return {symbol for symbol, t in zip(c.symbol, c.time_us, strict=True) if t < time_us}
    return {t.symbol for t in trades if t.time_us < time_us}


def join(parts: Sequence[Sequence[Trade]]) -> Sequence[Trade]:
    """The parts as one sequence, in order (keeping the columns when every part has them)."""
    if len(parts) == 1:
        return parts[0]
    if parts and all(isinstance(part, TradeBatch) for part in parts):
        return TradeBatch.of_parts([part for part in parts if isinstance(part, TradeBatch)])
    return [trade for part in parts for trade in part]
