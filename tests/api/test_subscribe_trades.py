"""SubscribeTrades: a live trade stream whose symbol set the client changes mid-stream, acknowledged."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from tests.conftest import Running
from tests.support import make_trades
from wadm_client import error_details
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

T0 = 1_723_161_600_000_000
Call = grpc.aio.StreamStreamCall[md.SubscribeTradesRequest, md.SubscribeTradesResponse]
Key = tuple[str, str, str]


def subscribe(
    *symbols: str, exchanges: tuple[str, ...] = (), heartbeat: float | None = None
) -> md.SubscribeTradesRequest:
    request = md.SubscribeTradesRequest(subscribe=md.SubscribeSymbols(symbols=symbols, exchanges=exchanges))
    if heartbeat is not None:
        request.subscribe.heartbeat_interval.FromNanoseconds(int(heartbeat * 1e9))
    return request


def unsubscribe(*symbols: str) -> md.SubscribeTradesRequest:
    return md.SubscribeTradesRequest(unsubscribe=md.UnsubscribeSymbols(symbols=symbols))


def keys(trades: list[Trade]) -> list[Key]:
    return [(t.symbol, t.exchange, t.trade_id) for t in trades]


async def next_event(call: Call, *, skip_heartbeats: bool = True) -> md.SubscribeTradesResponse:
    async with asyncio.timeout(30):
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if not (skip_heartbeats and message.WhichOneof("event") == "heartbeat"):
                return message


async def acknowledged(call: Call) -> list[str]:
    message = await next_event(call)
    assert message.WhichOneof("event") == "subscribed", message
    return list(message.subscribed.symbols)


async def receive(call: Call, count: int) -> list[Key]:
    got: list[Key] = []
    while len(got) < count:
        message = await next_event(call)
        assert message.WhichOneof("event") == "trades", message
        got += [(t.symbol, t.exchange, t.trade_id) for t in message.trades.trades]
    return got


async def drain(call: Call) -> None:
    """Read until the stream ends (raising its error status)."""
    async with asyncio.timeout(60):
        while (await call.read()) is not grpc.aio.EOF:
            pass


def batch(seed: int, count: int, *symbols: str) -> list[Trade]:
    return make_trades(seed=seed, count=count, start_us=T0, spacing_us=1000, symbols=symbols, exchanges=("binance",))


async def test_subscribed_symbols_trades_arrive_in_ingest_order_and_unsubscribe_stops_them(served: Running) -> None:
    call: Call = served.client.market.SubscribeTrades()
    await call.write(subscribe("btcusdt", "ETHUSDT"))
    assert await acknowledged(call) == ["BTCUSDT", "ETHUSDT"]

    trades = batch(61, 300, "BTCUSDT", "ETHUSDT", "SOLUSDT")
    for start in range(0, 300, 41):
        await served.app.ingest.store_trades(trades[start : start + 41])
    wanted = [t for t in trades if t.symbol != "SOLUSDT"]
    assert await receive(call, len(wanted)) == keys(wanted)

    await call.write(unsubscribe("ETHUSDT", "DOGEUSDT"))  # one not subscribed: ignored
    assert await acknowledged(call) == ["BTCUSDT"]
    later = batch(62, 60, "ETHUSDT", "BTCUSDT")
    await served.bus.publish(later)
    btc = [t for t in later if t.symbol == "BTCUSDT"]
    assert await receive(call, len(btc)) == keys(btc)  # no ETHUSDT in between

    await call.write(subscribe("SOLUSDT", exchanges=("bybit",)))  # more, mid-stream, with its own exchanges
    assert await acknowledged(call) == ["BTCUSDT", "SOLUSDT"]
    mixed = make_trades(
        seed=63, count=90, start_us=T0, spacing_us=1000, symbols=("SOLUSDT", "BTCUSDT"), exchanges=("binance", "bybit")
    )
    await served.bus.publish(mixed)  # the bus: these trade ids repeat stored ones
    wanted = [t for t in mixed if t.symbol == "BTCUSDT" or t.exchange == "bybit"]
    assert await receive(call, len(wanted)) == keys(wanted)
    call.cancel()


async def test_a_symbol_kept_across_changes_of_others_loses_and_repeats_no_trade(served: Running) -> None:
    call: Call = served.client.market.SubscribeTrades()
    await call.write(subscribe("BTCUSDT"))
    assert await acknowledged(call) == ["BTCUSDT"]
    published: list[Trade] = []

    async def publish_while_changing() -> None:
        # Commands are written without waiting for their answers, so changes land between publishes.
        changes = [
            subscribe("ETHUSDT"),
            unsubscribe("ETHUSDT"),
            subscribe("SOLUSDT", "ETHUSDT"),
            unsubscribe("SOLUSDT"),
        ]
        for round_number in range(40):
            trades = [
                dataclasses.replace(t, trade_id=f"{round_number}-{t.trade_id}")
                for t in batch(64 + round_number, 30, "BTCUSDT", "ETHUSDT", "SOLUSDT")
            ]
            await served.bus.publish(trades)
            published.extend(trades)
            await call.write(changes[round_number % len(changes)])

    writer = asyncio.create_task(publish_while_changing())
    sets: list[list[str]] = [["BTCUSDT"]]
    got: list[Key] = []
    async with asyncio.timeout(60):
        while len(sets) < 41 or not writer.done():
            message = await next_event(call)
            if message.WhichOneof("event") == "subscribed":
                sets.append(list(message.subscribed.symbols))
            else:
                for trade in message.trades.trades:
                    assert trade.symbol in sets[-1], (trade.symbol, sets[-1])  # never outside the acknowledged set
                    got.append((trade.symbol, trade.exchange, trade.trade_id))
    await writer
    sentinel = batch(200, 3, "BTCUSDT")
    await served.bus.publish(sentinel)
    got += await receive(call, 3)
    btc = [key for key in got if key[0] == "BTCUSDT"]
    assert btc == keys([t for t in published if t.symbol == "BTCUSDT"] + sentinel)
    assert sets[-1] == ["BTCUSDT", "ETHUSDT"]
    call.cancel()


async def test_ping_answers_pong_and_idle_streams_get_heartbeats(served: Running, clock: ManualClock) -> None:
    call: Call = served.client.market.SubscribeTrades()
    await call.write(md.SubscribeTradesRequest(ping=md.Ping()))
    assert (await next_event(call)).WhichOneof("event") == "pong"
    await call.write(subscribe("BTCUSDT", heartbeat=1))
    assert await acknowledged(call) == ["BTCUSDT"]
    beat = await next_event(call, skip_heartbeats=False)
    assert beat.WhichOneof("event") == "heartbeat"
    assert beat.heartbeat.server_time.ToMicroseconds() == clock.now_us()
    call.cancel()


async def test_a_bad_request_answers_an_error_message_and_the_stream_goes_on(served: Running) -> None:
    call: Call = served.client.market.SubscribeTrades()
    await call.write(subscribe("BTCUSDT", "BAD SYMBOL", exchanges=("Not An Exchange!",), heartbeat=0.1))
    refused = await next_event(call)
    assert refused.WhichOneof("event") == "error"
    assert refused.error.code == code_pb2.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert refused.error.details[0].Unpack(bad_request)
    fields = {v.field for v in bad_request.field_violations}
    assert {"symbols[1]", "heartbeat_interval"} <= fields and any(f.startswith("exchanges") for f in fields)

    await call.write(md.SubscribeTradesRequest())  # no operation
    assert (await next_event(call)).error.code == code_pb2.INVALID_ARGUMENT
    await call.write(unsubscribe())
    assert (await next_event(call)).error.code == code_pb2.INVALID_ARGUMENT
    await call.write(subscribe(*[f"S{i}USDT" for i in range(101)]))
    assert "at most 100" in (await next_event(call)).error.message

    await call.write(subscribe("BTCUSDT"))  # nothing of the refused one was applied
    assert await acknowledged(call) == ["BTCUSDT"]
    trades = batch(65, 5, "BTCUSDT")
    await served.bus.publish(trades)
    assert await receive(call, 5) == keys(trades)
    call.cancel()


async def test_a_client_that_stops_reading_is_cut_off(served: Running) -> None:
    stalled: Call = served.client.market.SubscribeTrades()
    await stalled.write(subscribe("BTCUSDT"))
    assert await acknowledged(stalled) == ["BTCUSDT"]
    template = batch(66, 500, "BTCUSDT")
    published = 0
    async with asyncio.timeout(60):
        while served.bus.subscriber_count == 1:  # until the bus drops it (buffer of 1,000 behind its transport)
            await served.bus.publish([dataclasses.replace(t, trade_id=f"{published}-{t.trade_id}") for t in template])
            published += len(template)
            await asyncio.sleep(0)  # let the stream's handler run: it writes until its transport is full
    assert published > 1000
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await drain(stalled)
    details = error_details(raised.value)
    assert details.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.retry_after_seconds == 1.0
