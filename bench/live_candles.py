"""Section `live-candles` (issue 11): 1,000 StreamCandles subscribers while trades are ingested at a fixed rate.

The same load as `streaming` (500 trades/s in 50 ms batches over 20 symbols, one PublishTrades call);
stream i follows symbol i mod 20 at 1m with the shortest update interval (100 ms). The run starts 8 s
before a minute boundary, so every stream must receive the final of the minute that closes (lost finals
= streams x closed buckets - finals received; wrong = finals whose trade count differs from what was
published). Latency = from a batch's publish to the first update of a stream whose trade count includes
it: the update interval (100 ms) bounds how often a stream may be told, so it is part of the figure.
Beside it, the empty servicer's StreamTrades at the same N (bench/empty_server.py): the grpc.aio ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.datasets import Datasets
from bench.processes import CpuMeter, ServerProcess, empty_server, wadm_server
from bench.report import SectionResult, Table, percentile, ratio, times
from bench.stream_load import CHANNEL_OPTIONS, STREAMS_PER_CHANNEL, SYMBOLS, TRADES_PER_SECOND, measure
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

STREAMS = 1_000
TICK_SECONDS = 0.05
MEASURE_SECONDS = 15.0
BEFORE_BOUNDARY_SECONDS = 8.0
UPDATE_SECONDS = 0.1
MINUTE_US = 60_000_000
FINALS_WAIT_SECONDS = 30.0


@dataclass
class Published:
    """Per (symbol, bucket): [(trade count after the batch, publish time)], and totals per bucket."""

    batches: dict[tuple[str, int], list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Tally:
    latencies_us: list[int] = field(default_factory=list)
    finals: dict[tuple[int, int], int] = field(default_factory=dict)  # (stream, bucket) -> trade count
    updates: int = 0
    errors: list[str] = field(default_factory=list)
    final_came: asyncio.Event = field(default_factory=asyncio.Event)


async def _consume(
    index: int,
    call: grpc.aio.UnaryStreamCall[md.StreamCandlesRequest, md.StreamCandlesResponse],
    symbol: str,
    published: Published,
    tally: Tally,
) -> None:
    told: dict[int, int] = defaultdict(int)  # bucket -> batches already counted as delivered
    try:
        async for message in call:
            if message.WhichOneof("event") != "candle":
                continue
            now = time.perf_counter()
            candle = message.candle
            bucket = candle.open_time.ToMicroseconds()
            tally.updates += 1
            batches = published.batches.get((symbol, bucket), [])
            while told[bucket] < len(batches) and batches[told[bucket]][0] <= candle.trade_count:
                tally.latencies_us.append(int((now - batches[told[bucket]][1]) * 1e6))
                told[bucket] += 1
            if candle.closed:
                tally.finals[(index, bucket)] = candle.trade_count
                tally.final_came.set()
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            tally.errors.append(error.code().name)


def _trade(symbol: str, seq: int, time_us: int) -> trade_pb2.Trade:
    trade = trade_pb2.Trade(
        exchange="binance", symbol=symbol, trade_id=str(seq), price=f"{100 + seq % 50}.25", quantity="0.125"
    )
    trade.side = trade_pb2.SIDE_BUY if seq % 2 else trade_pb2.SIDE_SELL
    trade.time.FromMicroseconds(time_us)
    return trade


async def _candles_run(server: ServerProcess) -> dict[str, float | int | str]:
    published, tally = Published(), Tally()
    channels = [
        grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        for _ in range(-(-STREAMS // STREAMS_PER_CHANNEL))
    ]
    ingest_channel = grpc.aio.insecure_channel(server.target)
    calls = []
    consumers = []
    try:
        for index in range(STREAMS):
            symbol = SYMBOLS[index % len(SYMBOLS)]
            request = md.StreamCandlesRequest(symbol=symbol, timeframe=md.TIMEFRAME_1M)
            request.update_interval.FromNanoseconds(int(UPDATE_SECONDS * 1e9))
            stub = md_grpc.MarketDataServiceStub(channels[index // STREAMS_PER_CHANNEL])
            call = stub.StreamCandles(request)
            calls.append(call)
            consumers.append(asyncio.ensure_future(_consume(index, call, symbol, published, tally)))
        async with asyncio.timeout(120):
            for call in calls:
                await call.initial_metadata()
        # Start BEFORE_BOUNDARY_SECONDS before a minute boundary: one bucket closes mid-run.
        now_us = time.time_ns() // 1000
        start_us = now_us - now_us % MINUTE_US + MINUTE_US - int(BEFORE_BOUNDARY_SECONDS * 1e6)
        if start_us < now_us:
            start_us += MINUTE_US
        await asyncio.sleep((start_us - now_us) / 1e6)
        publish = ingest_grpc.TradeIngestServiceStub(ingest_channel).PublishTrades(timeout=600)
        per_batch = int(TRADES_PER_SECOND * TICK_SECONDS)
        meter = CpuMeter([server])
        meter.start()
        began = time.perf_counter()
        seq = 0
        ticks = int(MEASURE_SECONDS / TICK_SECONDS)
        for tick in range(ticks):
            await asyncio.sleep(max(0.0, began + tick * TICK_SECONDS - time.perf_counter()))
            time_us = time.time_ns() // 1000
            batch = []
            for _ in range(per_batch):
                seq += 1
                symbol = SYMBOLS[seq % len(SYMBOLS)]
                batch.append(_trade(symbol, seq, time_us))
                key = (symbol, time_us - time_us % MINUTE_US)
                published.counts[key] += 1
            stamp = time.perf_counter()
            for key in {(t.symbol, time_us - time_us % MINUTE_US) for t in batch}:
                published.batches[key].append((published.counts[key], stamp))
            await publish.write(ingest_pb.PublishTradesRequest(trades=batch))
        await publish.done_writing()
        await publish
        closed = sorted({bucket for _, bucket in published.counts if bucket + MINUTE_US <= time.time_ns() // 1000})
        wanted = {(i, b) for i in range(STREAMS) for b in closed}
        deadline = time.perf_counter() + FINALS_WAIT_SECONDS
        while not wanted <= set(tally.finals) and time.perf_counter() < deadline:
            tally.final_came.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.perf_counter()):
                    await tally.final_came.wait()
        meter.stop()
        got = wanted & set(tally.finals)
        wrong = sum(1 for i, b in got if tally.finals[(i, b)] != published.counts[(SYMBOLS[i % len(SYMBOLS)], b)])
        return {
            "streams": STREAMS,
            "p50_ms": percentile(tally.latencies_us, 50) / 1000,
            "p99_ms": percentile(tally.latencies_us, 99) / 1000,
            "max_ms": max(tally.latencies_us, default=0) / 1000,
            "updates": tally.updates,
            "closed_buckets": len(closed),
            "finals_expected": len(wanted),
            "finals_lost": len(wanted - got),
            "finals_wrong": wrong,
            "errors": len(tally.errors),
            "server_cpu_percent": meter.server_percent[0],
        }
    finally:
        for call in calls:
            call.cancel()
        for consumer in consumers:
            consumer.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*consumers, return_exceptions=True)
        for channel in [*channels, ingest_channel]:
            await channel.close()


async def run(data: Datasets) -> SectionResult:
    """The empty servicer's StreamTrades at 1,000 streams (the ceiling), then StreamCandles at 1,000."""
    async with empty_server("empty") as server:
        ceiling = await measure(server, STREAMS, TICK_SECONDS)
    print("  empty servicer, StreamTrades: done", flush=True)
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        async with wadm_server("wadm", Path(directory) / "candles.duckdb") as server:
            candles = await _candles_run(server)
    print("  wadm, StreamCandles: done", flush=True)
    table = Table(
        f"StreamCandles: {STREAMS:,} subscribers (1m, update_interval {UPDATE_SECONDS * 1000:.0f} ms), "
        f"{TRADES_PER_SECOND} trades/s in {TICK_SECONDS * 1000:.0f} ms batches over {len(SYMBOLS)} symbols for "
        f"{MEASURE_SECONDS:.0f} s; latency = publish to the first update that includes the batch",
        [
            "server",
            "rpc",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p50 vs empty",
            "p99 vs empty",
            "finals",
            "lost",
            "wrong",
            "server CPU",
        ],
    )
    table.add(
        "empty servicer",
        "StreamTrades",
        f"{ceiling.latency_ms(50):.1f}",
        f"{ceiling.latency_ms(99):.1f}",
        f"{max(ceiling.latencies_us, default=0) / 1000:.0f}",
        "1.00x",
        "1.00x",
        "-",
        f"{ceiling.lost}" if ceiling.lost is not None else "?",
        "-",
        f"{ceiling.server_cpu_percent:.0f}%",
    )
    table.add(
        "wadm",
        "StreamCandles",
        f"{candles['p50_ms']:.1f}",
        f"{candles['p99_ms']:.1f}",
        f"{candles['max_ms']:.0f}",
        times(ratio(float(candles["p50_ms"]), ceiling.latency_ms(50))),
        times(ratio(float(candles["p99_ms"]), ceiling.latency_ms(99))),
        f"{candles['finals_expected']:,}",
        f"{candles['finals_lost']:,}",
        f"{candles['finals_wrong']:,}",
        f"{float(candles['server_cpu_percent']):.0f}%",
    )
    table.notes += [
        "finals: streams x buckets that closed during the run; lost: never received; wrong: trade count differs",
        "StreamCandles latency includes waiting for the stream's update interval (conflation), by design",
    ]
    figures: dict[str, object] = {"empty_stream_trades": ceiling.figures(), "stream_candles": candles}
    return SectionResult("live-candles", [table], figures)
