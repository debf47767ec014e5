"""The asyncio and the blocking client pass the same suite, against a real seeded server process."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest

from tests.clients.conftest import Driver, Seeded
from wadm_client import (
    Backoff,
    Candle,
    Candles,
    InvalidArgumentError,
    MarketStats,
    NotFoundError,
    Orderbook,
    ResumeExpiredError,
    SymbolInfo,
    Trade,
    WadmSyncClient,
    make_trade,
)
from wadm_client.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_client.pb.wadm.market.v1 import trade_pb2


def exact(text: str) -> Decimal:
    return Decimal(text)


def test_candles_are_typed_exact_and_add_up_to_the_trades(client: Driver, seeded: Seeded) -> None:
    candles = client.call(lambda c: c.get_candles("BTCUSDT", "1m", limit=1000))

    assert isinstance(candles, Candles)
    assert candles.symbol == "BTCUSDT" and candles.timeframe == "1m"
    trades = seeded.trades["BTCUSDT"]
    assert sum(c.trade_count for c in candles) == len(trades)
    assert sum(c.volume for c in candles) == sum(exact(t.quantity) for t in trades)  # Decimal: exact
    assert candles[0].open == exact(trades[0].price) and candles[-1].close == exact(trades[-1].price)
    first = candles[0]
    assert isinstance(first.open, Decimal) and isinstance(first.vwap, Decimal)
    assert first.open_time.tzinfo is UTC and first.close_time > first.open_time
    assert [c.open_time for c in candles] == sorted(c.open_time for c in candles)


def test_candles_limit_and_timeframe(client: Driver) -> None:
    assert len(client.call(lambda c: c.get_candles("ETHUSDT", "1m", limit=3))) == 3
    five = client.call(lambda c: c.get_candles("ETHUSDT", "5m", limit=2))
    assert five.timeframe == "5m" and (five[1].open_time - five[0].open_time).total_seconds() == 300


def test_symbols(client: Driver, seeded: Seeded) -> None:
    symbols = client.call(lambda c: c.list_symbols())

    assert all(isinstance(s, SymbolInfo) for s in symbols)
    by_name = {s.symbol: s for s in symbols}
    assert set(by_name) == set(seeded.trades)
    assert by_name["SOLUSDT"].trade_count == len(seeded.trades["SOLUSDT"])
    assert by_name["SOLUSDT"].last_price == exact(seeded.trades["SOLUSDT"][-1].price)
    assert by_name["SOLUSDT"].exchanges == ("binance",)


def test_market_stats(client: Driver, seeded: Seeded) -> None:
    stats = client.call(lambda c: c.get_market_stats("ETHUSDT", window="1h"))

    assert isinstance(stats, MarketStats)
    trades = seeded.trades["ETHUSDT"]
    assert stats.window == "1h" and stats.trade_count == len(trades)
    assert stats.last_price == exact(trades[-1].price)
    assert stats.volume == sum(exact(t.quantity) for t in trades)
    assert stats.high == max(exact(t.price) for t in trades)


def test_multi_stats_in_request_order_with_none_for_no_trades(client: Driver) -> None:
    answers = client.call(lambda c: c.get_multi_stats(["SOLUSDT", "NOPEUSDT", "BTCUSDT"], window="4h"))

    assert list(answers) == ["SOLUSDT", "NOPEUSDT", "BTCUSDT"]
    assert answers["NOPEUSDT"] is None
    assert answers["SOLUSDT"].symbol == "SOLUSDT" and answers["BTCUSDT"].window == "4h"


def test_orderbook(client: Driver) -> None:
    book = client.call(lambda c: c.get_orderbook("SOLUSDT", depth=3))

    assert isinstance(book, Orderbook) and book.simulated
    assert len(book.bids) == len(book.asks) == 3
    assert book.bids[0].price < book.mid_price < book.asks[0].price
    assert all(isinstance(level.quantity, Decimal) for level in book.bids + book.asks)


def test_list_trades_walks_every_page(client: Driver, seeded: Seeded) -> None:
    trades = client.take(lambda c: c.list_trades("BTCUSDT", page_size=50))  # 240 trades: 5 pages

    assert all(isinstance(t, Trade) for t in trades)
    expected = seeded.trades["BTCUSDT"]
    assert [t.trade_id for t in trades] == [t.trade_id for t in reversed(expected)]  # newest first, each once
    assert trades[0].price == exact(expected[-1].price) and trades[0].time.tzinfo is UTC
    assert {t.side for t in trades} == {"buy", "sell"}


def test_invalid_argument_is_typed_with_field_violations(client: Driver) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        client.call(lambda c: c.get_candles("BTC USDT", "1m", limit=5000))

    assert set(raised.value.field_violations) == {"symbol", "limit"}
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert "limit" in str(raised.value)


def test_not_found_is_typed(client: Driver) -> None:
    with pytest.raises(NotFoundError):
        client.call(lambda c: c.get_market_stats("NOPEUSDT"))


def test_a_timeframe_that_does_not_exist_is_refused_before_any_call(client: Driver) -> None:
    with pytest.raises(ValueError, match="timeframe must be one of"):
        client.call(lambda c: c.get_candles("BTCUSDT", "2m"))


def live_streams(target: str) -> int:
    with WadmSyncClient.connect(target) as admin:
        return admin.admin.GetStreamStats(admin_pb.GetStreamStatsRequest(), timeout=5).live_streams


def publish_once_streaming(target: str, trades: list[trade_pb2.Trade], *, streams: int = 1) -> threading.Thread:
    """In a thread: once `streams` streams are live on `target` (polled, with a deadline), publish `trades`."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while live_streams(target) < streams:
            assert time.monotonic() < deadline, "no stream opened"
            time.sleep(0.05)
        with WadmSyncClient.connect(target) as publisher:
            publisher.publish_trades([trades])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def fresh_trades(symbol: str, count: int, first_id: int) -> list[trade_pb2.Trade]:
    now_us = time.time_ns() // 1000
    return [
        make_trade(
            exchange="bybit",
            symbol=symbol,
            trade_id=first_id + i,
            price="150.125",
            quantity="0.5",
            side="buy",
            time=now_us,
        )
        for i in range(count)
    ]


