"""Request messages from Python arguments, shared by both clients."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from wadm_client.models import TIMEFRAMES, WINDOWS, Trade
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_client.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_client.pb.wadm.market.v1 import trade_pb2

Time = datetime | int  # an aware datetime, or epoch microseconds
SIDES = {"buy": trade_pb2.SIDE_BUY, "sell": trade_pb2.SIDE_SELL}


def timestamp(value: Time) -> Timestamp:
    """A Timestamp from an aware datetime or epoch microseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("use an aware datetime (UTC)")
        result = Timestamp()
        result.FromDatetime(value)
        return result
    seconds, micros = divmod(value, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def duration(seconds: float | timedelta) -> Duration:
    """A Duration of `seconds`."""
    result = Duration()
    if isinstance(seconds, timedelta):
        result.FromTimedelta(seconds)
    else:
        result.FromNanoseconds(int(seconds * 1e9))
    return result


def make_trade(
    *,
    exchange: str,
    symbol: str,
    trade_id: str | int,
    price: str | Decimal,
    quantity: str | Decimal,
    side: str,
    time: Time,
) -> trade_pb2.Trade:
    """A Trade message; `side` is the taker's, "buy" or "sell"; prices and quantities as decimal strings or Decimals."""
    return trade_pb2.Trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=str(trade_id),
        price=str(price),
        quantity=str(quantity),
        side=SIDES.get(side, trade_pb2.SIDE_UNSPECIFIED),
        time=timestamp(time),
    )


def trade_message(trade: Trade | trade_pb2.Trade) -> trade_pb2.Trade:
    if isinstance(trade, trade_pb2.Trade):
        return trade
    return make_trade(exchange=trade.exchange, symbol=trade.symbol, trade_id=trade.trade_id, price=trade.price,
                      quantity=trade.quantity, side=trade.side, time=trade.time)  # fmt: skip


def publish_request(batch: Sequence[Trade | trade_pb2.Trade]) -> ingest_pb.PublishTradesRequest:
    return ingest_pb.PublishTradesRequest(trades=[trade_message(t) for t in batch])


def timeframe(value: str | int) -> md.Timeframe.ValueType:
    """ "1m".."1w" (or the enum name), or the enum number."""
    if isinstance(value, int):
        return md.Timeframe.ValueType(value)
    if value.lower() in TIMEFRAMES:
        return md.Timeframe.ValueType(TIMEFRAMES[value.lower()])
    if value in md.Timeframe.keys():  # noqa: SIM118
        return md.Timeframe.Value(value)
    raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAMES)}, got {value!r}")


def window(value: str | int) -> md.StatsWindow.ValueType:
    """ "1h", "4h", "24h", "7d" (or the enum name), or the enum number."""
    if isinstance(value, int):
        return md.StatsWindow.ValueType(value)
    if value.lower() in WINDOWS:
        return md.StatsWindow.ValueType(WINDOWS[value.lower()])
    if value in md.StatsWindow.keys():  # noqa: SIM118
        return md.StatsWindow.Value(value)
    raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {value!r}")


def candles(
    symbol: str,
    frame: str | int,
    *,
    exchanges: Sequence[str],
    start: Time | None,
    end: Time | None,
    limit: int | None,
    fill_gaps: bool,
) -> md.GetCandlesRequest:
    request = md.GetCandlesRequest(symbol=symbol, timeframe=timeframe(frame), exchanges=exchanges, fill_gaps=fill_gaps)
    if start is not None:
        request.start_time.CopyFrom(timestamp(start))
    if end is not None:
        request.end_time.CopyFrom(timestamp(end))
    if limit is not None:
        request.limit = limit
    return request


def stats(symbol: str, *, period: str | int | None, exchanges: Sequence[str]) -> md.GetMarketStatsRequest:
    request = md.GetMarketStatsRequest(symbol=symbol, exchanges=exchanges)
    if period is not None:
        request.window = window(period)
    return request


def multi_stats(
    symbols: Sequence[str], *, period: str | int | None, exchanges: Sequence[str]
) -> md.GetMultiStatsRequest:
    request = md.GetMultiStatsRequest(symbols=symbols, exchanges=exchanges)
    if period is not None:
        request.window = window(period)
    return request


def orderbook(symbol: str, *, depth: int | None, exchanges: Sequence[str]) -> md.GetOrderbookRequest:
    request = md.GetOrderbookRequest(symbol=symbol, exchanges=exchanges)
    if depth is not None:
        request.depth = depth
    return request


def trades(
    symbol: str, *, exchanges: Sequence[str], start: Time | None, end: Time | None, page_size: int
) -> md.ListTradesRequest:
    request = md.ListTradesRequest(symbol=symbol, exchanges=exchanges, page_size=page_size)
    if start is not None:
        request.start_time.CopyFrom(timestamp(start))
    if end is not None:
        request.end_time.CopyFrom(timestamp(end))
    return request


def stream(
    symbols: Sequence[str], *, exchanges: Sequence[str], heartbeat_seconds: float | None, resume: str | None = None
) -> md.StreamTradesRequest:
    """A StreamTrades request; `resume` (the last message's resume token) replays what came after it first."""
    request = md.StreamTradesRequest(symbols=symbols, exchanges=exchanges, resume_token=resume or "")
    if heartbeat_seconds is not None:
        request.heartbeat_interval.CopyFrom(duration(heartbeat_seconds))
    return request


def live_candles(
    symbol: str,
    timeframe_value: str | int,
    *,
    exchanges: Sequence[str],
    update_seconds: float | None,
    heartbeat_seconds: float | None,
    resume: str | None = None,
) -> md.StreamCandlesRequest:
    """A StreamCandles request; `resume` (the last message's resume token) sends the finals missed since first."""
    request = md.StreamCandlesRequest(
        symbol=symbol, timeframe=timeframe(timeframe_value), exchanges=exchanges, resume_token=resume or ""
    )
    if update_seconds is not None:
        request.update_interval.CopyFrom(duration(update_seconds))
    if heartbeat_seconds is not None:
        request.heartbeat_interval.CopyFrom(duration(heartbeat_seconds))
    return request
