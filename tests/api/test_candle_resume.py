"""StreamCandles resume tokens: the missed finals once each (equal to GetCandles), then live; bad tokens."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from tests.api.test_redis_processes import free_port
from tests.api.test_resume_processes import error_info
from tests.api.test_stream_candles import GRACE_US, MINUTE_US, T0, Stream, bucket_from_get_candles, publish
from tests.conftest import Running
from tests.support import make_trades
from wadm_client import Backoff, Candle, WadmClient, error_details
from wadm_grpc.api.grpc import convert
from wadm_grpc.bootstrap import App, bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.ports import TradeStore
from wadm_grpc.services.live_candles import MAX_RESUME_BUCKETS


def open_candles(served: Running, resume_token: str = "", *, timeframe: int = md.TIMEFRAME_1M) -> Stream:
    request = md.StreamCandlesRequest(symbol="BTCUSDT", timeframe=timeframe, resume_token=resume_token)  # type: ignore[arg-type]
    request.update_interval.FromNanoseconds(100_000_000)
    request.heartbeat_interval.FromNanoseconds(60 * 10**9)
    return served.client.market.StreamCandles(request)


async def read_until_final(stream: Stream, open_time_us: int, got: list[md.StreamCandlesResponse]) -> str:
    """Read (into `got`) until the final of the bucket opening at `open_time_us`; its resume token."""
    async with asyncio.timeout(30):
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            got.append(message)
            candle = message.candle
            if (
                message.WhichOneof("event") == "candle"
                and candle.closed
                and convert.micros(candle.open_time) == open_time_us
            ):
                return str(message.resume_token)


def trades_in(n: int, count: int, *, seed: int, spacing_us: int = 1_000_000) -> list[Trade]:
    """`count` trades from second 1 of minute n, with trade ids of their own."""
    made = make_trades(seed=seed, count=count, start_us=minute(n) + 1_000_000, spacing_us=spacing_us)
    return [dataclasses.replace(trade, trade_id=f"{seed}-{trade.trade_id}") for trade in made]


def minute(n: int) -> int:
    return T0 + n * MINUTE_US


async def close_minute(served: Running, clock: ManualClock, n: int) -> None:
    """Trades in minute n, then the clock past its end and grace."""
    await publish(served, clock, trades_in(n, 5, seed=n))
    clock.set(minute(n + 1) + GRACE_US)


def finals(messages: list[md.StreamCandlesResponse]) -> list[md.Candle]:
    return [m.candle for m in messages if m.WhichOneof("event") == "candle" and m.candle.closed]


@pytest.mark.parametrize("feed_kept", [False, True], ids=["feed-restarted", "feed-kept-by-another-stream"])
async def test_a_resumed_stream_sends_each_missed_final_once_equal_to_get_candles_then_live(
    served: Running, clock: ManualClock, feed_kept: bool
) -> None:
    clock.set(minute(0))
    first = open_candles(served)
    await first.initial_metadata()
    other = open_candles(served) if feed_kept else None  # keeps the shared computation running meanwhile
    if other is not None:
        await other.initial_metadata()
    before: list[md.StreamCandlesResponse] = []
    await close_minute(served, clock, 0)
    token = await read_until_final(first, minute(0), before)
    first.cancel()

    # Disconnected: minutes 1 and 3 get trades and close, minute 2 stays empty, minute 4 is in progress.
    await close_minute(served, clock, 1)
    clock.set(minute(3))
    await close_minute(served, clock, 3)
    if other is not None:  # the other stream had them live: the shared feed published them before the resume
        await read_until_final(other, minute(3), [])
    await publish(served, clock, trades_in(4, 3, seed=40, spacing_us=1000))

    resumed = open_candles(served, token)
    after: list[md.StreamCandlesResponse] = []
    await read_until_final(resumed, minute(3), after)
    async with asyncio.timeout(30):
        in_progress = await resumed.read()
    await close_minute(served, clock, 4)  # live again
    await read_until_final(resumed, minute(4), after)
    resumed.cancel()
    if other is not None:
        other.cancel()

    assert [convert.micros(c.open_time) for c in finals(before)] == [minute(0)]
    assert [convert.micros(c.open_time) for c in finals(after)] == [minute(1), minute(3), minute(4)]
    for final in finals(before) + finals(after):
        assert final == await bucket_from_get_candles(served, convert.micros(final.open_time))
    assert after[:2] == [m for m in after if m.candle.closed][:2]  # the replayed finals come first
    assert in_progress.candle.closed is False and convert.micros(in_progress.candle.open_time) == minute(4)
    assert in_progress.candle.trade_count == 3
    assert all(m.resume_token for m in before + after + [in_progress])


async def test_the_token_of_a_stream_that_missed_nothing_resumes_without_repeats(
    served: Running, clock: ManualClock
) -> None:
    clock.set(minute(0))
    stream = open_candles(served)
    await stream.initial_metadata()
    await close_minute(served, clock, 0)
    token = await read_until_final(stream, minute(0), [])
    stream.cancel()
    await publish(served, clock, trades_in(1, 2, seed=9, spacing_us=1000))

    resumed = open_candles(served, token)
    async with asyncio.timeout(30):
        message = await resumed.read()
    resumed.cancel()
    assert not message.candle.closed and convert.micros(message.candle.open_time) == minute(1)


async def test_heartbeats_carry_a_token_that_resumes(served: Running, clock: ManualClock) -> None:
    clock.set(minute(0))
    request = md.StreamCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M)
    request.heartbeat_interval.FromNanoseconds(10**9)
    stream = served.client.market.StreamCandles(request)
    async with asyncio.timeout(30):
        beat = await stream.read()
    stream.cancel()
    assert beat.WhichOneof("event") == "heartbeat" and beat.resume_token
    await close_minute(served, clock, 0)

    resumed = open_candles(served, beat.resume_token)
    got: list[md.StreamCandlesResponse] = []
    await read_until_final(resumed, minute(0), got)
    resumed.cancel()
    assert len(finals(got)) == 1


async def test_a_forged_or_foreign_token_is_invalid_argument_on_resume_token(
    served: Running, clock: ManualClock
) -> None:
    clock.set(minute(0) + 2_000_000)
    await publish(served, clock, trades_in(0, 3, seed=2, spacing_us=1000))
    five = open_candles(served, timeframe=md.TIMEFRAME_5M)
    async with asyncio.timeout(30):
        other_stream_token = (await five.read()).resume_token
    five.cancel()
    trades = served.client.market.StreamTrades(md.StreamTradesRequest(symbols=["BTCUSDT"]))
    await trades.initial_metadata()
    await publish(served, clock, trades_in(0, 1, seed=3, spacing_us=1000))
    async with asyncio.timeout(30):
        trade_token = (await trades.read()).resume_token
    trades.cancel()

    for token in (other_stream_token, trade_token, other_stream_token[:-3] + "AAA", "not-a-token"):
        stream = open_candles(served, token)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream.read()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, token
        assert "resume_token" in error_details(raised.value).field_violations


async def test_a_token_older_than_the_resume_bound_is_out_of_range_with_error_info(
    served: Running, clock: ManualClock
) -> None:
    clock.set(minute(0))
    stream = open_candles(served)
    await stream.initial_metadata()
    await close_minute(served, clock, 0)
    token = await read_until_final(stream, minute(0), [])
    stream.cancel()
    clock.set(minute(MAX_RESUME_BUCKETS + 2) + GRACE_US)

    resumed = open_candles(served, token)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await resumed.read()
    assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
    info = error_info(raised.value)
    assert info.reason == "RESUME_TOKEN_EXPIRED" and info.domain == "wadm.market.v1"
    assert info.metadata["available_from"] == "2024-08-09T00:02:00.000Z"


async def test_the_client_iterator_survives_three_server_restarts_without_losing_or_repeating_a_final(
    store: TradeStore, clock: ManualClock
) -> None:
    """A restart here is: the bus closes (live streams end UNAVAILABLE, as at shutdown), the gRPC server stops,
    trades of two more minutes are stored while none listens, a new app (new bus, new feeds) serves the same
    store on the same port. The candle clock is a ManualClock, so the servers run in this process."""
    target = f"127.0.0.1:{free_port()}"
    settings = Settings(page_token_key=b"test-key")
    closers: list[Any] = []

    async def start() -> App:
        bus = InProcessTradeBus(buffer_trades=1000)
        app = await bootstrap(settings, store=store, bus=bus, clock=clock)
        closers.append(bus)
        return app

    async def store_minute(app: App, n: int, *, close: bool = True) -> None:
        trades = trades_in(n, 4, seed=100 + n)
        clock.set(trades[-1].time_us)
        await app.ingest.store_trades(trades)
        if close:
            clock.set(minute(n + 1) + GRACE_US)

    clock.set(minute(0))
    app = await start()
    server = await start_grpc(app, target)
    finals_got: list[Candle] = []
    reconnects: list[str] = []
    try:
        async with WadmClient.connect(target) as client:
            candles = client.stream_candles(
                "BTCUSDT",
                "1m",
                update_seconds=0.1,
                backoff=Backoff(initial_seconds=0.05, max_seconds=0.2),
                on_reconnect=lambda error, delay: reconnects.append(error.code.name),
            )

            async def until_final(n: int) -> None:
                async with asyncio.timeout(30):
                    while not finals_got or micros(finals_got[-1]) != minute(n):
                        candle = await anext(candles)
                        if candle.closed:
                            finals_got.append(candle)

            await store_minute(app, 0, close=False)
            async with asyncio.timeout(30):
                assert not (await anext(candles)).closed  # the stream is open: minute 0 in progress
            clock.set(minute(1) + GRACE_US)
            await until_final(0)
            last = 0
            for _ in range(3):
                await closers[-1].close()  # the restart: streams end UNAVAILABLE, as at shutdown
                await server.stop(0)
                app = await start()
                await store_minute(app, last + 1)  # while no server listens
                await store_minute(app, last + 2)
                server = await start_grpc(app, target)
                await until_final(last + 2)
                await store_minute(app, last + 3)  # live again
                await until_final(last + 3)
                last += 3
            assert client.reconnects == 3
            await candles.aclose()  # type: ignore[attr-defined]  # an async generator
            stored = await client.get_candles("BTCUSDT", "1m", start=stamp(minute(0)), end=stamp(minute(last)))
    finally:
        await server.stop(0)
        for bus in closers:
            await bus.close()

    assert [micros(c) for c in finals_got] == [minute(n) for n in range(10)]  # each once, in order
    assert finals_got == list(stored.candles)  # digit for digit
    assert reconnects == ["UNAVAILABLE"] * 3


def micros(candle: Candle) -> int:
    return round(candle.open_time.timestamp() * 1e6)


def stamp(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)
