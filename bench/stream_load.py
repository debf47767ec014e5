"""One streaming run: N StreamTrades consumers, a fixed-rate PublishTrades publisher, and the tally.

Per run: N streams (stream i follows symbol i mod 20) over N/STREAMS_PER_CHANNEL channels of the bench
process; a publisher sends TRADES_PER_SECOND via one PublishTrades call, a batch every `tick_seconds`,
for MEASURE_SECONDS. Each trade's time is its publish wall time, so a consumer computes the
ingest-to-client latency on receipt. Before measuring, warm-up trades ("w..." ids) flow until every
stream has received one: from then on each stream must receive every trade of its symbol. Lost = trades
published for a stream's symbol that it never received, for streams that stayed open, once ingest and
deliveries have settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench.datasets import EXCHANGES, SYMBOL_NAMES
from bench.processes import CpuMeter, ServerProcess
from bench.report import percentile
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

STREAMS_PER_CHANNEL = 100
TRADES_PER_SECOND = 500
MEASURE_SECONDS = 15.0
WARMUP_TICK_SECONDS = 0.1
SUBSCRIBE_TIMEOUT_SECONDS = 60.0
DRAIN_MAX_SECONDS = 90.0
QUIET_SECONDS = 3.0
HEARTBEAT_SECONDS = 60
SYMBOLS = SYMBOL_NAMES
PublishCall = grpc.aio.StreamUnaryCall[ingest_pb.PublishTradesRequest, ingest_pb.PublishTradesResponse]
# Separate channels must not share one TCP connection (gRPC pools subchannels globally by default).
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Consumer:
    """One stream's tally."""

    symbol: str
    ready: bool = False
    received: int = 0
    error: str | None = None


@dataclass
class Tally:
    """Everything the consumers saw."""

    consumers: list[Consumer]
    latencies_us: list[int] = field(default_factory=list)
    messages: int = 0
    received: int = 0
    ready: int = 0
    last_receipt: float = 0.0
    progress: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class StreamRun:
    """What one (server, N) run measured."""

    server: str
    streams: int
    tick_seconds: float
    subscribed: int
    subscribe_seconds: float
    published: int
    publish_seconds: float
    late_ticks: int
    expected: int
    received: int
    undelivered: int
    outcome: str
    ingest_lag_seconds: float
    messages: int
    delivery_seconds: float
    latencies_us: list[int]
    cut_off: Counter[str]
    server_cpu_percent: float
    client_cpu_percent: float
    server_rss_mib: float
    client_processes: int = 1

    @property
    def lost(self) -> int | None:
        """Trades never delivered to open streams, once everything settled (None: it did not settle)."""
        return self.undelivered if self.outcome == "settled" else None

    @property
    def ingest_rate(self) -> float:
        """Trades published per second."""
        return self.published / self.publish_seconds

    @property
    def delivered_rate(self) -> float:
        """Trade deliveries per second, first publish to last receipt."""
        return self.received / self.delivery_seconds if self.delivery_seconds > 0 else math.nan

    @property
    def required_rate(self) -> float:
        """Deliveries per second needed to keep up with every subscribed stream."""
        return self.expected / self.publish_seconds

    def latency_ms(self, q: float) -> float:
        """Ingest-to-client latency percentile in ms."""
        return percentile(self.latencies_us, q) / 1000

    def figures(self) -> dict[str, object]:
        """For the results file."""
        return {
            "streams": self.streams,
            "batch_every_ms": self.tick_seconds * 1000,
            "subscribed": self.subscribed,
            "subscribe_seconds": self.subscribe_seconds,
            "published": self.published,
            "ingest_per_second": self.ingest_rate,
            "late_ticks": self.late_ticks,
            "expected_deliveries": self.expected,
            "received": self.received,
            "lost": self.lost,
            "undelivered_at_end": self.undelivered,
            "outcome": self.outcome,
            "ingest_lag_seconds": self.ingest_lag_seconds,
            "messages": self.messages,
            "delivered_per_second": self.delivered_rate,
            "required_per_second": self.required_rate,
            "latency_p50_ms": self.latency_ms(50),
            "latency_p99_ms": self.latency_ms(99),
            "latency_max_ms": max(self.latencies_us, default=0) / 1000,
            "cut_off": dict(self.cut_off),
            "server_cpu_percent": self.server_cpu_percent,
            "client_cpu_percent": self.client_cpu_percent,
            "server_rss_mib": self.server_rss_mib,
            "client_processes": self.client_processes,
        }


