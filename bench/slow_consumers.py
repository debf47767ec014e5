"""Section `slow-consumers` (issue 8): streams that never read, against ingest and server memory.

Three figures on the real server (a fresh, empty store each):
- ingest: PublishTrades acknowledgement latency (one call per batch) with no stream, then with STALLED
  streams open whose client never reads (a default grpc client that does not iterate: its transport
  absorbs about 4 MiB, then stops), and how many of those the server cut off;
- memory: server RSS before and after CHURN streams are opened, sent trades while their clients do not
  read, and cancelled, CHURN_ROUNDS times (RSS is noisy: read the figures as orders of magnitude).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench.datasets import Datasets
from bench.processes import ServerProcess, wadm_server
from bench.report import SectionResult, Table, percentile
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2

STALLED = 2_000
CHURN = 5_000
# Rounds of CHURN open/feed/cancel on one server: a leak grows per round, a high-water mark does not.
CHURN_ROUNDS = 3
STREAMS_PER_CHANNEL = 100
BATCH_TRADES = 200
# While the stalled streams are open: big batches, so their transports fill (~4 MiB each) within the phase.
FLOOD_TRADES = 5_000
ACK_SAMPLES = 100
# Long enough for the stalled streams' transports to fill and their stall timer to fire.
STALL_PHASE_SECONDS = 20.0
SYMBOL = "BTCUSDT"
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
SETTLE_SECONDS = 5.0


class _Publisher:
    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = ingest_grpc.TradeIngestServiceStub(self.channel)
        self.sequence = 0

    def batch(self, size: int = BATCH_TRADES) -> ingest_pb.PublishTradesRequest:
        now_us = time.time_ns() // 1000
        trades = []
        for _ in range(size):
            self.sequence += 1
            seconds, micros = divmod(now_us, 1_000_000)
            trades.append(
                trade_pb2.Trade(
                    exchange="binance",
                    symbol=SYMBOL,
                    trade_id=str(self.sequence),
                    price=f"{60000 + self.sequence % 100}.25",
                    quantity="0.015",
                    side=trade_pb2.SIDE_BUY,
                    time=Timestamp(seconds=seconds, nanos=micros * 1000),
                )
            )
        return ingest_pb.PublishTradesRequest(trades=trades)

    async def acknowledge(self, size: int = BATCH_TRADES) -> float:
        """Seconds from sending one batch to its acknowledgement."""
        began = time.perf_counter()
        call = self.stub.PublishTrades()
        await call.write(self.batch(size))
        await call.done_writing()
        await call
        return time.perf_counter() - began


def _open(
    channels: list[grpc.aio.Channel], count: int
) -> list[grpc.aio.UnaryStreamCall[md.StreamTradesRequest, md.StreamTradesResponse]]:
    request = md.StreamTradesRequest(symbols=[SYMBOL])
    request.heartbeat_interval.FromSeconds(60)
    return [
        md_grpc.MarketDataServiceStub(channels[i // STREAMS_PER_CHANNEL]).StreamTrades(request) for i in range(count)
    ]


async def _stream_stats(channel: grpc.aio.Channel) -> str:
    """live/cut-off streams as the server reports them ("-" on servers without GetStreamStats)."""
    try:
        stats = await admin_grpc.AdminServiceStub(channel).GetStreamStats(admin_pb.GetStreamStatsRequest())
    except (grpc.aio.AioRpcError, AttributeError):  # AttributeError: a commit without the RPC
        return "-"
    return f"{stats.live_streams} live, {stats.cut_off_streams} cut off"


async def _ack_p50_ms(publisher: _Publisher, samples: int) -> float:
    return percentile([await publisher.acknowledge() for _ in range(samples)], 50) * 1000


async def _ended(call: grpc.aio.UnaryStreamCall[md.StreamTradesRequest, md.StreamTradesResponse]) -> str:
    """Read what the stream's transport absorbed, then its status (bounded)."""
    try:
        async with asyncio.timeout(1.0):
            async for _ in call:
                pass
    except TimeoutError:
        return "still open"
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def _stalled(server: ServerProcess) -> dict[str, object]:
    publisher = _Publisher(server.target)
    channels = [
        grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        for _ in range(math.ceil(STALLED / STREAMS_PER_CHANNEL))
    ]
    try:
        await publisher.acknowledge()  # warm-up
        quiet = await _ack_p50_ms(publisher, ACK_SAMPLES)
        calls = _open(channels, STALLED)
        await asyncio.gather(*(call.initial_metadata() for call in calls[:1]))
        began = time.perf_counter()
        during: list[float] = []
        while time.perf_counter() - began < STALL_PHASE_SECONDS:
            during.append(await publisher.acknowledge(FLOOD_TRADES))
        after = await _ack_p50_ms(publisher, ACK_SAMPLES)
        reported = await _stream_stats(publisher.channel)
        outcomes = Counter(await asyncio.gather(*(_ended(call) for call in calls)))
        for call in calls:
            call.cancel()
        return {
            "ack_p50_ms_no_streams": quiet,
            "ack_p50_ms_while_stalled": percentile(during, 50) * 1000,
            "ack_p50_ms_after": after,
            "server_reports": reported,
            "stalled_outcomes": dict(outcomes),
            "server_rss_mib": server.rss_mib(),
        }
    finally:
        for channel in [*channels, publisher.channel]:
            await channel.close()


