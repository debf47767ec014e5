"""The ingest service: what was written is always announced, even when the caller goes away."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from wadm_grpc.bootstrap import bootstrap
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.stores.duckdb import DuckDBTradeStore

MINUTE_US = 60_000_000
T0 = 1_723_161_600_000_000


def trade(number: int, price: str, time_us: int) -> Trade:
    return Trade("binance", "BTCUSDT", str(number), Decimal(price), Decimal(1), Side.BUY, time_us)


async def test_a_cancelled_caller_does_not_keep_its_stored_trades_from_subscribers(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    bus = InProcessTradeBus()
    app = await bootstrap(Settings(page_token_key=b"k"), store=store, bus=bus, clock=ManualClock(T0 + 10 * MINUTE_US))
    subscription = bus.subscribe(frozenset({"BTCUSDT"}), frozenset())
    late = trade(2, "999", T0 + 2 * MINUTE_US)
    invalidations = app.cache.invalidations
    try:
        call = asyncio.create_task(app.ingest.store_trades([late]))
        await asyncio.sleep(0)  # the write is on its way to the writer thread
        call.cancel()  # the client's deadline expired, or it disconnected

        delivered = await subscription.get(30)

        assert delivered == [late]
        assert app.cache.invalidations == invalidations + 1  # and cached answers it changes were dropped
        assert (await app.ingest.store_trades([late])).duplicates == 1
    finally:
        subscription.close()
        await store.close()
