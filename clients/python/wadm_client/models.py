"""Typed answers: frozen dataclasses with Decimal prices and volumes and aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, overload

from google.protobuf.timestamp_pb2 import Timestamp

from wadm_client.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_client.pb.wadm.market.v1 import trade_pb2

if TYPE_CHECKING:
    import pandas
    import pyarrow

TIMEFRAMES = {"1m": 1, "5m": 2, "15m": 3, "30m": 4, "1h": 5, "4h": 6, "1d": 7, "1w": 8}
WINDOWS = {"1h": 1, "4h": 2, "24h": 3, "7d": 4}
TIMEFRAME_NAMES = {number: name for name, number in TIMEFRAMES.items()}
WINDOW_NAMES = {number: name for name, number in WINDOWS.items()}
SIDE_NAMES = {trade_pb2.SIDE_BUY: "buy", trade_pb2.SIDE_SELL: "sell"}


def decimal(text: str) -> Decimal | None:
    """The exact value of a decimal string; None for the empty string (e.g. the VWAP of a filled gap)."""
    return Decimal(text) if text else None


def number(text: str) -> Decimal:
    """The exact value of a decimal string the server always fills."""
    return Decimal(text) if text else Decimal(0)


def moment(value: Timestamp) -> datetime:
    """An aware UTC datetime (microseconds, as the server keeps them)."""
    return value.ToDatetime(tzinfo=UTC)


def maybe_moment(message: Any, name: str) -> datetime | None:
    return moment(getattr(message, name)) if message.HasField(name) else None


class Record:
    """Shared by the answer types: `as_dict()` for JSON/CSV output."""

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Candle(Record):
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal
    taker_sell_volume: Decimal
    taker_sell_quote_volume: Decimal
    vwap: Decimal | None  # None for a gap filled by fill_gaps
    closed: bool

    @classmethod
    def from_pb(cls, c: md.Candle) -> Candle:
        return cls(
            moment(c.open_time), moment(c.close_time), number(c.open), number(c.high), number(c.low),
            number(c.close), number(c.volume), number(c.quote_volume), c.trade_count, number(c.taker_buy_volume),
            number(c.taker_buy_quote_volume), number(c.taker_sell_volume), number(c.taker_sell_quote_volume),
            decimal(c.vwap), c.closed,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candles:
    """A symbol's candles, oldest first; a sequence of `Candle`."""

    symbol: str
    timeframe: str
    candles: tuple[Candle, ...]

    @classmethod
    def from_pb(cls, r: md.GetCandlesResponse) -> Candles:
        name = TIMEFRAME_NAMES.get(r.timeframe, str(r.timeframe))
        return cls(r.symbol, name, tuple(Candle.from_pb(c) for c in r.candles))

    def __len__(self) -> int:
        return len(self.candles)

    def __iter__(self) -> Iterator[Candle]:
        return iter(self.candles)

    @overload
    def __getitem__(self, index: int) -> Candle: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Candle, ...]: ...
    def __getitem__(self, index: int | slice) -> Candle | tuple[Candle, ...]:
        return self.candles[index]

    def to_arrow(self) -> pyarrow.Table:
        """A pyarrow Table; decimal columns are exact `decimal128` (needs `wadm-client[pandas]`)."""
        from wadm_client.frames import candles_table

        return candles_table(self)

    def to_pandas(self) -> pandas.DataFrame:
        """A DataFrame with exact decimal columns (`ArrowDtype(decimal128)`; needs `wadm-client[pandas]`)."""
        from wadm_client.frames import candles_frame

        return candles_frame(self)


@dataclass(frozen=True, slots=True)
class Trade(Record):
    exchange: str
    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    side: str  # the taker's: "buy" or "sell"
    time: datetime

    @classmethod
    def from_pb(cls, t: trade_pb2.Trade) -> Trade:
        quote = decimal(t.quote_quantity)
        price, quantity = number(t.price), number(t.quantity)
        side = SIDE_NAMES.get(t.side, "unspecified")
        return cls(t.exchange, t.symbol, t.trade_id, price, quantity, quote if quote is not None else price * quantity,
                   side, moment(t.time))  # fmt: skip


@dataclass(frozen=True, slots=True)
class SymbolInfo(Record):
    symbol: str
    exchanges: tuple[str, ...]
    trade_count: int
    first_trade_time: datetime | None
    last_trade_time: datetime | None
    last_price: Decimal | None

    @classmethod
    def from_pb(cls, s: md.SymbolSummary) -> SymbolInfo:
        return cls(s.symbol, tuple(s.exchanges), s.trade_count, maybe_moment(s, "first_trade_time"),
                   maybe_moment(s, "last_trade_time"), decimal(s.last_price))  # fmt: skip


@dataclass(frozen=True, slots=True)
class MarketStats(Record):
    symbol: str
    window: str
    open: Decimal
    high: Decimal
    low: Decimal
    last_price: Decimal
    price_change: Decimal
    price_change_percent: Decimal
    vwap: Decimal
    volume: Decimal
    quote_volume: Decimal
    taker_buy_volume: Decimal
    taker_sell_volume: Decimal
    trade_count: int
    first_trade_time: datetime | None
    last_trade_time: datetime | None
    window_open_time: datetime | None
    window_close_time: datetime | None
    exchanges: tuple[str, ...]

    @classmethod
    def from_pb(cls, s: md.MarketStats) -> MarketStats:
        return cls(
            s.symbol, WINDOW_NAMES.get(s.window, str(s.window)), number(s.open), number(s.high), number(s.low),
            number(s.last_price), number(s.price_change), number(s.price_change_percent), number(s.vwap),
            number(s.volume), number(s.quote_volume), number(s.taker_buy_volume), number(s.taker_sell_volume),
            s.trade_count, maybe_moment(s, "first_trade_time"), maybe_moment(s, "last_trade_time"),
            maybe_moment(s, "window_open_time"), maybe_moment(s, "window_close_time"), tuple(s.exchanges),
        )  # fmt: skip


def multi_stats(r: md.GetMultiStatsResponse) -> dict[str, MarketStats | None]:
    """Symbol -> stats, in request order; None for a symbol without trades in the window."""
    return {s.symbol: MarketStats.from_pb(s.stats) if s.HasField("stats") else None for s in r.results}


@dataclass(frozen=True, slots=True)
class OrderbookLevel(Record):
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Orderbook(Record):
    """A simulated order book (`simulated` is always true today), best levels first."""

    symbol: str
    simulated: bool
    bids: tuple[OrderbookLevel, ...]
    asks: tuple[OrderbookLevel, ...]
    mid_price: Decimal
    spread: Decimal
    tick_size: Decimal
    window_open_time: datetime | None
    window_close_time: datetime | None
    trade_count: int
    exchanges: tuple[str, ...]

    @classmethod
    def from_pb(cls, r: md.GetOrderbookResponse) -> Orderbook:
        def levels(side: Any) -> tuple[OrderbookLevel, ...]:
            return tuple(OrderbookLevel(number(level.price), number(level.quantity)) for level in side)

        return cls(
            r.symbol, r.simulated, levels(r.bids), levels(r.asks), number(r.mid_price), number(r.spread),
            number(r.tick_size), maybe_moment(r, "window_open_time"), maybe_moment(r, "window_close_time"),
            r.trade_count, tuple(r.exchanges),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PublishResult(Record):
    accepted_count: int
    duplicate_count: int
    batch_count: int
