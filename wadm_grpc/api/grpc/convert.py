"""Conversions between protobuf messages and domain values (the only place that knows both)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple, cast

from google.protobuf.timestamp_pb2 import Timestamp

from wadm_grpc.api.grpc import wire_columns
from wadm_grpc.domain.aggregate import Aggregate, AggregateText, Candle, CandleSeries, SymbolSummary, close_time_us
from wadm_grpc.domain.decimals import to_wire
from wadm_grpc.domain.errors import Violations
from wadm_grpc.domain.orderbook import Level
from wadm_grpc.domain.stats import MarketStats, StatsWindow
from wadm_grpc.domain.timeframe import MICROS_PER_SECOND, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_input import ReceivedColumns, TradeInput
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

NANOS_PER_MICRO = 1_000
NANOS_PER_SECOND = 1_000_000_000
# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799

TIMEFRAMES: dict[md.Timeframe.ValueType, Timeframe] = {
    md.TIMEFRAME_1M: Timeframe.M1,
    md.TIMEFRAME_5M: Timeframe.M5,
    md.TIMEFRAME_15M: Timeframe.M15,
    md.TIMEFRAME_30M: Timeframe.M30,
    md.TIMEFRAME_1H: Timeframe.H1,
    md.TIMEFRAME_4H: Timeframe.H4,
    md.TIMEFRAME_1D: Timeframe.D1,
    md.TIMEFRAME_1W: Timeframe.W1,
}
TIMEFRAME_VALUES = {timeframe: value for value, timeframe in TIMEFRAMES.items()}
WINDOWS: dict[md.StatsWindow.ValueType, StatsWindow] = {
    md.STATS_WINDOW_1H: StatsWindow.H1,
    md.STATS_WINDOW_4H: StatsWindow.H4,
    md.STATS_WINDOW_24H: StatsWindow.H24,
    md.STATS_WINDOW_7D: StatsWindow.D7,
}
WINDOW_VALUES = {window: value for value, window in WINDOWS.items()}
SIDES = {trade_pb2.SIDE_BUY: Side.BUY, trade_pb2.SIDE_SELL: Side.SELL}
SIDE_VALUES = {side: value for value, side in SIDES.items()}


def timestamp(time_us: int) -> Timestamp:
    """A Timestamp for epoch microseconds."""
    seconds, micros = divmod(time_us, MICROS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=micros * NANOS_PER_MICRO)


def micros(value: Timestamp) -> int:
    """Epoch microseconds of a Timestamp (sub-microsecond digits dropped)."""
    return value.seconds * MICROS_PER_SECOND + value.nanos // NANOS_PER_MICRO


def timestamp_problem(value: Timestamp) -> str | None:
    """What makes `value` an invalid Timestamp (google/protobuf/timestamp.proto), or None."""
    if not 0 <= value.nanos < NANOS_PER_SECOND:
        return f"nanos must be 0 to 999,999,999, got {value.nanos}"
    if not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS:
        return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    return None


def optional_micros(message: object, field: str, problems: Violations) -> int | None:
    """The Timestamp field `field` of `message` in microseconds, or None when unset or invalid (then the
    problem is in `problems`)."""
    assert hasattr(message, "HasField")
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    assert isinstance(value, Timestamp)
    problem = timestamp_problem(value)
    if problem:
        problems.add(field, problem)
        return None
    return micros(value)


def timeframe(value: md.Timeframe.ValueType, problems: Violations, *, field: str = "timeframe") -> Timeframe | None:
    """The domain timeframe of an enum value; UNSPECIFIED or unknown numbers go into `problems` (None)."""
    found = TIMEFRAMES.get(value)
    if found is None:
        if value == md.TIMEFRAME_UNSPECIFIED:
            problems.add(field, "is required (TIMEFRAME_1M ... TIMEFRAME_1W)")
        else:
            problems.add(field, f"unknown timeframe {value}; use TIMEFRAME_1M ... TIMEFRAME_1W")
    return found


def stats_window(
    message: md.GetMarketStatsRequest | md.GetMultiStatsRequest, problems: Violations
) -> StatsWindow | None:
    """The requested window: absent means 24h; UNSPECIFIED set explicitly, or unknown, goes into `problems`."""
    if not message.HasField("window"):
        return StatsWindow.H24
    found = WINDOWS.get(message.window)
    if found is None:
        problems.add(
            "window", f"unknown window {message.window}; use STATS_WINDOW_1H/4H/24H/7D, or leave it out for 24h"
        )
    return found


def trade_input(message: trade_pb2.Trade) -> TradeInput:
    """A received trade, unvalidated."""
    time_us: int | None = None
    problem: str | None = None
    if message.HasField("time"):
        problem = timestamp_problem(message.time)
        if problem is None and message.time.nanos % NANOS_PER_MICRO:
            problem = "has sub-microsecond digits; times are kept to the microsecond"
        time_us = micros(message.time)
    return TradeInput(
        exchange=message.exchange,
        symbol=message.symbol,
        trade_id=message.trade_id,
        price=message.price,
        quantity=message.quantity,
        side=SIDES.get(message.side),
        time_us=time_us,
        time_problem=problem,
    )


def received_columns(request: ingest_pb.PublishTradesRequest) -> ReceivedColumns | None:
    """A message's trades column by column (unvalidated), read without Python per trade; None when some
    trade has a field at its default or a time that is not a whole microsecond after the epoch (then
    `trade_input` per trade says what is wrong). Drops the request's unknown fields (ignored anyway)."""
    found = wire_columns.columns(request)
    if found is None:
        return None
    return ReceivedColumns(
        exchange=found.exchange,
        symbol=found.symbol,
        trade_id=found.trade_id,
        price=found.price,
        quantity=found.quantity,
        side=list(map(SIDES.get, cast(list[trade_pb2.Side.ValueType], found.side))),
        time_us=found.time_us.to_pylist(),
    )


