"""StreamCandles: live candles whose finals equal GetCandles and Binance's klines, conflated, one final per bucket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import grpc
import pytest

from tests.api.test_real_klines import COVERED, FIELDS
from tests.conftest import Running
from tests.support import binance_trades, make_trades, read_kline_rows
from wadm_client import error_details
from wadm_grpc.api.grpc import convert
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import Trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.services.live_candles import DEFAULT_CLOSE_GRACE_SECONDS

MINUTE_US = 60_000_000
GRACE_US = int(DEFAULT_CLOSE_GRACE_SECONDS * 1e6)
T0 = 1_723_161_600_000_000  # 2024-08-09T00:00:00Z
Stream = grpc.aio.UnaryStreamCall[md.StreamCandlesRequest, md.StreamCandlesResponse]


def open_candles(
    served: Running, symbol: str = "BTCUSDT", *, update: float = 0.1, heartbeat: float = 60, timeframe: int = 1
) -> Stream:
    request = md.StreamCandlesRequest(symbol=symbol, timeframe=timeframe)  # type: ignore[arg-type]
    request.update_interval.FromNanoseconds(int(update * 1e9))
    request.heartbeat_interval.FromNanoseconds(int(heartbeat * 1e9))
    return served.client.market.StreamCandles(request)


async def publish(served: Running, clock: ManualClock, trades: Sequence[Trade], *, live: bool = True) -> None:
    """Through PublishTrades; `live`: with the clock at the newest trade's time, as a live feed would."""
    if live:
        clock.set(max(t.time_us for t in trades))
    await served.client.publish_trades([[convert.trade(t) for t in trades]])


async def next_candle(stream: Stream) -> md.Candle:
    """The next candle message (heartbeats skipped)."""
    async with asyncio.timeout(30):
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("event") == "candle":
                return message.candle


async def bucket_from_get_candles(served: Running, open_time_us: int) -> md.Candle:
    found = await served.client.get_candles("BTCUSDT", "1m", start=open_time_us, end=open_time_us)
    assert len(found.candles) == 1
    return found.candles[0]


def minute_batches(trades: list[Trade], size: int) -> list[list[Trade]]:
    """Trades in time order, cut at every minute boundary and every `size` trades."""
    batches: list[list[Trade]] = []
    for trade in trades:
        if not batches or len(batches[-1]) >= size or batches[-1][0].time_us // MINUTE_US != trade.time_us // MINUTE_US:
            batches.append([])
        batches[-1].append(trade)
    return batches


async def test_every_final_equals_get_candles_and_the_official_kline(served: Running, clock: ManualClock) -> None:
    trades = binance_trades()
    clock.set(trades[0].time_us)
    stream = open_candles(served)
    await stream.initial_metadata()
    received: list[md.Candle] = []
    minutes = sorted({t.time_us - t.time_us % MINUTE_US for t in trades})

    async def read_until_last_final() -> None:
        while True:
            candle = await next_candle(stream)
            received.append(candle)
            if candle.closed and convert.micros(candle.open_time) == minutes[-1]:
                return

    reader = asyncio.ensure_future(read_until_last_final())
    for batch in minute_batches(trades, 700):
        await publish(served, clock, batch)
    clock.set(minutes[-1] + MINUTE_US + GRACE_US)
    async with asyncio.timeout(60):
        await reader
    stream.cancel()

    finals = [c for c in received if c.closed]
    assert [convert.micros(c.open_time) for c in finals] == minutes  # exactly one final per bucket, in order
    for final in finals:
        assert final == await bucket_from_get_candles(served, convert.micros(final.open_time))
    official = {int(row["open_time"]) * 1000: row for row in read_kline_rows()[COVERED]}
    for final in finals:
        row = official.get(convert.micros(final.open_time))
        if row is not None:
            assert {field: str(getattr(final, attribute)) for field, attribute in FIELDS.items()} == {
                field: row[field] for field in FIELDS
            }
    assert len([c for c in finals if convert.micros(c.open_time) in official]) == len(official) == 5
    # In progress before final, never after it; counts only grow within a bucket.
    closed_at: dict[int, int] = {}
    for index, candle in enumerate(received):
        open_time = convert.micros(candle.open_time)
        assert open_time not in closed_at, "an update after the bucket's final"
        if candle.closed:
            closed_at[open_time] = index
    progress = [c for c in received if not c.closed]
    assert progress, "in-progress updates were sent"
    for earlier, later in itertools.pairwise(progress):
        if earlier.open_time == later.open_time:
            assert later.trade_count >= earlier.trade_count


