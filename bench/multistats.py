"""Section `multistats` (issue 3): GetMultiStats(20 symbols, 24h) latency at 100k vs 10M stored trades."""

from __future__ import annotations

from collections.abc import Hashable

from bench.datasets import SYMBOL_NAMES, Datasets
from bench.interleave import Call, dataset_servers, interleaved_rounds
from bench.report import SectionResult, Table, ms, ratio, times
from wadm_client import RawWadmClient
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md

DATASETS = ("100k", "10m")
WARMUP_ROUNDS = 5
ROUNDS = 50
MAX_SECONDS = 60.0


def _request() -> md.GetMultiStatsRequest:
    return md.GetMultiStatsRequest(symbols=SYMBOL_NAMES, window=md.STATS_WINDOW_24H)


async def _trades_in_window(client: RawWadmClient) -> tuple[int, int]:
    """(symbols with stats, trades in their windows) of one answer."""
    response = await client.market.GetMultiStats(_request(), timeout=client.timeout_seconds)
    with_stats = [r.stats for r in response.results if r.WhichOneof("outcome") == "stats"]
    return len(with_stats), sum(s.trade_count for s in with_stats)


def _call(client: RawWadmClient) -> Call:
    request = _request()

    async def call() -> int:
        response = await client.market.GetMultiStats(request, timeout=client.timeout_seconds)
        return sum(r.WhichOneof("outcome") == "stats" for r in response.results)

    return call


async def run(data: Datasets) -> SectionResult:
    """Both datasets served at once; the same client process calls them in interleaved rounds."""
    async with dataset_servers(data, DATASETS) as served:
        calls: dict[Hashable, Call] = {s.dataset.name: _call(s.client) for s in served}
        samples, rounds = await interleaved_rounds(
            calls, warmup_rounds=WARMUP_ROUNDS, rounds=ROUNDS, max_seconds=MAX_SECONDS
        )
        windows = {s.dataset.name: await _trades_in_window(s.client) for s in served}
    small, large = DATASETS
    table = Table(
        f"GetMultiStats({len(SYMBOL_NAMES)} symbols, 24h): latency in ms, {rounds} interleaved rounds",
        ["dataset", "symbols with stats", "trades in window", "p50", "p90", f"p50 vs {small}"],
    )
    figures: dict[str, object] = {"rounds": rounds, "symbols": len(SYMBOL_NAMES)}
    for name in DATASETS:
        found, trades = windows[name]
        s = samples[name]
        vs = ratio(s.median, samples[small].median)
        table.add(name, f"{found}/{len(SYMBOL_NAMES)}", f"{trades:,}", ms(s.median), ms(s.p90), times(vs))
        figures[name] = {
            "p50_ms": s.median * 1000,
            "p90_ms": s.p90 * 1000,
            "symbols_with_stats": found,
            "trades_in_window": trades,
        }
    figures["ratio_p50"] = ratio(samples[large].median, samples[small].median)
    table.notes.append("servers run with WADM_CACHE=false: every call reads the store")
    table.notes.append("the server's clock is real time; each dataset ends when it was built (<= 6 h before the run)")
    return SectionResult("multistats", [table], figures)
