"""The abuse test (bounded, loopback): a flood of distinct uncached GetCandles(1m, 1000, fill_gaps) saturates
the store; every victim call on cached data (and ListSymbols) still succeeds, and shed calls get UNAVAILABLE
with RetryInfo. Latencies and RSS are measured in `make bench` (section abuse), not asserted here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from tests.access.support import NOW, RETRY_INFO, detail, status_of
from tests.support import make_trades
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.services.shedding import SHED_REASON
from wadm_grpc.stores.duckdb import DuckDBTradeStore

FLOOD = 400
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000


def flood_request(index: int) -> md.GetCandlesRequest:
    request = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=1000, fill_gaps=True)
    request.start_time.FromMicroseconds(NOW - 2 * DAY_US + index * MINUTE_US)  # a distinct range each: uncached
    return request


async def test_cached_answers_never_wait_behind_a_saturated_store(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    bus = InProcessTradeBus(buffer_trades=100)
    settings = Settings(page_token_key=b"k", max_store_queries=2, store_queue=8, store_queue_seconds=0.2)
    app = await bootstrap(settings, store=store, bus=bus, clock=ManualClock(NOW))
    await app.ingest.store_trades(
        make_trades(seed=11, count=6000, start_us=NOW - 2 * DAY_US, spacing_us=DAY_US * 2 // 6000)
    )
    server = await start_grpc(app, "127.0.0.1:0")
    assert app.gate is not None
    gate = app.gate
    try:
        own_connection = [("grpc.use_local_subchannel_pool", 1)]  # two clients, two connections
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=own_connection) as flood_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=own_connection) as victim_channel,
        ):
            flooder = md_grpc.MarketDataServiceStub(flood_channel)
            victim = md_grpc.MarketDataServiceStub(victim_channel)
            cached = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=100)
            await victim.GetCandles(cached)  # warm
            # The flood's connection is up and has the server's settings (its stream cap) before the burst:
            # streams opened beyond the cap before that are refused by HTTP/2 (RST_STREAM), not shed.
            await flooder.ListSymbols(md.ListSymbolsRequest())

            async def flood_one(index: int) -> grpc.StatusCode:
                try:
                    await flooder.GetCandles(flood_request(index), timeout=30)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        status = status_of(error)
                        assert detail(status, RETRY_INFO).retry_delay.ToNanoseconds() > 0
                        assert SHED_REASON.encode() in status.SerializeToString()  # ErrorInfo reason
                    return error.code()
                return grpc.StatusCode.OK

            flood = asyncio.gather(*(flood_one(index) for index in range(FLOOD)))
            victim_calls = saturated_calls = 0
            while not flood.done():
                busy = gate.saturated
                answer = await victim.GetCandles(cached, timeout=30)  # raises on any failure
                assert len(answer.candles) == 100
                symbols = await victim.ListSymbols(md.ListSymbolsRequest(), timeout=30)
                assert [s.symbol for s in symbols.symbols] == ["BTCUSDT"]
                victim_calls += 1
                saturated_calls += busy and gate.saturated
            codes = await flood
    finally:
        await server.stop(0)
        await bus.close()
        await app.close()
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert codes.count(grpc.StatusCode.UNAVAILABLE) > 0 and gate.shed == codes.count(grpc.StatusCode.UNAVAILABLE)
    assert codes.count(grpc.StatusCode.OK) > 0
    assert saturated_calls > 0, f"no victim call met a saturated store ({victim_calls} calls)"