def trade(value: Trade) -> trade_pb2.Trade:
    """A stored trade on the wire."""
    return trade_pb2.Trade(
        exchange=value.exchange,
        symbol=value.symbol,
        trade_id=value.trade_id,
        price=to_wire(value.price),
        quantity=to_wire(value.quantity),
        quote_quantity=to_wire(value.quote_quantity),
        side=SIDE_VALUES[value.side],
        time=timestamp(value.time_us),
    )


def candle(value: Candle) -> md.Candle:
    """A candle on the wire."""
    response = md.GetCandlesResponse()
    _add_candle(response.candles.add, value.open_time_us, value.ohlcv, value.timeframe.micros, value.closed)
    return response.candles[0]


def candles_response(symbol: str, timeframe: md.Timeframe.ValueType, candles: CandleSeries) -> bytes:
    """GetCandlesResponse, serialized. Decimals a store read as text go through as that text; only the
    sells and the VWAP are computed, once per distinct candle (`_text_candle`)."""
    response = md.GetCandlesResponse(symbol=symbol, timeframe=timeframe)
    add = response.candles.add
    size_us = candles.timeframe.micros
    closed_until = candles.last_closed_open_us
    for open_time_us, ohlcv in candles.rows:
        text, closed = ohlcv.text, open_time_us <= closed_until
        if text is None:
            _add_candle(add, open_time_us, ohlcv, size_us, closed)
        else:
            add().MergeFromString(_text_candle(open_time_us, size_us, closed, ohlcv.trade_count, text))
    return response.SerializeToString()


# Candles rendered from a store's text, by everything their wire form holds. Why (issue 12): building a
# Candle (sells, VWAP, 15 fields) cost ~6 us each, ten times merging its bytes; and a candle's rows repeat
# across answers (other limits and windows, other clients, the next poll) until a trade changes them,
# which changes the key. At most CANDLE_RENDERS entries (each ~1 KB: the key's texts and ~150 bytes).
CANDLE_RENDERS = 16_384


@functools.lru_cache(maxsize=CANDLE_RENDERS)
def _text_candle(open_time_us: int, size_us: int, closed: bool, trade_count: int, text: AggregateText) -> bytes:
    response = md.GetCandlesResponse()
    _add_candle(response.candles.add, open_time_us, Aggregate.of_text(text, trade_count, 0, 0), size_us, closed)
    return response.candles[0].SerializeToString()


