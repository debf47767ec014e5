"""Section `abuse` (issue 10): one client floods the server with FLOOD concurrent uncached GetCandles(1m,
limit=1000, fill_gaps) of distinct ranges while a victim, on its own connection, calls a cached GetCandles
and ListSymbols in a loop. Measured: the victim's p50/p99/max, the server's peak RSS against its idle RSS,
and how the flood's calls ended. Baselines in the same run: the victim with no flood, and the same flood
against the server with load shedding off (WADM_MAX_STORE_QUERIES=0, the behaviour before issue 10).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc

from bench.datasets import Datasets
from bench.processes import ServerProcess, wadm_server
from bench.report import SectionResult, Table, ms, percentile, ratio, times
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

DATASET = "100k"  # the flood's cost is the 1,000 candles each call builds (fill_gaps), not the history
FLOOD = 1000
FLOOD_SECONDS = 8.0  # the flood is sustained: each of its FLOOD callers fires again as soon as a call ends
QUIET_VICTIM_CALLS = 200
MINUTE_US = 60_000_000
CALL_TIMEOUT_SECONDS = 60.0
RSS_SAMPLE_SECONDS = 0.05
SYMBOL = "BTCUSDT"
VARIANTS = (
    ("shedding on (defaults)", {}),
    ("shedding on, 100 streams/connection", {"WADM_GRPC_MAX_CONCURRENT_STREAMS": "100"}),
    ("shedding on, 32 streams/connection", {"WADM_GRPC_MAX_CONCURRENT_STREAMS": "32"}),
    ("shedding off (WADM_MAX_STORE_QUERIES=0)", {"WADM_MAX_STORE_QUERIES": "0"}),
)
CACHED = md.GetCandlesRequest(symbol=SYMBOL, timeframe=md.TIMEFRAME_1M, limit=100)


def _flood_request(start_us: int, index: int) -> md.GetCandlesRequest:
    request = md.GetCandlesRequest(symbol=SYMBOL, timeframe=md.TIMEFRAME_1M, limit=1000, fill_gaps=True)
    request.start_time.FromMicroseconds(start_us + index * MINUTE_US)
    return request


async def _victim_round(stub: md_grpc.MarketDataServiceStub, latencies: dict[str, list[float]]) -> None:
    began = time.perf_counter()
    await stub.GetCandles(CACHED, timeout=CALL_TIMEOUT_SECONDS)
    middle = time.perf_counter()
    await stub.ListSymbols(md.ListSymbolsRequest(), timeout=CALL_TIMEOUT_SECONDS)
    latencies["GetCandles (cached)"].append(middle - began)
    latencies["ListSymbols"].append(time.perf_counter() - middle)


async def _flood_and_watch(server: ServerProcess, start_us: int) -> dict[str, Any]:
    # Two clients: each channel its own connection (channels to one target share one by default).
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    async with (
        grpc.aio.insecure_channel(server.target, options=own_connection) as flood_channel,
        grpc.aio.insecure_channel(server.target, options=own_connection) as victim_channel,
    ):
        victim = md_grpc.MarketDataServiceStub(victim_channel)
        flooder = md_grpc.MarketDataServiceStub(flood_channel)
        quiet: dict[str, list[float]] = {"GetCandles (cached)": [], "ListSymbols": []}
        for _ in range(QUIET_VICTIM_CALLS):  # warms the cache, then measures the victim alone
            await _victim_round(victim, quiet)
        idle_rss = server.rss_mib()
        codes: Counter[str] = Counter()

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

        loaded: dict[str, list[float]] = {"GetCandles (cached)": [], "ListSymbols": []}
        victim_errors: Counter[str] = Counter()
        peak_rss = idle_rss
        began = time.perf_counter()
        flood = asyncio.gather(*(flood_one() for _ in range(FLOOD)))

        async def watch_rss() -> None:
            nonlocal peak_rss
            while not flood.done():
                peak_rss = max(peak_rss, server.rss_mib())
                await asyncio.sleep(RSS_SAMPLE_SECONDS)

        watcher = asyncio.create_task(watch_rss())
        while not flood.done():
            try:
                await _victim_round(victim, loaded)
            except grpc.aio.AioRpcError as error:
                victim_errors[error.code().name] += 1
        await flood
        flood_seconds = time.perf_counter() - began
        await watcher
        return {
            "quiet": quiet,
            "loaded": loaded,
            "victim_errors": dict(victim_errors),
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
        ["server", "call", "alone p50", "alone p99", "flood p50", "flood p99", "flood max", "victim calls", "errors"],
    )
    memory = Table(
        "Server memory and the flood's outcome",
        ["server", "idle RSS MiB", "peak RSS MiB", "peak/idle", "flood s", "flood calls by status"],
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
            latency.add(
                name,
                call,
                ms(percentile(quiet, 50)),
                ms(percentile(quiet, 99)),
                ms(percentile(loaded, 50)),
                ms(percentile(loaded, 99)),
                ms(max(loaded, default=float("nan"))),
                len(loaded),
                ", ".join(f"{code} {n}" for code, n in measured["victim_errors"].items()) or "0",
            )
        codes = ", ".join(f"{code} {count}" for code, count in sorted(measured["flood_codes"].items()))
        memory.add(
            name,
            f"{measured['idle_rss_mib']:.0f}",
            f"{measured['peak_rss_mib']:.0f}",
            times(ratio(measured["peak_rss_mib"], measured["idle_rss_mib"])),
            f"{measured['flood_seconds']:.1f}",
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
