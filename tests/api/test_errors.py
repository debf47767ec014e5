"""Bad input gets INVALID_ARGUMENT with google.rpc.BadRequest field violations naming the field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest

from tests.conftest import Running
from wadm_client import RawWadmClient, error_details, make_trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

T = 1_723_161_300_000_000
Call = Callable[[RawWadmClient], Awaitable[object]]


def good_trade(**changes: object) -> trade_pb2.Trade:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": "1",
        "price": "61800.30",
        "quantity": "0.006",
        "side": "buy",
        "time": T,
    }
    return make_trade(**(fields | changes))  # type: ignore[arg-type]


CASES: list[tuple[str, Call, str]] = [
    ("unknown timeframe", lambda c: c.get_candles("BTCUSDT", 99), "timeframe"),
    ("unspecified timeframe", lambda c: c.get_candles("BTCUSDT", 0), "timeframe"),
    ("limit 0", lambda c: c.get_candles("BTCUSDT", "1m", limit=0), "limit"),
    ("limit 1001", lambda c: c.get_candles("BTCUSDT", "1m", limit=1001), "limit"),
    ("start after end", lambda c: c.get_candles("BTCUSDT", "1m", start=T + 1, end=T), "start_time"),
    ("empty symbol", lambda c: c.get_candles("", "1h"), "symbol"),
    ("bad symbol", lambda c: c.get_candles("BTC USDT", "1h"), "symbol"),
    ("bad exchange", lambda c: c.get_candles("BTCUSDT", "1h", exchanges=["bin ance"]), "exchanges[0]"),
    ("exponent price", lambda c: c.publish_trades([[good_trade(price="6.18e4")]]), "trades[0].price"),
    ("negative quantity", lambda c: c.publish_trades([[good_trade(quantity="-1")]]), "trades[0].quantity"),
    ("not a number", lambda c: c.publish_trades([[good_trade(), good_trade(price="abc")]]), "trades[1].price"),
    ("unknown side", lambda c: c.publish_trades([[good_trade(side="hold")]]), "trades[0].side"),
    ("missing id", lambda c: c.publish_trades([[good_trade(trade_id="")]]), "trades[0].trade_id"),
    ("zero time", lambda c: c.publish_trades([[good_trade(time=0)]]), "trades[0].time"),
    ("pre-epoch time", lambda c: c.publish_trades([[good_trade(time=-5_000_000)]]), "trades[0].time"),
    ("19 decimals", lambda c: c.publish_trades([[good_trade(price="1.0000000000000000001")]]), "trades[0].price"),
    ("empty batch", lambda c: c.publish_trades([[]]), "trades"),
    ("unspecified window", lambda c: c.market.GetMarketStats(md.GetMarketStatsRequest(symbol="X", window=0)), "window"),
    (
        "21 symbols",
        lambda c: c.market.GetMultiStats(md.GetMultiStatsRequest(symbols=[f"S{i}" for i in range(21)])),
        "symbols",
    ),
    ("no symbols", lambda c: c.market.GetMultiStats(md.GetMultiStatsRequest()), "symbols"),
    ("depth 0", lambda c: c.market.GetOrderbook(md.GetOrderbookRequest(symbol="BTCUSDT", depth=0)), "depth"),
    ("depth 101", lambda c: c.market.GetOrderbook(md.GetOrderbookRequest(symbol="BTCUSDT", depth=101)), "depth"),
    ("page size 1001", lambda c: c.market.ListTrades(md.ListTradesRequest(symbol="X", page_size=1001)), "page_size"),
    (
        "forged token",
        lambda c: c.market.ListTrades(md.ListTradesRequest(symbol="X", page_token="e30.AAAA")),
        "page_token",
    ),
]


@pytest.mark.parametrize(("call", "field"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_bad_input_is_invalid_argument_naming_the_field(served: Running, call: Call, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(served.client)

    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert field in details.field_violations, details
    assert details.field_violations[field]


async def test_every_problem_of_a_request_is_reported_at_once(served: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.get_candles("", "1m", limit=0, start=T + 1, end=T)

    assert set(error_details(raised.value).field_violations) == {"symbol", "limit", "start_time"}


async def test_a_rejected_batch_writes_nothing_and_says_which_message(served: Running) -> None:
    fine = [good_trade(trade_id=str(i)) for i in range(3)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.publish_trades([fine[:1], [*fine[1:], good_trade(trade_id="9", price="0")]])

    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "message 2" in details.message
    assert "trades[2].price" in details.field_violations
    stored = await served.client.market.ListTrades(md.ListTradesRequest(symbol="BTCUSDT"))
    assert [t.trade_id for t in stored.trades] == ["0"]  # message 1 stored, message 2 not at all


async def test_no_trades_is_not_found_not_an_empty_answer(served: Running) -> None:
    for call in (
        served.client.market.GetMarketStats(md.GetMarketStatsRequest(symbol="NOPEUSDT")),
        served.client.market.GetOrderbook(md.GetOrderbookRequest(symbol="NOPEUSDT")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        assert "NOPEUSDT" in (raised.value.details() or "")


async def test_unexpected_errors_are_internal_with_a_request_id(
    served: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(served.app.store, "symbols", broken)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.list_symbols()

    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.INTERNAL
    assert details.request_id
    assert "disk on fire" not in details.message
    assert "Traceback" not in details.message
