"""Section `resume` (issue 11): what resuming a StreamTrades costs, against opening a fresh stream.

For each bus (in-process, and Redis with two servers: the client resumes on the other one) and each number
of trades missed while away: a stream takes a resume token and goes away; the trades are ingested; then
(a) a fresh stream (no token) is opened and a marker trade published: time until the marker arrives,
the baseline of "back to live"; (b) a stream resumes with the token and a marker is published right away:
time until the marker arrives (everything missed came first), and trades replayed per second.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cache_workers import redis_server
from bench.datasets import Datasets
from bench.processes import ServerProcess, wadm_server
from bench.report import SectionResult, Table, ms, ratio, times, whole
from wadm_client import RawWadmClient, make_trade
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

MISSED = (1_000, 10_000, 50_000)
BATCH = 1_000
SYMBOL = "BTCUSDT"
T0 = 1_723_161_600_000_000
TIMEOUT_SECONDS = 120.0


def _trades(start: int, count: int) -> list[Any]:
    return [
        make_trade(
            exchange="binance",
            symbol=SYMBOL,
            trade_id=start + i,
            price=f"{60_000 + i % 100}.5",
            quantity="0.01",
            side="buy",
            time=T0 + start + i,
        )
        for i in range(count)
    ]


def _request(token: str = "") -> md.StreamTradesRequest:
    request = md.StreamTradesRequest(symbols=[SYMBOL], resume_token=token)
    request.heartbeat_interval.FromSeconds(1)
    return request


async def _until(stream: Any, trade_id: str) -> tuple[int, float]:
    """Read until `trade_id` arrives: (trades received, when the last missed trade arrived)."""
    received, last_missed = 0, time.perf_counter()
    async with asyncio.timeout(TIMEOUT_SECONDS):
        while True:
            event = await stream.read()
            for trade in event.trades.trades:
                if trade.trade_id == trade_id:
                    return received, last_missed
                received += 1
                last_missed = time.perf_counter()


async def _case(origin: ServerProcess, resumer: ServerProcess, missed: int, first_id: int) -> dict[str, float]:
    async with RawWadmClient.connect(origin.target) as on_origin, RawWadmClient.connect(resumer.target) as client:
        away = on_origin.market.StreamTrades(_request())
        token = (await away.read()).resume_token  # the heartbeat's: everything up to now
        away.cancel()
        for start in range(first_id, first_id + missed, BATCH):
            await client.publish_trades([_trades(start, min(BATCH, first_id + missed - start))])
        marker = first_id + missed

        fresh = client.market.StreamTrades(_request())
        began = time.perf_counter()
        await fresh.initial_metadata()
        await client.publish_trades([_trades(marker, 1)])
        await _until(fresh, str(marker))
        fresh_seconds = time.perf_counter() - began
        fresh.cancel()

        resumed = client.market.StreamTrades(_request(token))
        began = time.perf_counter()
        await resumed.initial_metadata()
        await client.publish_trades([_trades(marker + 1, 1)])
        replayed, last = await _until(resumed, str(marker + 1))
        live_seconds = time.perf_counter() - began
        resumed.cancel()
    return {
        "missed": missed,
        "replayed": replayed,
        "fresh_to_live_seconds": fresh_seconds,
        "resume_to_live_seconds": live_seconds,
        "replayed_per_second": replayed / max(last - began, 1e-9),
    }


async def run(data: Datasets) -> SectionResult:
    del data
    figures: dict[str, Any] = {}
    table = Table(
        "StreamTrades resume: back to live after missing N trades, against a fresh stream (no token)",
        ["bus", "missed", "replayed", "fresh -> live", "resume -> live", "ratio", "replayed/s"],
        notes=[
            "fresh: open a stream without a token, publish a marker, until it arrives (misses the N trades)",
            "resume: open with the token taken before the N trades were ingested: all come first, then the marker",
            "redis: the token is from another server process; the resuming one replays from the Redis stream",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="wadm-bench-resume-") as directory:
        root = Path(directory)
        async with wadm_server("memory", root / "m.duckdb") as memory:
            rows = []
            for index, missed in enumerate(MISSED):
                rows.append(await _case(memory, memory, missed, 10_000_000 * (index + 1)))
            figures["memory"] = rows
        async with redis_server() as url:
            env = {"WADM_REDIS_URL": url, "WADM_PAGE_TOKEN_KEY": "bench-resume"}
            async with (
                wadm_server("a", root / "a.duckdb", env) as a,
                wadm_server("b", root / "b.duckdb", env) as b,
            ):
                rows = []
                for index, missed in enumerate(MISSED):
                    rows.append(await _case(a, b, missed, 10_000_000 * (index + 1)))
                figures["redis"] = rows
    for bus in ("memory", "redis"):
        for row in figures[bus]:
            table.add(
                bus,
                whole(row["missed"]),
                whole(row["replayed"]),
                ms(row["fresh_to_live_seconds"]),
                ms(row["resume_to_live_seconds"]),
                times(ratio(row["resume_to_live_seconds"], row["fresh_to_live_seconds"])),
                whole(row["replayed_per_second"]),
            )
    return SectionResult("resume", [table], figures)
