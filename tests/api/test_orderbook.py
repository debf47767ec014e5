"""GetOrderbook through the real server: simulated, flagged, deterministic, from a stated window."""

from __future__ import annotations

from decimal import Decimal

from tests.conftest import Running
from tests.support import make_trades
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

NOW = 1_723_161_600_000_000


async def test_simulated_book_from_recent_trades(served: Running, clock: ManualClock) -> None:
    trades = make_trades(seed=31, count=400, start_us=NOW - 400_000_000, spacing_us=1_000_000, exchanges=("a", "b"))
    await served.app.ingest.store_trades(trades)
    clock.set(NOW)
    request = md.GetOrderbookRequest(symbol="BTCUSDT", depth=7)

    book = await served.client.market.GetOrderbook(request)
    again = await served.client.market.GetOrderbook(request)
    default = await served.client.market.GetOrderbook(md.GetOrderbookRequest(symbol="BTCUSDT"))

    assert book == again
    assert book.simulated
    assert (len(book.bids), len(book.asks), len(default.bids)) == (7, 7, 20)
    assert Decimal(book.bids[0].price) < Decimal(book.mid_price) < Decimal(book.asks[0].price)
    assert Decimal(book.asks[0].price) - Decimal(book.bids[0].price) == Decimal(book.spread)
    assert book.tick_size == "0.01"
    assert book.trade_count == 400
    assert list(book.exchanges) == ["a", "b"]
    assert book.window_close_time.ToMicroseconds() == NOW
    assert book.window_open_time.ToMicroseconds() == NOW - 15 * 60_000_000
