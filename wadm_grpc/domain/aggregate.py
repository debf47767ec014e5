"""Exact aggregates of trades: candles, rolling-window stats, symbol summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, overload

from wadm_grpc.domain.decimals import divide, scale_of, scale_of_text, subtract
from wadm_grpc.domain.timeframe import Timeframe

# VWAP is a quotient: it is rounded to the price precision plus this many digits.
VWAP_EXTRA_DIGITS = 4
MILLISECOND_US = 1_000


class AggregateText(NamedTuple):
    """An Aggregate's pass-through decimals as exact plain text, as a store that formats them in bulk
    read them (the same digits as the Decimals: the wire needs no formatting per value). A NamedTuple:
    built for every candle read, it must be cheap."""

    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    buy_volume: str
    buy_quote_volume: str


class _TextDecimal:
    """One of an Aggregate's decimals, read from its text on first use when the store handed over text.

    Why (issue 12): a 500-candle answer passes six of the eight decimals through as text; parsing every
    one into a Decimal up front cost as much as rendering the answer."""

    __slots__ = ("_index",)

    def __init__(self, index: int) -> None:
        self._index = index

    @overload
    def __get__(self, aggregate: None, owner: type | None = None) -> _TextDecimal: ...

    @overload
    def __get__(self, aggregate: Aggregate, owner: type | None = None) -> Decimal: ...

    def __get__(self, aggregate: Aggregate | None, owner: type | None = None) -> Decimal | _TextDecimal:
        if aggregate is None:  # looked up on the class (help(), introspection)
            return self
        values = aggregate._decimals
        value = values[self._index]
        if value is None:
            text = aggregate.text
            assert text is not None, "an Aggregate without text holds every Decimal"
            value = values[self._index] = Decimal(text[self._index])
        return value


# Aggregate's values in the order of its constructor (what it compares).
_KEY_NAMES = (*AggregateText._fields[:6], "trade_count", *AggregateText._fields[6:], "first_trade_us", "last_trade_us")


class Aggregate:
    """Trades of one bucket or window. Decimals carry the precision of the trades they came from.

    A value: never changed once built, equal to another with the same numbers (`text` aside). Built from
    Decimals, or by a store from text (`of_text`), whose Decimals are parsed when first read.
    """

    __slots__ = ("_decimals", "first_trade_us", "last_trade_us", "text", "trade_count")

    # In AggregateText's order.
    open = _TextDecimal(0)
    high = _TextDecimal(1)
    low = _TextDecimal(2)
    close = _TextDecimal(3)
    volume = _TextDecimal(4)
    quote_volume = _TextDecimal(5)
    buy_volume = _TextDecimal(6)
    buy_quote_volume = _TextDecimal(7)

    trade_count: int
    first_trade_us: int
    last_trade_us: int
    # The decimals as text, when the store read them so (never compared: it equals the Decimals).
    text: AggregateText | None
    _decimals: list[Decimal | None]

    def __init__(
        self,
        *,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
        quote_volume: Decimal,
        trade_count: int,
        buy_volume: Decimal,
        buy_quote_volume: Decimal,
        first_trade_us: int,
        last_trade_us: int,
    ) -> None:
        self._decimals = [open, high, low, close, volume, quote_volume, buy_volume, buy_quote_volume]
        self.trade_count = trade_count
        self.first_trade_us = first_trade_us
        self.last_trade_us = last_trade_us
        self.text = None

    @classmethod
    def of_text(cls, text: AggregateText, trade_count: int, first_trade_us: int, last_trade_us: int) -> Aggregate:
        """An aggregate of exact plain decimal texts, none parsed yet."""
        aggregate = cls.__new__(cls)
        aggregate._decimals = [None] * len(text)
        aggregate.trade_count = trade_count
        aggregate.first_trade_us = first_trade_us
        aggregate.last_trade_us = last_trade_us
        aggregate.text = text
        return aggregate

    def _key(self) -> tuple[object, ...]:
        return (
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trade_count,
            self.buy_volume,
            self.buy_quote_volume,
            self.first_trade_us,
            self.last_trade_us,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Aggregate):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        values = zip(_KEY_NAMES, self._key(), strict=True)
        return f"Aggregate({', '.join(f'{name}={value!r}' for name, value in values)})"

    @property
    def sell_volume(self) -> Decimal:
        """Base volume of taker sells."""
        return subtract(self.volume, self.buy_volume)

    @property
    def sell_quote_volume(self) -> Decimal:
        """Quote volume of taker sells."""
        return subtract(self.quote_volume, self.buy_quote_volume)

    @property
    def vwap(self) -> Decimal | None:
        """quote_volume / volume, rounded half-even to the price precision + 4 digits; None if no volume."""
        return self._vwap(self.volume, self.quote_volume)

    def derived(self) -> tuple[Decimal, Decimal, Decimal | None]:
        """(sell_volume, sell_quote_volume, vwap) at once: each decimal is read once (a candle's render)."""
        volume, quote = self.volume, self.quote_volume
        return subtract(volume, self.buy_volume), subtract(quote, self.buy_quote_volume), self._vwap(volume, quote)

    def _vwap(self, volume: Decimal, quote: Decimal) -> Decimal | None:
        if self.trade_count == 0 or not volume:
            return None
        text = self.text
        scale = scale_of(self.high) if text is None else scale_of_text(text.high)
        return divide(quote, volume, scale + VWAP_EXTRA_DIGITS)

    def gap_after(self) -> Aggregate:
        """An empty bucket after this one, Binance style: OHLC = this close, zero volume."""
        zero_base = Decimal(0).scaleb(-scale_of(self.volume))
        zero_quote = Decimal(0).scaleb(-scale_of(self.quote_volume))
        close = self.close
        return Aggregate(
            open=close,
            high=close,
            low=close,
            close=close,
            volume=zero_base,
            quote_volume=zero_quote,
            trade_count=0,
            buy_volume=zero_base,
            buy_quote_volume=zero_quote,
            first_trade_us=0,
            last_trade_us=0,
        )


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bucket of a timeframe."""

    timeframe: Timeframe
    open_time_us: int
    ohlcv: Aggregate
    closed: bool


def close_time_us(open_time_us: int, size_us: int) -> int:
    """Close time of a bucket of `size_us` opening at `open_time_us`: its last millisecond (Binance)."""
    return open_time_us + size_us - MILLISECOND_US


@dataclass(frozen=True, slots=True)
class CandleSeries:
    """The candles of one answer, as read: (open time, aggregate), oldest first. A candle is closed once
    `now_us` reached its end. Rendered straight from the rows (no Candle per row: issue 12)."""

    timeframe: Timeframe
    rows: Sequence[tuple[int, Aggregate]]
    now_us: int

    @property
    def last_closed_open_us(self) -> int:
        """The newest open time whose bucket has ended at `now_us`."""
        return self.now_us - self.timeframe.micros


@dataclass(frozen=True, slots=True)
class SymbolSummary:
    """A symbol's stored history on the selected exchanges."""

    symbol: str
    exchanges: tuple[str, ...]
    trade_count: int
    first_trade_us: int
    last_trade_us: int
    last_price: Decimal


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A symbol's trades in a time window, aggregated."""

    symbol: str
    exchanges: tuple[str, ...]
    ohlcv: Aggregate
