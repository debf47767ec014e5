"""Section `candles` (issue 2): GetCandles(BTCUSDT, limit 500) latency at 100k vs 10M stored trades.

The store is meant to cost what the candles returned cost, not the history underneath: the ratio
10M/100k of the median latency should stay <= TARGET_RATIO for every timeframe.
"""

from __future__ import annotations

from collections.abc import Hashable

from bench.datasets import Datasets
from bench.interleave import Call, dataset_servers, interleaved_rounds
from bench.report import SectionResult, Table, ms, ratio, times
from wadm_client import RawWadmClient

SYMBOL = "BTCUSDT"
LIMIT = 500
TIMEFRAMES = ("1m", "1h", "1d")
DATASETS = ("100k", "10m")
WARMUP_ROUNDS = 5
ROUNDS = 50
MAX_SECONDS = 120.0
TARGET_RATIO = 1.5


def _call(client: RawWadmClient, timeframe: str) -> Call:
    async def call() -> int:
        response = await client.get_candles(SYMBOL, timeframe, limit=LIMIT)
        return len(response.candles)

    return call


async def run(data: Datasets) -> SectionResult:
    """Both datasets served at once; the same client process calls them in interleaved rounds."""
    async with dataset_servers(data, DATASETS) as served:
        calls: dict[Hashable, Call] = {
            (timeframe, s.dataset.name): _call(s.client, timeframe) for timeframe in TIMEFRAMES for s in served
        }
        samples, rounds = await interleaved_rounds(
            calls, warmup_rounds=WARMUP_ROUNDS, rounds=ROUNDS, max_seconds=MAX_SECONDS
        )
    small, large = DATASETS
    table = Table(
        f"GetCandles({SYMBOL}, limit={LIMIT}): latency in ms, {rounds} interleaved rounds",
        [
            *("timeframe", "candles", f"{small} p50", f"{small} p90", f"{large} p50", f"{large} p90"),
            *("ratio p50", "ratio p90", f"<= {TARGET_RATIO}"),
        ],
    )
    by_timeframe: dict[str, object] = {}
    for timeframe in TIMEFRAMES:
        a, b = samples[(timeframe, small)], samples[(timeframe, large)]
        median_ratio, p90_ratio = ratio(b.median, a.median), ratio(b.p90, a.p90)
        table.add(
            timeframe,
            f"{a.size_text()} / {b.size_text()}",
            ms(a.median),
            ms(a.p90),
            ms(b.median),
            ms(b.p90),
            times(median_ratio),
            times(p90_ratio),
            "yes" if median_ratio <= TARGET_RATIO else "NO",
        )
        by_timeframe[timeframe] = {
            small: {"p50_ms": a.median * 1000, "p90_ms": a.p90 * 1000, "candles": a.sizes[-1] if a.sizes else 0},
            large: {"p50_ms": b.median * 1000, "p90_ms": b.p90 * 1000, "candles": b.sizes[-1] if b.sizes else 0},
            "ratio_p50": median_ratio,
            "ratio_p90": p90_ratio,
        }
    table.notes.append(f"ratio = {large} / {small}; target: the p50 ratio <= {TARGET_RATIO} for every timeframe")
    table.notes.append("servers run with WADM_CACHE=false: every call reads the store")
    figures = {"rounds": rounds, "symbol": SYMBOL, "limit": LIMIT, "by_timeframe": by_timeframe}
    return SectionResult("candles", [table], figures)