async def _churn(server: ServerProcess, streams: int = CHURN) -> dict[str, object]:
    publisher = _Publisher(server.target)
    channels = [
        grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        for _ in range(math.ceil(streams / STREAMS_PER_CHANNEL))
    ]
    figures: dict[str, object] = {}
    try:
        await publisher.acknowledge()
        await asyncio.sleep(SETTLE_SECONDS)
        figures["rss_mib_before"] = server.rss_mib()
        for round_ in range(1, CHURN_ROUNDS + 1):
            calls = _open(channels, streams)
            await asyncio.gather(*(call.initial_metadata() for call in calls[:1]))
            for _ in range(20):  # every stream gets trades its client does not read
                await publisher.acknowledge()
            figures[f"rss_mib_open_{round_}"] = server.rss_mib()
            for call in calls:
                call.cancel()
            await asyncio.sleep(SETTLE_SECONDS)
            figures[f"rss_mib_after_cancel_{round_}"] = server.rss_mib()
        figures["server_reports_after_cancel"] = await _stream_stats(publisher.channel)
    finally:
        for channel in channels:
            await channel.close()
    await asyncio.sleep(SETTLE_SECONDS)
    figures["rss_mib_after_disconnect"] = server.rss_mib()
    await publisher.channel.close()
    return figures


async def _open_cancel(server: ServerProcess) -> dict[str, object]:
    """CHURN streams opened and cancelled, CHURN_ROUNDS times, no trades: what the streams alone leave."""
    channels = [
        grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
        for _ in range(math.ceil(CHURN / STREAMS_PER_CHANNEL))
    ]
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        figures: dict[str, object] = {"open_cancel_rss_mib_before": server.rss_mib()}
        for round_ in range(1, CHURN_ROUNDS + 1):
            calls = _open(channels, CHURN)
            await asyncio.gather(*(call.initial_metadata() for call in calls))
            for call in calls:
                call.cancel()
            await asyncio.sleep(SETTLE_SECONDS)
            figures[f"open_cancel_rss_mib_after_{round_}"] = server.rss_mib()
    finally:
        for channel in channels:
            await channel.close()
    return figures


async def run(data: Datasets | None = None) -> SectionResult:
    """Both cases, each on its own server."""
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        async with wadm_server("wadm", Path(directory) / "stalled.duckdb") as server:
            stalled = await _stalled(server)
        async with wadm_server("wadm", Path(directory) / "churn.duckdb") as server:
            churn = await _churn(server)
        async with wadm_server("wadm", Path(directory) / "open-cancel.duckdb") as server:
            open_cancel = await _open_cancel(server)
        # The same procedure with one stream: what ingest and connections alone leave (the baseline).
        async with wadm_server("wadm", Path(directory) / "control.duckdb") as server:
            control = {f"control_{name}": value for name, value in (await _churn(server, 1)).items()}
    table = Table(
        f"Slow consumers: {STALLED:,} streams that never read; {CHURN:,} streams opened, fed and cancelled",
        ["figure", "value"],
    )
    for name, value in {**stalled, **open_cancel, **churn, **control}.items():
        table.add(name, f"{value:.1f}" if isinstance(value, float) else str(value))
    after, baseline = churn["rss_mib_after_cancel_3"], control["control_rss_mib_after_cancel_3"]
    assert isinstance(after, float) and isinstance(baseline, float)
    table.add("fed: RSS after the last round vs the one-stream baseline (target <= 1.2)", f"{after / baseline:.2f}x")
    last, idle = open_cancel[f"open_cancel_rss_mib_after_{CHURN_ROUNDS}"], open_cancel["open_cancel_rss_mib_before"]
    assert isinstance(last, float) and isinstance(idle, float)
    table.add("open/cancel: RSS after the last round vs before (target <= 1.2)", f"{last / idle:.2f}x")
    figures = {"stalled": stalled, "open_cancel": open_cancel, "churn": churn, "control": control}
    return SectionResult("slow-consumers", [table], figures)


if __name__ == "__main__":
    result = asyncio.run(run())
    for table in result.tables:
        print(table.text())