class RenderStats(NamedTuple):
    """The render memo's counters since the process started (for the metrics)."""

    hits: int  # candles served as kept bytes
    misses: int  # candles rendered (and kept)
    entries: int  # wire candles kept now


def render_stats() -> RenderStats:
    """What `_text_candle` did so far, and holds."""
    info = _text_candle.cache_info()
    return RenderStats(info.hits, info.misses, info.currsize)


def _add_candle(add: Callable[..., md.Candle], open_time_us: int, ohlcv: Aggregate, size_us: int, closed: bool) -> None:
    sell_volume, sell_quote_volume, vwap = ohlcv.derived()
    text = ohlcv.text
    if text is None:
        text = AggregateText(
            open=to_wire(ohlcv.open),
            high=to_wire(ohlcv.high),
            low=to_wire(ohlcv.low),
            close=to_wire(ohlcv.close),
            volume=to_wire(ohlcv.volume),
            quote_volume=to_wire(ohlcv.quote_volume),
            buy_volume=to_wire(ohlcv.buy_volume),
            buy_quote_volume=to_wire(ohlcv.buy_quote_volume),
        )
    added = add(
        open=text.open,
        high=text.high,
        low=text.low,
        close=text.close,
        volume=text.volume,
        quote_volume=text.quote_volume,
        trade_count=ohlcv.trade_count,
        taker_buy_volume=text.buy_volume,
        taker_buy_quote_volume=text.buy_quote_volume,
        taker_sell_volume=to_wire(sell_volume),
        taker_sell_quote_volume=to_wire(sell_quote_volume),
        vwap="" if vwap is None else to_wire(vwap),
        closed=closed,
    )
    seconds, micros = divmod(open_time_us, MICROS_PER_SECOND)
    added.open_time.seconds, added.open_time.nanos = seconds, micros * NANOS_PER_MICRO
    seconds, micros = divmod(close_time_us(open_time_us, size_us), MICROS_PER_SECOND)
    added.close_time.seconds, added.close_time.nanos = seconds, micros * NANOS_PER_MICRO


def symbol_summary(value: SymbolSummary) -> md.SymbolSummary:
    """A symbol summary on the wire."""
    return md.SymbolSummary(
        symbol=value.symbol,
        exchanges=value.exchanges,
        trade_count=value.trade_count,
        first_trade_time=timestamp(value.first_trade_us),
        last_trade_time=timestamp(value.last_trade_us),
        last_price=to_wire(value.last_price),
    )


def market_stats(value: MarketStats) -> md.MarketStats:
    """Stats on the wire."""
    ohlcv = value.trades.ohlcv
    vwap = ohlcv.vwap
    return md.MarketStats(
        symbol=value.trades.symbol,
        window=WINDOW_VALUES[value.window],
        open=to_wire(ohlcv.open),
        high=to_wire(ohlcv.high),
        low=to_wire(ohlcv.low),
        last_price=to_wire(ohlcv.close),
        price_change=to_wire(value.price_change),
        price_change_percent=to_wire(value.price_change_percent),
        vwap="" if vwap is None else to_wire(vwap),
        volume=to_wire(ohlcv.volume),
        quote_volume=to_wire(ohlcv.quote_volume),
        taker_buy_volume=to_wire(ohlcv.buy_volume),
        taker_sell_volume=to_wire(ohlcv.sell_volume),
        trade_count=ohlcv.trade_count,
        first_trade_time=timestamp(ohlcv.first_trade_us),
        last_trade_time=timestamp(ohlcv.last_trade_us),
        window_open_time=timestamp(value.window_open_us),
        window_close_time=timestamp(value.window_close_us),
        exchanges=value.trades.exchanges,
    )


def levels(values: tuple[Level, ...]) -> list[md.OrderbookLevel]:
    """Book levels on the wire."""
    return [md.OrderbookLevel(price=to_wire(level.price), quantity=to_wire(level.quantity)) for level in values]