async def test_the_first_message_is_the_bucket_as_stored_before_the_stream_opened(
    served: Running, clock: ManualClock
) -> None:
    trades = make_trades(seed=7, count=40, start_us=T0 + 1_000_000, spacing_us=100_000)
    await publish(served, clock, trades)

    stream = open_candles(served)
    first = await next_candle(stream)
    stream.cancel()

    assert not first.closed
    assert first.trade_count == 40
    expected = await bucket_from_get_candles(served, T0)
    assert first == expected  # the clock is inside the bucket: GetCandles says closed: false too


async def test_a_late_trade_sends_a_corrected_final_once(served: Running, clock: ManualClock) -> None:
    trades = make_trades(seed=11, count=30, start_us=T0 + 1_000_000, spacing_us=1_000_000)
    clock.set(T0)
    stream = open_candles(served)
    await stream.initial_metadata()
    await publish(served, clock, trades[:29])
    clock.set(T0 + MINUTE_US + GRACE_US)  # the bucket closes
    got: list[md.Candle] = []
    while not got or not got[-1].closed:
        got.append(await next_candle(stream))
    final = got[-1]
    assert final.trade_count == 29 and final == await bucket_from_get_candles(served, T0)

    await publish(served, clock, trades[29:], live=False)  # late: its bucket has closed
    corrected = await next_candle(stream)
    stream.cancel()

    assert corrected.closed and convert.micros(corrected.open_time) == T0
    assert corrected.trade_count == 30
    assert corrected == await bucket_from_get_candles(served, T0)
    assert [c.closed for c in got].count(True) == 1


@pytest.mark.parametrize(
    ("timeframe", "update", "heartbeat", "field"),
    [
        (0, 1.0, 15.0, "timeframe"),
        (99, 1.0, 15.0, "timeframe"),
        (1, 0.05, 15.0, "update_interval"),
        (1, 61.0, 15.0, "update_interval"),
        (1, 1.0, 0.5, "heartbeat_interval"),
    ],
)
async def test_bad_requests_are_invalid_argument_with_bad_request(
    served: Running, timeframe: int, update: float, heartbeat: float, field: str
) -> None:
    stream = open_candles(served, update=update, heartbeat=heartbeat, timeframe=timeframe)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error_details(raised.value).field_violations


async def test_a_malformed_symbol_is_invalid_argument(served: Running) -> None:
    stream = open_candles(served, symbol="BTC USDT!")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "symbol" in error_details(raised.value).field_violations


async def test_an_unknown_symbol_streams_heartbeats_as_stream_trades_does(served: Running) -> None:
    stream = open_candles(served, symbol="NOSUCHUSDT", heartbeat=1)
    async with asyncio.timeout(30):
        message = await stream.read()
    stream.cancel()
    assert message.WhichOneof("event") == "heartbeat"
    assert message.symbol == "NOSUCHUSDT" and message.timeframe == md.TIMEFRAME_1M


async def test_streams_of_one_key_share_one_computation(served: Running, clock: ManualClock) -> None:
    clock.set(T0)
    streams = [open_candles(served) for _ in range(5)]
    for stream in streams:
        await stream.initial_metadata()
    other = open_candles(served, timeframe=md.TIMEFRAME_5M)
    await other.initial_metadata()
    assert served.app.live_candles.feeds == 2
    await publish(served, clock, make_trades(seed=3, count=10, start_us=T0 + 1_000_000, spacing_us=1000))
    firsts = [(await next_candle(stream)).SerializeToString() for stream in streams]
    assert len(set(firsts)) == 1
    for stream in [*streams, other]:
        stream.cancel()


async def test_shutdown_ends_the_stream_with_unavailable(served: Running, clock: ManualClock) -> None:
    clock.set(T0)
    stream = open_candles(served)
    await stream.initial_metadata()
    await served.bus.close()  # what App.close does first at shutdown
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with asyncio.timeout(30):
            await stream.read()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
