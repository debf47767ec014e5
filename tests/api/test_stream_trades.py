"""StreamTrades: live trades in ingest order per symbol, heartbeats, slow consumers cut off, clean release."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from tests.conftest import Running
from tests.support import make_trades
from wadm_client import error_details
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

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