def _trade(seq: int, symbol: str, trade_id: str, time_us: int) -> trade_pb2.Trade:
    seconds, micros = divmod(time_us, 1_000_000)
    return trade_pb2.Trade(
        exchange=EXCHANGES[seq % 2],
        symbol=symbol,
        trade_id=trade_id,
        price=f"{100 + seq % 100}.25",
        quantity="0.015",
        side=trade_pb2.SIDE_BUY if seq % 3 else trade_pb2.SIDE_SELL,
        time=Timestamp(seconds=seconds, nanos=micros * 1000),
    )


async def consume(call: AsyncIterable[md.StreamTradesResponse], consumer: Consumer, tally: Tally) -> None:
    latencies = tally.latencies_us
    try:
        async for response in call:
            if response.WhichOneof("event") != "trades":
                continue
            now_us = time.time_ns() // 1000
            measured = 0
            for trade in response.trades.trades:
                if trade.trade_id[0] == "w":
                    if not consumer.ready:
                        consumer.ready = True
                        tally.ready += 1
                    continue
                measured += 1
                latencies.append(now_us - trade.time.seconds * 1_000_000 - trade.time.nanos // 1000)
            consumer.received += measured
            tally.received += measured
            tally.messages += 1
            tally.last_receipt = time.perf_counter()
            tally.progress.set()
    except grpc.aio.AioRpcError as error:
        consumer.error = error.code().name
        tally.progress.set()


async def wait_until(condition: Callable[[], bool], tally: Tally, deadline: float) -> None:
    """Wait for the consumers' progress until `condition` holds or `deadline` (perf_counter) passes."""
    while not condition():
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        tally.progress.clear()
        try:
            async with asyncio.timeout(min(left, 0.5)):
                await tally.progress.wait()
        except TimeoutError:
            pass


async def measure(server: ServerProcess, streams: int, tick_seconds: float) -> StreamRun:
    """Open `streams` streams, warm up, publish at the fixed rate, drain, tally; everything bounded."""
    channels = [
        grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        for _ in range(math.ceil(streams / STREAMS_PER_CHANNEL))
    ]
    ingest_channel = grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
    consumers = [Consumer(SYMBOLS[i % len(SYMBOLS)]) for i in range(streams)]
    tally = Tally(consumers)
    tasks: list[asyncio.Task[None]] = []
    try:
        for index, consumer in enumerate(consumers):
            request = md.StreamTradesRequest(symbols=[consumer.symbol])
            request.heartbeat_interval.FromSeconds(HEARTBEAT_SECONDS)
            call = md_grpc.MarketDataServiceStub(channels[index // STREAMS_PER_CHANNEL]).StreamTrades(request)
            tasks.append(asyncio.create_task(consume(call, consumer, tally)))
        publish = ingest_grpc.TradeIngestServiceStub(ingest_channel).PublishTrades(timeout=600)
        return await publish_and_tally(server, streams, tick_seconds, publish, tally)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in [*channels, ingest_channel]:
            await channel.close()


async def publish_and_tally(
    server: ServerProcess,
    streams: int,
    tick_seconds: float,
    publish: PublishCall,
    tally: Tally,
) -> StreamRun:
    consumers = tally.consumers
    subscribe_seconds = await warm_up(server, streams, publish, tally)
    subscribed = [c for c in consumers if c.ready]
    meter = CpuMeter([server])
    meter.start()
    window = await publish_window(tick_seconds, publish)
    per_symbol, seq, late, start, publish_seconds = (
        window.per_symbol,
        window.published,
        window.late_ticks,
        window.start,
        window.seconds,
    )

    # Drain. The PublishTrades answer means the server has stored (and fanned out) every batch; the
    # streams then get the rest. Waits while deliveries keep coming, up to DRAIN_MAX_SECONDS.
    await publish.done_writing()
    ingest = asyncio.ensure_future(publish)
    ingest_done: list[float] = []
    ingest.add_done_callback(lambda _: ingest_done.append(time.perf_counter()))
    expected = {id(c): per_symbol[c.symbol] for c in subscribed}

    def complete() -> bool:
        return all(c.error is not None or c.received >= expected[id(c)] for c in subscribed)

    def settled() -> bool:
        if not ingest_done:
            return False
        quiet_since = max(tally.last_receipt, ingest_done[0])
        return complete() or time.perf_counter() - quiet_since > QUIET_SECONDS

    await wait_until(settled, tally, time.perf_counter() + DRAIN_MAX_SECONDS)
    meter.stop()
    if not ingest.done():
        ingest.cancel()
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await ingest
    server.check_alive()
    open_streams = [c for c in subscribed if c.error is None]
    undelivered = sum(max(0, expected[id(c)] - c.received) for c in open_streams)
    if not ingest_done:
        outcome = "ingest unfinished"
    elif undelivered and time.perf_counter() - tally.last_receipt < QUIET_SECONDS:
        outcome = "backlog at cutoff"
    else:
        outcome = "settled"
    ingest_lag = ingest_done[0] - start - publish_seconds if ingest_done else math.nan
    cut_off = Counter(c.error for c in consumers if c.error is not None)
    return StreamRun(
        server=server.name,
        streams=streams,
        tick_seconds=tick_seconds,
        subscribed=len(subscribed),
        subscribe_seconds=subscribe_seconds,
        published=seq,
        publish_seconds=publish_seconds,
        late_ticks=late,
        expected=sum(expected.values()),
        received=tally.received,
        undelivered=undelivered,
        outcome=outcome,
        ingest_lag_seconds=ingest_lag,
        messages=tally.messages,
        delivery_seconds=max(tally.last_receipt - start, publish_seconds),
        latencies_us=tally.latencies_us,
        cut_off=cut_off,
        server_cpu_percent=meter.server_percent[0],
        client_cpu_percent=meter.client_percent,
        server_rss_mib=server.rss_mib(),
    )


async def warm_up(server: ServerProcess, streams: int, publish: PublishCall, tally: Tally) -> float:
    """Warm-up trades until `tally.ready` counts every stream (or the timeout); the seconds it took."""
    began = time.perf_counter()
    deadline = began + SUBSCRIBE_TIMEOUT_SECONDS
    warm = 0
    while tally.ready < streams and time.perf_counter() < deadline:
        now_us = time.time_ns() // 1000
        batch = [_trade(warm + k, symbol, f"w{warm + k}", now_us) for k, symbol in enumerate(SYMBOLS)]
        warm += len(batch)
        await publish.write(ingest_pb.PublishTradesRequest(trades=batch))
        await wait_until(lambda: tally.ready >= streams, tally, time.perf_counter() + WARMUP_TICK_SECONDS)
        server.check_alive()
    return time.perf_counter() - began


@dataclass
class Window:
    """What the measured publishing window sent."""

    per_symbol: Counter[str]
    published: int
    late_ticks: int
    start: float
    seconds: float


async def publish_window(tick_seconds: float, publish: PublishCall) -> Window:
    """TRADES_PER_SECOND for MEASURE_SECONDS, a batch every `tick_seconds` on an absolute schedule."""
    per_tick = round(TRADES_PER_SECOND * tick_seconds)
    ticks = round(MEASURE_SECONDS / tick_seconds)
    per_symbol: Counter[str] = Counter()
    late = 0
    seq = 0
    start = time.perf_counter()
    for tick in range(ticks):
        due = start + tick * tick_seconds
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > tick_seconds:
            late += 1
        now_us = time.time_ns() // 1000
        batch = []
        for _ in range(per_tick):
            symbol = SYMBOLS[seq % len(SYMBOLS)]
            batch.append(_trade(seq, symbol, str(seq), now_us))
            per_symbol[symbol] += 1
            seq += 1
        await publish.write(ingest_pb.PublishTradesRequest(trades=batch))
    # The window ends one tick after the last batch, so the rates are per the whole window.
    await asyncio.sleep(max(0.0, start + ticks * tick_seconds - time.perf_counter()))
    return Window(per_symbol, seq, late, start, time.perf_counter() - start)
