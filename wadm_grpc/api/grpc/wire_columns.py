"""A PublishTradesRequest's trades column by column, read by the protobuf parser itself: no Python per trade.

Reading 10,000 `Trade` messages field by field from Python cost ~7 µs a trade (a wrapper object per
message and per Timestamp, an attribute access per field): most of an ingest message's time, and all of
it on the GIL (issue 12). Instead the message is parsed a second time, in C, as a *column view*: a
message of the same wire format whose one `trades` field is singular, so the parser merges every trade
into it, and whose fields are `repeated`, so each collects one value per trade, in order:

    view Request  { Columns trades = 1; }                          -- singular: the records merge
    view Columns  { repeated string exchange = 1; ... repeated int32 side = 7; repeated bytes time = 8; }
    view Times    { repeated int64 seconds = 1; repeated int32 nanos = 2; }  -- the joined `time` records

A column lines up with the trades only if every trade holds its field exactly once. That is made certain
by parsing not the bytes received but the request's own canonical serialization, unknown fields dropped:
protobuf writes each field of a message once (the value the standard parse kept: the last of repeated
occurrences, merged submessages), unpacked, and leaves out default values. So a column is complete when
it has one value per trade; one that is short means some trade has that field at its default (empty,
unspecified, zero), which only the per-trade rules can name: the caller falls back to them (None).
The one legitimately absent value is a Timestamp's `nanos` (0 on a whole second): which trades have one
follows from the length of each `time` record (`0x08 varint(seconds)`, then `0x10 varint(nanos)` when
non-zero), computed column-wise.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

_F = descriptor_pb2.FieldDescriptorProto
_STRING_FIELDS = ("exchange", "symbol", "trade_id", "price", "quantity")
# Seconds a Timestamp of the fast path may hold: after the epoch (earlier ones are invalid trades), up
# to its maximum (9999-12-31). Their varints are 1 to 6 bytes long.
MAX_SECONDS = 253_402_300_799
_VARINT_STEPS = tuple(1 << (7 * k) for k in range(1, 6))


def _field(name: str, number: int, kind: Any, label: Any = _F.LABEL_REPEATED, type_name: str | None = None) -> Any:
    field = _F(name=name, number=number, type=kind, label=label)
    if type_name is not None:
        field.type_name = type_name
    return field


def _view() -> tuple[Any, Any]:
    """The view's message classes, in a pool of their own (nothing of them is served or reflected)."""
    file = descriptor_pb2.FileDescriptorProto(name="wadm_grpc/ingest_column_view.proto", package="wadm_grpc.view")
    file.syntax = "proto3"
    trade = {field.name: field.number for field in trade_pb2.Trade.DESCRIPTOR.fields}
    columns = file.message_type.add(name="Columns")
    columns.field.extend(_field(name, trade[name], _F.TYPE_STRING) for name in _STRING_FIELDS)
    columns.field.append(_field("side", trade["side"], _F.TYPE_INT32))
    columns.field.append(_field("time", trade["time"], _F.TYPE_BYTES))
    request = file.message_type.add(name="Request")
    number = ingest_pb.PublishTradesRequest.DESCRIPTOR.fields_by_name["trades"].number
    request.field.append(_field("trades", number, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".wadm_grpc.view.Columns"))
    times = file.message_type.add(name="Times")
    times.field.append(_field("seconds", 1, _F.TYPE_INT64))
    times.field.append(_field("nanos", 2, _F.TYPE_INT32))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("wadm_grpc.view.Request"))
    times_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("wadm_grpc.view.Times"))
    return request_class, times_class


_Request, _Times = _view()


class WireColumns:
    """The trades of one request as columns (see the module docstring); `time_us` is Arrow int64."""

    __slots__ = ("exchange", "price", "quantity", "side", "symbol", "time_us", "trade_id")

    def __init__(self, view: Any, time_us: pa.Array) -> None:
        self.exchange: list[str] = list(view.exchange)
        self.symbol: list[str] = list(view.symbol)
        self.trade_id: list[str] = list(view.trade_id)
        self.price: list[str] = list(view.price)
        self.quantity: list[str] = list(view.quantity)
        self.side: list[int] = list(view.side)
        self.time_us = time_us


def columns(request: ingest_pb.PublishTradesRequest) -> WireColumns | None:
    """The request's trades as columns, or None when some trade has a field at its default (missing) or
    a time that is not a microsecond after the epoch: the per-trade rules then say what is wrong.
    Drops the request's unknown fields (ignored anyway)."""
    count = len(request.trades)
    if not count:
        return None
    request.DiscardUnknownFields()
    try:
        view = _Request.FromString(request.SerializeToString()).trades
    except DecodeError:  # cannot happen to bytes the parser itself wrote; if it did, the rules decide
        return None
    if any(len(getattr(view, name)) != count for name in (*_STRING_FIELDS, "side", "time")):
        return None
    time_us = _micros(list(view.time), count)
    if time_us is None:
        return None
    return WireColumns(view, time_us)


def _micros(records: list[bytes], count: int) -> pa.Array | None:
    """Microseconds since the epoch of canonical Timestamp records, or None if one is not a positive
    whole microsecond within the Timestamp range."""
    try:
        times = _Times.FromString(b"".join(records))
    except DecodeError:
        return None
    if len(times.seconds) != count:  # a zero (or missing) seconds: not after the epoch
        return None
    seconds = pa.array(times.seconds, pa.int64())
    if pc.min(seconds).as_py() <= 0 or pc.max(seconds).as_py() > MAX_SECONDS:
        return None
    nanos = pa.array(times.nanos, pa.int64())
    if len(nanos) < count:  # whole seconds hold no nanos: place the others by their record's length
        seconds_length = 2  # 0x08 and a varint of one byte at least
        for step in _VARINT_STEPS:
            seconds_length = pc.add(seconds_length, pc.cast(pc.greater_equal(seconds, step), pa.int64()))
        lengths = pa.array(list(map(len, records)), pa.int64())
        with_nanos = pc.greater(lengths, seconds_length)
        if pc.sum(with_nanos).as_py() != len(nanos):
            return None
        nanos = pc.replace_with_mask(pa.repeat(pa.scalar(0, pa.int64()), count), with_nanos, nanos)
    if pc.min(nanos).as_py() < 0 or pc.max(nanos).as_py() >= 1_000_000_000:
        return None
    micros = pc.divide(nanos, 1000)
    if not pc.all(pc.equal(pc.multiply(micros, 1000), nanos)).as_py():  # sub-microsecond digits
        return None
    return pc.add(pc.multiply(seconds, 1_000_000), micros)