def test_stream_trades_yields_typed_live_trades(client: Driver, seeded: Seeded) -> None:
    trades = fresh_trades("SOLUSDT", 3, first_id=10_000 + (client.kind == "sync") * 1000)
    before = live_streams(seeded.server.target)
    thread = publish_once_streaming(seeded.server.target, trades, streams=before + 1)

    got = client.take(lambda c: c.stream_trades(["SOLUSDT"], heartbeat_seconds=1), 3)

    thread.join(30)
    assert [t.trade_id for t in got] == [t.trade_id for t in trades]
    assert got[0] == Trade("bybit", "SOLUSDT", got[0].trade_id, Decimal("150.125"), Decimal("0.5"),
                           Decimal("75.0625"), "buy", got[0].time)  # fmt: skip


def test_stream_candles_yields_typed_exact_live_candles(client: Driver, seeded: Seeded) -> None:
    trades = fresh_trades("SOLUSDT", 2, first_id=70_000 + (client.kind == "sync") * 1000)
    for trade in trades:
        trade.exchange = "okx"  # no other test's trades: the candle is these two (and the other kind's)
    with WadmSyncClient.connect(seeded.server.target) as publisher:
        publisher.publish_trades([trades])  # stored before the stream opens: its first message has them

    (first,) = client.take(lambda c: c.stream_candles("SOLUSDT", "1m", exchanges=["okx"], update_seconds=0.1), 1)

    assert isinstance(first, Candle) and first.closed is False
    assert first.trade_count in (2, 4)  # the other client kind may have published in the same minute
    assert first.open == first.high == first.low == first.close == Decimal("150.125")
    assert first.volume == Decimal("0.5") * first.trade_count
    assert first.open_time.tzinfo is UTC and first.open_time.second == 0


def test_stream_trades_reconnects_when_the_server_restarts_and_says_when_it_cannot_resume(
    connect: Callable[..., Driver], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without Redis a restarted server cannot replay what its predecessor had: the iterator reconnects,
    resumes with its token, and raises ResumeExpiredError (never a silent gap). With Redis it goes on:
    tests/api/test_resume_processes.py."""
    from tests.clients.server import wadm_server

    tmp = tmp_path_factory.mktemp("restart")
    reconnects: list[str] = []
    key = {"WADM_PAGE_TOKEN_KEY": "the-same-on-both"}  # so the second server can read the first's token
    first_trade = threading.Event()
    with wadm_server(tmp, store=tmp / "a.duckdb", env=key) as first:
        port = int(first.target.rsplit(":", 1)[1])
        client = connect(first.target)
        publish_once_streaming(first.target, fresh_trades("BTCUSDT", 1, first_id=1))

        def stop_then_restart() -> None:
            assert first_trade.wait(30)
            first.process.terminate()  # SIGTERM: open streams end with UNAVAILABLE
            first.process.wait(30)
            with wadm_server(tmp, port=port, store=tmp / "b.duckdb", env=key):
                done.wait(60)

        done = threading.Event()
        thread = threading.Thread(target=stop_then_restart, daemon=True)
        thread.start()
        got: list[Trade] = []
        try:
            with pytest.raises(ResumeExpiredError) as caught:
                client.take(
                    lambda c: noting(
                        c.stream_trades(
                            ["BTCUSDT"],
                            backoff=Backoff(initial_seconds=0.05, max_seconds=0.5, max_attempts=200),
                            on_reconnect=lambda error, delay: reconnects.append(error.code.name),
                        ),
                        got,
                        first_trade,
                    )
                )
        finally:
            done.set()
            thread.join(60)

    assert [t.trade_id for t in got] == ["1"]
    assert reconnects and set(reconnects) == {"UNAVAILABLE"}
    assert caught.value.code.name == "OUT_OF_RANGE"
    assert caught.value.available_from is not None


def noting(trades: Any, got: list[Trade], arrived: threading.Event) -> Any:
    """`trades` (sync or async iterator), each also put in `got`, `arrived` set at the first."""
    if isinstance(trades, AsyncIterator):

        async def forward() -> AsyncIterator[Trade]:
            async for trade in trades:
                got.append(trade)
                arrived.set()
                yield trade

        return forward()

    def forward_sync() -> Iterator[Trade]:
        for trade in trades:
            got.append(trade)
            arrived.set()
            yield trade

    return forward_sync()
