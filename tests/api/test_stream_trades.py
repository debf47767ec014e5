"""StreamTrades: live trades in ingest order per symbol, heartbeats, slow consumers cut off, clean release."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.conftest import Running
from tests.support import make_trades
from wadm_client import RawWadmClient, error_details
from wadm_grpc.bootstrap import App, bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.stores.duckdb import DuckDBTradeStore

T0 = 1_723_161_600_000_000
Stream = grpc.aio.UnaryStreamCall[md.StreamTradesRequest, md.StreamTradesResponse]


def open_stream(served: Running, *symbols: str, exchanges: tuple[str, ...] = (), heartbeat: float = 60) -> Stream:
    request = md.StreamTradesRequest(symbols=symbols, exchanges=exchanges)
    request.heartbeat_interval.FromNanoseconds(int(heartbeat * 1e9))
    return served.client.market.StreamTrades(request)


async def receive(stream: Stream, count: int) -> list[tuple[str, str, str]]:
    got: list[tuple[str, str, str]] = []
    async with asyncio.timeout(30):
        while len(got) < count:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("event") == "trades":
                got += [(t.symbol, t.exchange, t.trade_id) for t in message.trades.trades]
    return got


async def drain(stream: Stream) -> None:
    """Read until the stream ends (raising its error status)."""
    async with asyncio.timeout(60):
        while (await stream.read()) is not grpc.aio.EOF:
            pass


def keys(trades: list[Trade]) -> list[tuple[str, str, str]]:
    return [(t.symbol, t.exchange, t.trade_id) for t in trades]


async def test_trades_arrive_per_symbol_in_ingest_order_and_only_those_asked_for(served: Running) -> None:
    trades = make_trades(
        seed=51,
        count=600,
        start_us=T0,
        spacing_us=1000,
        symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
        exchanges=("binance", "bybit"),
    )
    majors = open_stream(served, "btcusdt", "ETHUSDT")
    bybit_eth = open_stream(served, "ETHUSDT", exchanges=("bybit",))
    await served.bus.wait_for_subscribers(2)

    for start in range(0, 600, 37):  # ingest in uneven batches, through the public ingest path
        await served.app.ingest.store_trades(trades[start : start + 37])

    wanted = [t for t in trades if t.symbol != "SOLUSDT"]
    assert await receive(majors, len(wanted)) == keys(wanted)
    wanted_bybit = [t for t in trades if t.symbol == "ETHUSDT" and t.exchange == "bybit"]
    assert await receive(bybit_eth, len(wanted_bybit)) == keys(wanted_bybit)
    majors.cancel()
    bybit_eth.cancel()


async def test_replayed_trades_are_not_streamed_twice(served: Running) -> None:
    trades = make_trades(seed=52, count=20, start_us=T0, spacing_us=1000)
    stream = open_stream(served, "BTCUSDT")
    await served.bus.wait_for_subscribers(1)

    await served.app.ingest.store_trades(trades[:10])
    await served.app.ingest.store_trades(trades)  # 10 duplicates, 10 new

    assert await receive(stream, 20) == keys(trades)
    stream.cancel()


async def test_idle_streams_get_heartbeats_with_server_time(served: Running, clock: ManualClock) -> None:
    stream = open_stream(served, "BTCUSDT", heartbeat=1)

    async with asyncio.timeout(30):
        message = await stream.read()

    assert message.WhichOneof("event") == "heartbeat"
    assert message.heartbeat.server_time.ToMicroseconds() == clock.now_us()
    stream.cancel()


async def test_a_client_that_stops_reading_is_cut_off_without_slowing_anyone(served: Running) -> None:
    stalled = open_stream(served, "BTCUSDT")
    reader = open_stream(served, "BTCUSDT")
    await served.bus.wait_for_subscribers(2)
    batch = make_trades(seed=53, count=500, start_us=T0, spacing_us=1000)
    published = 0

    # Publish until the stalled stream's buffer (1,000 trades) overflows behind its full transport.
    async with asyncio.timeout(60):
        while served.bus.subscriber_count == 2:
            trades = [dataclasses.replace(t, trade_id=f"{published}-{t.trade_id}") for t in batch]
            await served.bus.publish(trades)
            published += len(trades)
            # The live reader keeps up with every batch.
            assert await receive(reader, len(trades)) == keys(trades)

    assert served.bus.subscriber_count == 1  # the stalled one was dropped, the reader stays
    more = make_trades(seed=54, count=10, start_us=T0, spacing_us=1000)
    await served.bus.publish(more)
    assert await receive(reader, 10) == keys(more)
    # When the stalled client reads again it gets what was already sent, then RESOURCE_EXHAUSTED.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await drain(stalled)
    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.retry_after_seconds == 1.0
    assert published > 1000
    reader.cancel()


async def test_cancelled_streams_release_their_subscription(served: Running) -> None:
    streams = [open_stream(served, "BTCUSDT", "ETHUSDT") for _ in range(5)]
    await served.bus.wait_for_subscribers(5)

    for stream in streams:
        stream.cancel()

    async with asyncio.timeout(30):
        await served.bus.wait_for_subscribers(0)


async def test_stream_request_validation(served: Running) -> None:
    for request in (
        md.StreamTradesRequest(),
        md.StreamTradesRequest(symbols=[f"S{i}" for i in range(101)]),
        md.StreamTradesRequest(symbols=["BTCUSDT"], heartbeat_interval={"seconds": 61}),
        md.StreamTradesRequest(symbols=["BTC USDT"]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await served.client.market.StreamTrades(request).read()
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_caught_up_stream_takes_a_batch_larger_than_its_buffer(served: Running) -> None:
    big = make_trades(seed=55, count=2500, start_us=T0, spacing_us=1000)  # the fixture's buffer holds 1,000
    stream = open_stream(served, "BTCUSDT")
    await served.bus.wait_for_subscribers(1)

    await served.app.ingest.store_trades(big)

    assert await receive(stream, 2500) == keys(big)
    stream.cancel()


# --- The slow-consumer policy on what the transport has not taken (issue 8) ---------------------------

STALL_SECONDS = 0.5
# A client whose HTTP/2 receive window stays at 64 KiB: its transport stops absorbing almost at once.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


@dataclass
class Strict:
    """A served app whose streams are cut off after STALL_SECONDS without progress, buffer 1,000 trades."""

    app: App
    bus: InProcessTradeBus
    client: RawWadmClient
    target: str

    async def stats(self) -> admin_pb.GetStreamStatsResponse:
        return await admin_grpc.AdminServiceStub(self.client.channel).GetStreamStats(admin_pb.GetStreamStatsRequest())

    async def wait_for(self, *, live: int, cut_off: int) -> None:
        """Wait (bounded) until the server reports exactly these figures; stats only change on events."""
        async with asyncio.timeout(30):
            while True:
                stats = await self.stats()
                if (stats.live_streams, stats.cut_off_streams) == (live, cut_off):
                    return
                await asyncio.sleep(0.05)  # polling an RPC: there is no event to wait on from here


@pytest.fixture
async def strict(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Strict]:
    bus = InProcessTradeBus(buffer_trades=1000)
    settings = Settings(page_token_key=b"test-key", stream_stall_seconds=STALL_SECONDS)
    app = await bootstrap(settings, store=DuckDBTradeStore(tmp_path / "strict.duckdb"), bus=bus, clock=clock)
    server = await start_grpc(app, "127.0.0.1:0")
    target = f"127.0.0.1:{server.port}"
    client = RawWadmClient.connect(target, timeout_seconds=30)
    try:
        yield Strict(app=app, bus=bus, client=client, target=target)
    finally:
        await client.close()
        await bus.close()
        await server.stop(0)
        await app.close()


def numbered(batch: list[Trade], round_: int) -> list[Trade]:
    return [dataclasses.replace(t, trade_id=f"{round_}-{t.trade_id}") for t in batch]


async def publish_until_cut_off(strict: Strict, reader: Stream, *, seed: int, batch_size: int) -> int:
    """Publish batches (the reader keeps up with each) until the server ended one stream; trades published."""
    batch = make_trades(seed=seed, count=batch_size, start_us=T0, spacing_us=1000)
    published = 0
    async with asyncio.timeout(60):
        while strict.bus.subscriber_count == 2:
            trades = numbered(batch, published)
            await strict.bus.publish(trades)
            published += len(trades)
            assert await receive(reader, len(trades)) == keys(trades)
    return published


async def test_a_client_whose_transport_stops_taking_data_is_cut_off_before_its_buffer_fills(
    strict: Strict,
) -> None:
    async with grpc.aio.insecure_channel(strict.target, options=SMALL_WINDOW) as channel:
        request = md.StreamTradesRequest(symbols=["BTCUSDT"])
        stalled = md_grpc.MarketDataServiceStub(channel).StreamTrades(request)
        reader = strict.client.market.StreamTrades(request)
        await strict.bus.wait_for_subscribers(2)

        # 1,500 trades: about 100 KB, more than the 64 KiB window, less than buffer + window. Only the time
        # a message waits for the transport can end this stream.
        batch = make_trades(seed=56, count=100, start_us=T0, spacing_us=1000)
        for round_ in range(15):
            trades = numbered(batch, round_)
            await strict.bus.publish(trades)
            assert await receive(reader, len(trades)) == keys(trades)

        await strict.wait_for(live=1, cut_off=1)  # the handler ended, not just the subscription
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await drain(stalled)
        details = error_details(raised.value)
        assert details.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.retry_after_seconds == 1.0
        assert "took no data" in details.message
        more = make_trades(seed=57, count=10, start_us=T0, spacing_us=1000)
        await strict.bus.publish(more)
        assert await receive(reader, 10) == keys(more)
        reader.cancel()


async def test_a_client_that_absorbs_but_never_reads_is_cut_off_and_its_handler_ends_at_once(
    strict: Strict,
) -> None:
    request = md.StreamTradesRequest(symbols=["BTCUSDT"])
    stalled = strict.client.market.StreamTrades(request)  # a default client that never iterates
    reader = strict.client.market.StreamTrades(request)
    await strict.bus.wait_for_subscribers(2)

    published = await publish_until_cut_off(strict, reader, seed=58, batch_size=500)

    await strict.wait_for(live=1, cut_off=1)
    assert published > 10_000  # its library took megabytes before its transport stopped
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await drain(stalled)
    assert error_details(raised.value).code is grpc.StatusCode.RESOURCE_EXHAUSTED
    reader.cancel()
    await strict.wait_for(live=0, cut_off=1)


async def test_a_client_that_reads_slowly_but_keeps_up_is_not_cut_off(strict: Strict) -> None:
    async with grpc.aio.insecure_channel(strict.target, options=SMALL_WINDOW) as channel:
        stream = md_grpc.MarketDataServiceStub(channel).StreamTrades(md.StreamTradesRequest(symbols=["BTCUSDT"]))
        await strict.bus.wait_for_subscribers(1)
        batch = make_trades(seed=59, count=800, start_us=T0, spacing_us=1000)  # ~56 KB a message
        received: list[tuple[str, str, str]] = []

        for round_ in range(8):  # each batch fills the window; the client reads it at its own pace
            trades = numbered(batch, round_)
            await strict.bus.publish(trades)
            async with asyncio.timeout(30):
                while len(received) < len(trades) * (round_ + 1):
                    message = await stream.read()
                    received += [(t.symbol, t.exchange, t.trade_id) for t in message.trades.trades]
                    await asyncio.sleep(STALL_SECONDS / 5)  # a slow reader: well within the stall time

        assert len(received) == 6400
        assert (await strict.stats()).cut_off_streams == 0
        assert (await strict.stats()).live_streams == 1
        stream.cancel()
