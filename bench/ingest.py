"""Section `ingest` (issue 12): PublishTrades into the embedded store against DuckDB alone, and reads during ingest.

- throughput: MESSAGES messages of 10,000 trades through ONE PublishTrades call into an empty store (a real
  server process), against the ceiling measured beside it: DuckDB alone, INSERT OR IGNORE of the same rows
  per 10,000-row Arrow slice (tables built beforehand) into an empty file with the product's trades DDL.
  Interleaved rounds (ceiling, service, service, ceiling, ...); the best round of each is compared.
- reads during ingest: GetCandles(BTCUSDT, 1m, 500), uncached, on a copy of the 100k dataset, one call at a
  time: p99 idle, then p99 while the same messages (READ_PHASE_COPIES times, under other exchange names)
  are published to that server.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import grpc
import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

from bench.datasets import Datasets
from bench.interleave import UNCACHED
from bench.processes import wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, times, whole
from wadm_client import RawWadmClient
from wadm_grpc.domain.trade_batch import TradeColumns
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc
from wadm_grpc.pb.wadm.market.v1 import trade_pb2
from wadm_grpc.stores.duckdb import sql
from wadm_grpc.stores.duckdb.batches import columns_table

SEED = 12
TRADES_PER_MESSAGE = 10_000
MESSAGES = 30
ROUNDS = 2
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
RATE_TARGET = 150_000
CEILING_TARGET = 0.45
IDLE_CALLS = 200
# The reads phase publishes the messages this many times (under other exchange names, so all are new):
# long enough an ingest for a p99 of more than a few dozen calls.
READ_PHASE_COPIES = 3
P99_TARGET = 1.5
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 64 << 20)]


def _columns(now_us: int) -> list[TradeColumns]:
    """Seeded trades of the last hour, MESSAGES slices of TRADES_PER_MESSAGE, ids increasing per symbol."""
    rng = random.Random(SEED)
    total = MESSAGES * TRADES_PER_MESSAGE
    start_us = now_us - 3_600_000_000
    slices = []
    for first in range(0, total, TRADES_PER_MESSAGE):
        rows = range(first, first + TRADES_PER_MESSAGE)
        symbol = [SYMBOLS[i % len(SYMBOLS)] for i in rows]
        slices.append(
            TradeColumns(
                exchange=["bench"] * TRADES_PER_MESSAGE,  # ids never collide with a dataset's
                symbol=symbol,
                trade_id=[str(i // len(SYMBOLS) + 1) for i in rows],
                price=[f"{60_000 + rng.randint(-99_999, 99_999) / 100:.2f}" for _ in rows],
                quantity=[f"{rng.randint(1, 200_000) / 100_000:.5f}" for _ in rows],
                is_buy=[rng.random() < 0.5 for _ in rows],
                time_us=[start_us + i * (3_600_000_000 // total) for i in rows],
            )
        )
    return slices


def _request(columns: TradeColumns) -> ingest_pb.PublishTradesRequest:
    trades = []
    for e, s, i, p, q, buy, t in columns.rows():
        side = trade_pb2.SIDE_BUY if buy else trade_pb2.SIDE_SELL
        when = Timestamp(seconds=t // 1_000_000, nanos=t % 1_000_000 * 1000)
        trades.append(trade_pb2.Trade(exchange=e, symbol=s, trade_id=i, price=p, quantity=q, side=side, time=when))
    return ingest_pb.PublishTradesRequest(trades=trades)


def _ceiling(tables: list[pa.Table], path: Path) -> float:
    """DuckDB alone: seconds to INSERT OR IGNORE every slice into an empty trades table."""
    connection = duckdb.connect(str(path))
    try:
        connection.execute(sql.TRADES_DDL)
        started = time.perf_counter()
        for table in tables:
            connection.register("incoming", table)
            connection.execute("INSERT OR IGNORE INTO trades SELECT * FROM incoming")
            connection.unregister("incoming")
        return time.perf_counter() - started
    finally:
        connection.close()


async def _publish(target: str, requests: list[ingest_pb.PublishTradesRequest]) -> float:
    """Seconds for one PublishTrades call carrying every request (checked: all accepted)."""
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = ingest_grpc.TradeIngestServiceStub(channel)
        started = time.perf_counter()
        response = await stub.PublishTrades(iter(requests), timeout=600)
        elapsed = time.perf_counter() - started
    expected = sum(len(r.trades) for r in requests)
    if response.accepted_count + response.duplicate_count != expected:
        raise RuntimeError(f"PublishTrades stored {response.accepted_count} of {expected} trades")
    return elapsed


async def _service(requests: list[ingest_pb.PublishTradesRequest], path: Path) -> float:
    async with wadm_server("wadm-ingest", path, UNCACHED) as server:
        return await _publish(server.target, requests)


async def _candle_latencies(
    client: RawWadmClient, *, calls: int | None = None, until: asyncio.Future[float] | None = None
) -> list[float]:
    latencies: list[float] = []
    while (calls is not None and len(latencies) < calls) or (until is not None and not until.done()):
        started = time.perf_counter()
        await client.get_candles("BTCUSDT", "1m", limit=500)
        latencies.append(time.perf_counter() - started)
    return latencies


async def _reads_during_ingest(
    data: Datasets, requests: list[ingest_pb.PublishTradesRequest], scratch: Path
) -> tuple[list[float], list[float], float]:
    dataset = await data.get("100k")
    path = scratch / "reads.duckdb"
    shutil.copyfile(dataset.path, path)
    async with (
        wadm_server("wadm-ingest-reads", path, UNCACHED) as server,
        RawWadmClient.connect(server.target, timeout_seconds=60) as client,
    ):
        await _candle_latencies(client, calls=20)  # warm-up
        idle = await _candle_latencies(client, calls=IDLE_CALLS)
        publishing = asyncio.ensure_future(_publish(server.target, requests))
        busy = await _candle_latencies(client, until=publishing)
        return idle, busy, await publishing


async def run(data: Datasets) -> SectionResult:
    """Rounds of ceiling and service, interleaved; then reads idle and during ingest."""
    columns = _columns(time.time_ns() // 1000)
    tables = [columns_table(c) for c in columns]
    requests = [_request(c) for c in columns]
    total = MESSAGES * TRADES_PER_MESSAGE
    ceiling_runs: list[float] = []
    service_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wadm-bench-ingest-") as scratch:
        for index in range(ROUNDS):
            order = ("ceiling", "service") if index % 2 == 0 else ("service", "ceiling")
            for what in order:
                path = Path(scratch) / f"{what}-{index}.duckdb"
                if what == "ceiling":
                    ceiling_runs.append(await asyncio.to_thread(_ceiling, tables, path))
                else:
                    service_runs.append(await _service(requests, path))
        copies = [
            _request(replace(c, exchange=[f"bench-{copy}"] * len(c.exchange)))
            for copy in range(READ_PHASE_COPIES)
            for c in columns
        ]
        idle, busy, busy_publish = await _reads_during_ingest(data, copies, Path(scratch))
    ceiling_rate, service_rate = total / min(ceiling_runs), total / min(service_runs)
    share = ratio(service_rate, ceiling_rate)
    rates = Table(
        f"PublishTrades into an empty embedded store: {MESSAGES} messages of {TRADES_PER_MESSAGE:,} trades, one call, "
        f"best of {ROUNDS} interleaved rounds",
        ["what", "trades/s", "runs (s)", "target"],
    )
    rates.add("DuckDB alone (ceiling)", whole(ceiling_rate), " ".join(f"{s:.2f}" for s in ceiling_runs), "-")
    rates.add(
        "PublishTrades (service)",
        whole(service_rate),
        " ".join(f"{s:.2f}" for s in service_runs),
        f">= {RATE_TARGET:,}: {'yes' if service_rate >= RATE_TARGET else 'NO'}",
    )
    rates.add(
        "service / ceiling", times(share), "", f">= {CEILING_TARGET}x: {'yes' if share >= CEILING_TARGET else 'NO'}"
    )
    rates.notes.append(
        "ceiling: INSERT OR IGNORE per 10,000-row Arrow slice (built beforehand) into the product's trades table"
    )
    idle_p99, busy_p99 = percentile(idle, 99), percentile(busy, 99)
    p99_ratio = ratio(busy_p99, idle_p99)
    reads = Table(
        "GetCandles(BTCUSDT, 1m, 500), uncached, 100k dataset: idle vs while PublishTrades runs on the same server",
        ["phase", "calls", "p50 ms", "p99 ms", "ratio p50", "ratio p99", f"p99 <= {P99_TARGET}x"],
    )
    reads.add("idle", len(idle), ms(percentile(idle, 50)), ms(idle_p99), "", "", "")
    reads.add(
        "during ingest",
        len(busy),
        ms(percentile(busy, 50)),
        ms(busy_p99),
        times(ratio(percentile(busy, 50), percentile(idle, 50))),
        times(p99_ratio),
        "yes" if p99_ratio <= P99_TARGET else "NO",
    )
    reads.notes.append(f"ingest meanwhile: {whole(total * READ_PHASE_COPIES / busy_publish)} trades/s")
    figures = {
        "trades": total,
        "ceiling_per_second": ceiling_rate,
        "service_per_second": service_rate,
        "service_over_ceiling": share,
        "ceiling_seconds": ceiling_runs,
        "service_seconds": service_runs,
        "candles_idle_p99_ms": idle_p99 * 1000,
        "candles_ingest_p99_ms": busy_p99 * 1000,
        "candles_p99_ratio": p99_ratio,
        "candles_p50_ratio": ratio(percentile(busy, 50), percentile(idle, 50)),
        "ingest_during_reads_per_second": total * READ_PHASE_COPIES / busy_publish,
    }
    return SectionResult("ingest", [rates, reads], figures)
