"""ListTrades: cursor paging, stable while trades arrive, tamper-proof tokens."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from tests.conftest import Running
from tests.support import make_trades
from wadm_client import error_details
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

T0 = 1_723_161_600_000_000


async def test_walking_every_page_returns_each_trade_once_while_new_trades_arrive(served: Running) -> None:
    trades = make_trades(seed=41, count=1234, start_us=T0, spacing_us=250_000, exchanges=("binance", "bybit"))
    await served.app.ingest.store_trades(trades[:1000])
    newer = [dataclasses.replace(t, trade_id=f"n{t.trade_id}") for t in trades[1000:]]
    request = md.ListTradesRequest(symbol="BTCUSDT", page_size=97)

    seen: list[tuple[str, str]] = []
    for page_number in range(100):
        page = await served.client.market.ListTrades(request)
        seen += [(t.exchange, t.trade_id) for t in page.trades]
        if page_number < len(newer) // 50:  # more trades land between pages, newer than everything listed
            await served.app.ingest.store_trades(newer[page_number * 50 : (page_number + 1) * 50])
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token

    expected = sorted(trades[:1000], key=lambda t: t.order_key, reverse=True)
    assert seen == [(t.exchange, t.trade_id) for t in expected]


async def test_time_range_and_exchange_filters(served: Running) -> None:
    trades = make_trades(seed=42, count=300, start_us=T0, spacing_us=1_000_000, exchanges=("binance", "bybit"))
    await served.app.ingest.store_trades(trades)
    request = md.ListTradesRequest(symbol="BTCUSDT", exchanges=["bybit"], page_size=1000)
    request.start_time.FromMicroseconds(T0 + 10_000_000)
    request.end_time.FromMicroseconds(T0 + 20_000_000)

    page = await served.client.market.ListTrades(request)

    expected = [
        t for t in reversed(trades) if t.exchange == "bybit" and T0 + 10_000_000 <= t.time_us <= T0 + 20_000_000
    ]
    assert [(t.trade_id, t.price, t.quantity) for t in page.trades] == [
        (t.trade_id, str(t.price), str(t.quantity)) for t in expected
    ]
    assert page.next_page_token == ""
    assert page.trades[0].quote_quantity == str(expected[0].price * expected[0].quantity)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda r, token: setattr(r, "page_token", token[:-2] + ("A" if token[-1] != "A" else "B") + token[-1]),
            "issued",
        ),
        (lambda r, token: setattr(r, "page_token", "x" + token), "issued"),
        (lambda r, token: setattr(r, "symbol", "ETHUSDT"), "different query"),
        (lambda r, token: r.exchanges.append("bybit"), "different query"),
    ],
    ids=["edited signature", "edited payload", "other symbol", "other filter"],
)
async def test_tampered_or_foreign_tokens_are_invalid_argument(served: Running, change: object, reason: str) -> None:
    await served.app.ingest.store_trades(make_trades(seed=43, count=30, start_us=T0, spacing_us=1_000_000))
    first = await served.client.market.ListTrades(md.ListTradesRequest(symbol="BTCUSDT", page_size=10))
    request = md.ListTradesRequest(symbol="BTCUSDT", page_size=10, page_token=first.next_page_token)

    change(request, first.next_page_token)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.client.market.ListTrades(request)

    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert reason in details.field_violations["page_token"]
