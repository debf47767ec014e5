"""Query parameters become request fields by grpc-gateway's rules, and every bad one is named at once."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from wadm_grpc.api.http.query import build_request
from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md


def build(cls: type, query: str, **path: str) -> object:
    return build_request(cls, path_variables=path, query=parse_qsl(query, keep_blank_values=True))


def problems(cls: type, query: str, **path: str) -> dict[str, str]:
    with pytest.raises(InvalidArgumentError) as raised:
        build(cls, query, **path)
    return {v.field: v.description for v in raised.value.violations}


def test_path_variables_and_query_fields_by_proto_or_json_name() -> None:
    request = build(
        md.GetCandlesRequest, "limit=2&fillGaps=true&start_time=2024-08-08T23:55:00Z", symbol="BTCUSDT", timeframe="1h"
    )

    assert request == md.GetCandlesRequest(
        symbol="BTCUSDT", timeframe=md.TIMEFRAME_1H, limit=2, fill_gaps=True, start_time={"seconds": 1723161300}
    )
    assert request.HasField("limit")


@pytest.mark.parametrize("timeframe", ["1w", "TIMEFRAME_1W", "8"])
def test_enums_by_short_form_name_or_number(timeframe: str) -> None:
    assert build(md.GetCandlesRequest, "", symbol="X", timeframe=timeframe).timeframe == md.TIMEFRAME_1W


def test_stats_windows_by_short_form() -> None:
    assert [build(md.GetMarketStatsRequest, f"window={w}", symbol="X").window for w in ("1h", "4h", "24h", "7d")] == [
        md.STATS_WINDOW_1H,
        md.STATS_WINDOW_4H,
        md.STATS_WINDOW_24H,
        md.STATS_WINDOW_7D,
    ]


def test_repeated_fields_as_repeated_keys_comma_lists_and_the_old_singular_alias() -> None:
    request = build(md.GetMultiStatsRequest, "symbols=BTCUSDT&symbols=ETHUSDT,SOLUSDT&exchange=binance,bybit")

    assert list(request.symbols) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert list(request.exchanges) == ["binance", "bybit"]


def test_times_as_epoch_milliseconds_and_durations_in_json_form() -> None:
    candles = build(md.GetCandlesRequest, "end_time=1723161300123", symbol="X", timeframe="1m")
    stream = build(md.StreamTradesRequest, "symbols=X&heartbeat_interval=5s")

    assert candles.end_time.ToMilliseconds() == 1723161300123
    assert stream.heartbeat_interval.ToNanoseconds() == 5_000_000_000


def test_reserved_keys_are_not_fields() -> None:
    assert build(md.ListSymbolsRequest, "pretty") == md.ListSymbolsRequest()


def test_every_problem_is_named_at_once_never_ignored() -> None:
    found = problems(
        md.GetCandlesRequest,
        "limit=ten&limt=5&start_time=yesterday&fill_gaps=maybe&exchanges=a&end_time=99999999999999999999",
        symbol="X",
        timeframe="2m",
    )

    assert set(found) == {"limit", "limt", "start_time", "fill_gaps", "timeframe", "end_time"}
    assert found["limt"] == "unknown query parameter"
    assert "must be an integer" in found["limit"]
    assert "1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w" in found["timeframe"]
    assert "RFC 3339 or epoch milliseconds" in found["start_time"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=1&limit=2", "limit"),  # a single field given twice
        ("limit=99999999999", "limit"),  # beyond int32
        ("symbol=Y", "symbol"),  # already bound by the path
        ("start_time.seconds=5", "start_time.seconds"),  # a Timestamp is set whole
    ],
)
def test_ambiguous_or_impossible_values_are_refused(query: str, field: str) -> None:
    assert field in problems(md.GetCandlesRequest, query, symbol="X", timeframe="1m")


def test_a_month_is_not_a_minute() -> None:
    assert "timeframe" in problems(md.GetCandlesRequest, "", symbol="X", timeframe="1M")


def test_bad_durations_are_named() -> None:
    assert "heartbeat_interval" in problems(md.StreamTradesRequest, "symbols=X&heartbeat_interval=5")
