"""The column view of a PublishTradesRequest (api/grpc/wire_columns.py) reads exactly what the standard parse
reads, trade by trade, or declines (None, then the per-trade rules decide): for every encoding a client can
send, including hostile ones (repeated fields, packed scalars, unknown fields, explicit defaults)."""

from __future__ import annotations

import random

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from wadm_grpc.api.grpc import convert, wire_columns
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

SECONDS = 1_723_161_600


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def record(number: int, wire_type: int, payload: bytes | int) -> bytes:
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(payload, int)
        return tag + varint(payload)
    assert isinstance(payload, bytes)
    return tag + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return record(number, 2, value.encode())


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return (record(1, 0, seconds) if seconds else b"") + (record(2, 0, nanos) if nanos else b"")


def trade_bytes(trade_id: str, *, seconds: int = SECONDS, nanos: int = 0, side: int = 1, extra: bytes = b"") -> bytes:
    return (
        text(1, "binance")
        + text(2, "BTCUSDT")
        + text(3, trade_id)
        + text(4, "1.5")
        + text(5, "2")
        + record(7, 0, side)
        + record(8, 2, timestamp(seconds, nanos))
        + extra
    )


def request_bytes(*trades: bytes) -> bytes:
    return b"".join(record(1, 2, trade) for trade in trades)


def assert_reads_as_the_standard_parse(raw: bytes, *, vouched: bool | None = None) -> None:
    """The view's columns (when it gives them) equal the per-trade reading of the standard parse."""
    request = ingest_pb.PublishTradesRequest.FromString(raw)
    expected = [convert.trade_input(trade) for trade in request.trades]
    sides = [trade.side for trade in request.trades]
    found = wire_columns.columns(request)
    if vouched is not None:
        assert (found is not None) is vouched
    if found is None:
        return
    assert all(e.time_problem is None and e.time_us is not None for e in expected)
    assert found.exchange == [e.exchange for e in expected]
    assert found.symbol == [e.symbol for e in expected]
    assert found.trade_id == [e.trade_id for e in expected]
    assert found.price == [e.price for e in expected]
    assert found.quantity == [e.quantity for e in expected]
    assert found.side == sides
    assert found.time_us.to_pylist() == [e.time_us for e in expected]


def test_plain_trades_are_read_column_wise_with_whole_seconds_among_them() -> None:
    trades = [trade_bytes(str(i), seconds=SECONDS + i, nanos=(i % 3) * 1_000 * (i + 1)) for i in range(50)]
    assert_reads_as_the_standard_parse(request_bytes(*trades), vouched=True)


def test_a_seeded_mix_of_present_default_and_odd_fields_reads_as_the_standard_parse() -> None:
    rng = random.Random(20261201)
    for _ in range(300):
        trades = []
        for i in range(rng.randint(1, 12)):
            message = trade_pb2.Trade(
                exchange="binance", symbol="ETHUSDT", trade_id=str(i), price="3000.1", quantity="0.5"
            )
            message.side = rng.choice([trade_pb2.SIDE_BUY, trade_pb2.SIDE_SELL, trade_pb2.SIDE_UNSPECIFIED, 7])
            roll = rng.random()
            if roll < 0.05:
                message.ClearField("exchange")
            elif roll < 0.1:
                message.ClearField("price")
            if rng.random() < 0.95:
                seconds = rng.choice([SECONDS + i, 0, -5, 253_402_300_799, 253_402_300_800, 1, 127, 128, 2**28])
                nanos = rng.choice([0, 1_000, 999_999_000, 1, -1_000, 1_000_000_000, 123_456_000])
                message.time.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
            trades.append(message.SerializeToString())
        assert_reads_as_the_standard_parse(request_bytes(*trades))


def test_a_field_repeated_in_one_trade_and_missing_in_the_next_is_not_shifted_onto_it() -> None:
    # Column counts match (two exchanges, two symbols), but the standard parse keeps the last of each
    # repeated field and leaves the other trade's empty: the view must not give trade 2 trade 1's value.
    first = text(1, "x") + text(1, "y") + text(3, "1") + text(4, "1") + text(5, "1") + record(7, 0, 1)
    second = text(2, "P") + text(2, "Q") + text(3, "2") + text(4, "1") + text(5, "1") + record(7, 0, 1)
    time = record(8, 2, timestamp(SECONDS))
    assert_reads_as_the_standard_parse(request_bytes(first + time, second + time), vouched=False)


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(record(7, 2, varint(1)), id="side packed (unknown to the standard parse)"),
        pytest.param(record(7, 2, varint(1) + varint(2)), id="two sides packed"),
        pytest.param(record(8, 2, record(1, 2, varint(SECONDS))), id="seconds packed"),
        pytest.param(record(8, 2, timestamp(SECONDS + 9, 5_000)), id="a second time, merged"),
        pytest.param(record(8, 2, record(2, 0, 7_000)), id="a second time with nanos only, merged"),
        pytest.param(record(1, 0, 5), id="exchange as a varint"),
        pytest.param(record(99, 2, b"future field"), id="unknown field"),
        pytest.param(text(1, "") + text(1, "bybit"), id="exchange explicit default then another"),
        pytest.param(record(7, 0, 0), id="side explicit default"),
        pytest.param(record(7, 0, 2), id="side again"),
    ],
)
def test_odd_encodings_read_as_the_standard_parse(odd: bytes) -> None:
    plain = trade_bytes("1", nanos=2_000)
    without_side = plain.replace(record(7, 0, 1), b"")
    for trades in ([plain + odd, trade_bytes("2")], [trade_bytes("2"), without_side + odd], [without_side + odd]):
        assert_reads_as_the_standard_parse(request_bytes(*trades))


def test_a_trade_without_time_or_with_zero_seconds_is_left_to_the_rules() -> None:
    no_time = trade_bytes("1").replace(record(8, 2, timestamp(SECONDS)), b"")
    assert_reads_as_the_standard_parse(request_bytes(trade_bytes("0"), no_time), vouched=False)
    zero = trade_bytes("1", seconds=0, nanos=5_000)
    assert_reads_as_the_standard_parse(request_bytes(trade_bytes("0"), zero), vouched=False)
    sub_micro = trade_bytes("1", nanos=1_500)
    assert_reads_as_the_standard_parse(request_bytes(trade_bytes("0"), sub_micro), vouched=False)


def test_an_empty_request_has_no_columns() -> None:
    assert wire_columns.columns(ingest_pb.PublishTradesRequest()) is None
