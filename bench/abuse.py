"""Section `abuse` (issue 10): one client floods the server with FLOOD concurrent uncached GetCandles(1m,
limit=1000, fill_gaps) of distinct ranges while a victim, on its own connection and in its own process
(bench/abuse_victim.py), calls a cached GetCandles and ListSymbols in a loop. Measured: the victim's
p50/p99/max beside the targets, the server's peak RSS against its idle RSS, and how the flood's calls ended
(shed = UNAVAILABLE). Variants in the same run: the defaults; cache-miss loads on the server's loop
(WADM_LOADS_THREAD=false); that with 1,000 calls per connection (the settings before the victim fix); and
load shedding off as well (WADM_MAX_STORE_QUERIES=0, the behaviour before issue 10).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import grpc

from bench.datasets import Datasets
from bench.processes import ROOT, ServerProcess, wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, times
from wadm_grpc.api.grpc.server import DEFAULT_MAX_CONCURRENT_STREAMS
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

DATASET = "100k"  # the flood's cost is the 1,000 candles each call builds (fill_gaps), not the history
FLOOD = 1000
FLOOD_SECONDS = 8.0  # the flood is sustained: each of its FLOOD callers fires again as soon as a call ends
MINUTE_US = 60_000_000
CALL_TIMEOUT_SECONDS = 60.0
RSS_SAMPLE_SECONDS = 0.05
SYMBOL = "BTCUSDT"
DEFAULTS = {"WADM_GRPC_MAX_CONCURRENT_STREAMS": str(DEFAULT_MAX_CONCURRENT_STREAMS)}  # bench servers have 1000
BEFORE = {"WADM_GRPC_MAX_CONCURRENT_STREAMS": "1000", "WADM_LOADS_THREAD": "false"}
VARIANTS = (
    (f"defaults ({DEFAULT_MAX_CONCURRENT_STREAMS} calls/connection, loads thread)", DEFAULTS),
    ("loads on the server's loop", DEFAULTS | {"WADM_LOADS_THREAD": "false"}),
    ("1000 calls/connection, loads on the loop", BEFORE),
    ("shedding off too (before issue 10)", BEFORE | {"WADM_MAX_STORE_QUERIES": "0"}),
)
TARGET_P99_MS = 50.0
TARGET_RSS_RATIO = 2.0


def _flood_request(start_us: int, index: int) -> md.GetCandlesRequest:
    request = md.GetCandlesRequest(symbol=SYMBOL, timeframe=md.TIMEFRAME_1M, limit=1000, fill_gaps=True)
    request.start_time.FromMicroseconds(start_us + index * MINUTE_US)
    return request


async def _victim_line(victim: asyncio.subprocess.Process) -> dict[str, Any]:
    assert victim.stdout is not None
    line = await victim.stdout.readline()
    if not line:
        raise RuntimeError(f"the victim process ended ({await victim.wait()})")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


async def _flood_and_watch(server: ServerProcess, start_us: int) -> dict[str, Any]:
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.abuse_victim",
        server.target,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=16 << 20,  # one JSON line of every latency: long when the victim gets many calls through
    )
    assert victim.stdin is not None
    try:
        quiet = (await _victim_line(victim))["quiet"]
        idle_rss = server.rss_mib()
        codes: Counter[str] = Counter()
        # Its own connection (channels to one target share one by default).
        async with grpc.aio.insecure_channel(
            server.target, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as flood_channel:
            flooder = md_grpc.MarketDataServiceStub(flood_channel)
            await flooder.ListSymbols(md.ListSymbolsRequest())  # connected, the server's settings known
            stop_at = time.perf_counter() + FLOOD_SECONDS
            fired = 0

            async def flood_one() -> None:
                nonlocal fired
                while time.perf_counter() < stop_at:
                    fired += 1  # a distinct range each call: never cached
                    try:
                        await flooder.GetCandles(_flood_request(start_us, fired), timeout=CALL_TIMEOUT_SECONDS)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as error:
                        codes[error.code().name] += 1

            peak_rss = idle_rss
            victim.stdin.write(b"go\n")
            await victim.stdin.drain()
            began = time.perf_counter()
            flood = asyncio.gather(*(flood_one() for _ in range(FLOOD)))

            async def watch_rss() -> None:
                nonlocal peak_rss
                while not flood.done():
                    peak_rss = max(peak_rss, server.rss_mib())
                    await asyncio.sleep(RSS_SAMPLE_SECONDS)

            watcher = asyncio.create_task(watch_rss())
            await flood
            flood_seconds = time.perf_counter() - began
            await watcher
        victim.stdin.write(b"stop\n")
        await victim.stdin.drain()
        loaded = await _victim_line(victim)
        await victim.wait()
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
    return {
        "quiet": quiet,
        "loaded": loaded["loaded"],
        "victim_errors": loaded["errors"],
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": peak_rss,
        "flood_codes": dict(codes),
        "flood_seconds": flood_seconds,
    }


async def run(data: Datasets) -> SectionResult:
    """Run the section."""
    dataset = await data.get(DATASET)
    start_us = dataset.end_us - 400 * 86_400_000_000  # distinct, partly overlapping 1,000-minute ranges
    latency = Table(
        f"Victim latency (ms) while one client keeps {FLOOD:,} uncached GetCandles(1m, 1000, fill_gaps) in flight "
        f"for {FLOOD_SECONDS:.0f} s",
        [
            "server",
            "call",
            "alone p50",
            "alone p99",
            "flood p50",
            "flood p99",
            f"p99 < {TARGET_P99_MS:.0f}",
            "flood max",
            "victim calls",
            "errors",
        ],
    )
    memory = Table(
        "Server memory and the flood's outcome",
        [
            "server",
            "idle RSS MiB",
            "peak RSS MiB",
            "peak/idle",
            f"< {TARGET_RSS_RATIO:.0f}x",
            "flood s",
            "shed",
            "flood calls by status",
        ],
        notes=[
            "targets (issue 10): victim p99 < 50 ms and peak RSS < 2x idle during the flood, with shedding on",
            "one machine shared with other engineers' work: figures are noisy; compare rows of the same run",
        ],
    )
    figures: dict[str, Any] = {}
    for name, env in VARIANTS:
        async with wadm_server(f"wadm-abuse-{len(figures)}", dataset.path, env) as server:
            measured = await _flood_and_watch(server, start_us)
            server.check_alive()
        figures[name] = _figures(measured)
        for call in ("GetCandles (cached)", "ListSymbols"):
            quiet, loaded = measured["quiet"][call], measured["loaded"][call]
            p99 = percentile(loaded, 99)
            latency.add(
                name,
                call,
                ms(percentile(quiet, 50)),
                ms(percentile(quiet, 99)),
                ms(percentile(loaded, 50)),
                ms(p99),
                "yes" if p99 * 1000 < TARGET_P99_MS else "NO",
                ms(max(loaded, default=float("nan"))),
                len(loaded),
                ", ".join(f"{code} {n}" for code, n in measured["victim_errors"].items()) or "0",
            )
        codes = ", ".join(f"{code} {count}" for code, count in sorted(measured["flood_codes"].items()))
        rss_ratio = ratio(measured["peak_rss_mib"], measured["idle_rss_mib"])
        memory.add(
            name,
            f"{measured['idle_rss_mib']:.0f}",
            f"{measured['peak_rss_mib']:.0f}",
            times(rss_ratio),
            "yes" if rss_ratio < TARGET_RSS_RATIO else "NO",
            f"{measured['flood_seconds']:.1f}",
            f"{measured['flood_codes'].get('UNAVAILABLE', 0):,}",
            codes,
        )
    return SectionResult(name="abuse", tables=[latency, memory], figures=figures)


def _figures(measured: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: measured[key] for key in ("victim_errors", "idle_rss_mib", "peak_rss_mib")}
    out["flood_codes"] = measured["flood_codes"]
    out["flood_seconds"] = measured["flood_seconds"]
    for phase in ("quiet", "loaded"):
        for call, values in measured[phase].items():
            out[f"{phase} {call} p50_ms"] = percentile(values, 50) * 1000
            out[f"{phase} {call} p99_ms"] = percentile(values, 99) * 1000
    return out
