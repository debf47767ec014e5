"""Requests a hostile client sent that once lost their error, shifted time or leaked internals (issue 8)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.api.test_errors import good_trade as trade
from tests.conftest import Running
from wadm_client import RawWadmClient, error_details
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb

NOW = 1_723_162_200_000_000  # the served fixture's clock
Call = Callable[[RawWadmClient], Awaitable[object]]


async def failure(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


HUGE = [
    ("100 bad exchanges", lambda c: c.get_candles("BTCUSDT", "1m", exchanges=["BAD!"] * 100), "exchanges[99]", 100),
    ("100 NaN prices", lambda c: c.publish_trades([[trade(trade_id=i, price="NaN") for i in range(100)]]), "", 100),
    ("an 8 KB symbol", lambda c: c.get_candles("X" * 8192, "1m"), "symbol", 1),
    ("an 8 KB trade symbol", lambda c: c.publish_trades([[trade(symbol="é" * 8192)]]), "trades[0].symbol", 1),
    ("8 KB prices", lambda c: c.publish_trades([[trade(trade_id=i, price="9" * 8192) for i in range(50)]]), "", 50),
]


@pytest.mark.parametrize(("call", "field", "problems"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
async def test_huge_errors_still_arrive_as_invalid_argument_with_their_details(
    served: Running, call: Call, field: str, problems: int
) -> None:
    # The client is grpc's own (C-core): it refuses trailing metadata beyond its limit, which an unbounded
    # status (message + every violation + echoed values) used to exceed (RESOURCE_EXHAUSTED instead).
    error = await failure(call(served.client))

    details = error_details(error)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT, details.message
    assert details.field_violations
    assert len(details.field_violations) <= 20
    if problems > 20:
        assert f"{problems} problems" in details.message
    if field == "exchanges[99]":  # the first 20 are listed, the rest counted
        assert "exchanges[0]" in details.field_violations and field not in details.field_violations
    elif field:
        assert field in details.field_violations
    assert len(details.message.encode()) <= 400
    assert all(len(text) <= 200 for text in details.field_violations.values())


async def test_every_problem_of_a_request_is_reported_together_enum_included(served: Running) -> None:
    error = await failure(
        served.client.market.GetCandles(md.GetCandlesRequest(symbol="BTC USDT", timeframe=99, limit=5000))
    )

    assert set(error_details(error).field_violations) == {"symbol", "timeframe", "limit"}


async def test_stats_report_a_bad_window_with_the_other_problems(served: Running) -> None:
    error = await failure(
        served.client.market.GetMultiStats(md.GetMultiStatsRequest(symbols=["A B"], window=99, exchanges=["?"]))
    )

    assert set(error_details(error).field_violations) == {"symbols[0]", "window", "exchanges[0]"}


@pytest.mark.parametrize(
    "time_us",
    [32_503_680_000_000_000, 253_402_300_799_000_000, NOW + 61_000_000],
    ids=["3000-01-01", "9999-12-31", "61 s ahead"],
)
async def test_trades_from_the_future_are_refused(served: Running, time_us: int) -> None:
    error = await failure(served.client.publish_trades([[trade(time=time_us)]]))

    assert "trades[0].time" in error_details(error).field_violations
    symbols = await served.client.list_symbols()
    assert list(symbols.symbols) == []


async def test_trades_within_the_allowed_clock_skew_are_accepted(served: Running) -> None:
    response = await served.client.publish_trades([[trade(time=NOW + 59_000_000)]])

    assert response.accepted_count == 1


@pytest.mark.parametrize("nanos", [-1000, 2_000_000_000, 1_000_000_000])
async def test_trade_times_with_nanos_out_of_range_are_refused_not_shifted(served: Running, nanos: int) -> None:
    bad = trade()
    bad.time.nanos = nanos

    error = await failure(served.client.publish_trades([[bad]]))

    assert "trades[0].time" in error_details(error).field_violations


@pytest.mark.parametrize(
    "bound",
    [Timestamp(seconds=1_723_161_600, nanos=-1000), Timestamp(seconds=10**12), Timestamp(seconds=-(10**12))],
    ids=["negative nanos", "after year 9999", "before year 1"],
)
async def test_query_bounds_must_be_valid_timestamps(served: Running, bound: Timestamp) -> None:
    candles = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1W, start_time=bound)
    trades = md.ListTradesRequest(symbol="BTCUSDT", end_time=bound)

    assert "start_time" in error_details(await failure(served.client.market.GetCandles(candles))).field_violations
    assert "end_time" in error_details(await failure(served.client.market.ListTrades(trades))).field_violations


async def test_trade_ids_with_surrounding_whitespace_are_refused_so_ids_never_collide(served: Running) -> None:
    await served.client.publish_trades([[trade(trade_id="77")]])

    error = await failure(served.client.publish_trades([[trade(trade_id=" 77 ")]]))

    assert "trades[0].trade_id" in error_details(error).field_violations


async def test_quantities_beyond_the_bounds_are_refused_naming_the_field(served: Running) -> None:
    error = await failure(
        served.client.publish_trades([[trade(symbol="CROSSUSDT", price="1", quantity="90000000000000000000")]])
    )

    assert "trades[0].quantity" in error_details(error).field_violations


def _methods() -> list[tuple[str, bool, bool, bytes]]:
    """(path, client streaming, server streaming, bytes that are not its request) of every method served."""
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb

    found = []
    for file in (
        md.DESCRIPTOR,
        ingest_pb.DESCRIPTOR,
        admin_pb.DESCRIPTOR,
        health_pb2.DESCRIPTOR,
        reflection_pb2.DESCRIPTOR,
    ):
        for service in file.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                malformed = [b"\xff"]  # a tag whose varint never ends
                first = method.input_type.fields_by_number.get(1)
                if first is not None and first.type == first.TYPE_STRING:
                    malformed.append(b"\x0a\x02\xff\xfe")  # field 1, a string that is not UTF-8
                found += [(path, method.client_streaming, method.server_streaming, data) for data in malformed]
                if service.full_name == "grpc.reflection.v1alpha.ServerReflection":  # v1: the same protocol
                    v1 = path.replace("v1alpha", "v1")
                    found += [(v1, method.client_streaming, method.server_streaming, data) for data in malformed]
    return found


async def raw_call(
    channel: grpc.aio.Channel, path: str, client_streaming: bool, server_streaming: bool, data: bytes
) -> None:
    """Send `data` as the request bytes, unchecked by any serializer."""
    if client_streaming and server_streaming:
        async for _ in channel.stream_stream(path)(iter([data]), timeout=10):
            pass
    elif client_streaming:
        await channel.stream_unary(path)(iter([data]), timeout=10)
    elif server_streaming:
        async for _ in channel.unary_stream(path)(data, timeout=10):
            pass
    else:
        await channel.unary_unary(path)(data, timeout=10)


@pytest.mark.parametrize(("path", "client_streaming", "server_streaming", "data"), _methods())
async def test_malformed_request_bytes_are_invalid_argument_on_every_rpc_without_a_traceback(
    served: Running,
    caplog: pytest.LogCaptureFixture,
    path: str,
    client_streaming: bool,
    server_streaming: bool,
    data: bytes,
) -> None:
    with caplog.at_level(logging.INFO):
        error = await failure(raw_call(served.client.channel, path, client_streaming, server_streaming, data))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "malformed request message" in (error.details() or "")
    assert "DecodeError" not in (error.details() or "")
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the server log"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 1


async def test_a_malformed_message_in_the_middle_of_an_ingest_stream_keeps_the_earlier_ones(served: Running) -> None:
    first = ingest_pb.PublishTradesRequest(trades=[trade(trade_id="1")]).SerializeToString()
    path = "/wadm.market.v1.TradeIngestService/PublishTrades"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.channel.stream_unary(path)(iter([first, b"\xff"]), timeout=10)

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    stored = await served.client.market.ListTrades(md.ListTradesRequest(symbol="BTCUSDT"))
    assert [t.trade_id for t in stored.trades] == ["1"]
