"""Exact aggregates of trades: candles, rolling-window stats, symbol summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

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


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Trades of one bucket or window. Decimals carry the precision of the trades they came from."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    buy_volume: Decimal
    buy_quote_volume: Decimal
    first_trade_us: int
    last_trade_us: int
    # The same decimals as text, when the store read them so (never compared: it equals the Decimals).
    text: AggregateText | None = field(default=None, compare=False, repr=False)

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
        if self.trade_count == 0 or not self.volume:
            return None
        text = self.text
        scale = scale_of(self.high) if text is None else scale_of_text(text.high)
        return divide(self.quote_volume, self.volume, scale + VWAP_EXTRA_DIGITS)

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

    @property
    def close_time_us(self) -> int:
        """Last millisecond of the bucket, as Binance reports it."""
        return self.open_time_us + self.timeframe.micros - MILLISECOND_US


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
