"""Section `candles` (issues 2 and 12): GetCandles(BTCUSDT, limit 500), uncached, against its ceilings.

- 100k vs 10M stored trades: the store is meant to cost what the candles returned cost, not the history
  underneath: the ratio 10M/100k of the median latency should stay <= TARGET_RATIO for every timeframe.
- At 10M, beside the service (same rounds, same client process): the best hand-written SQL over the
  product's `rollups` table for the same 500 candles with the same digits (bench/candle_ceiling.py); the
  service should stay within CEILING_TARGET of it. And the old service's way, a GROUP BY over the raw
  trades, which the service should beat by GROUP_BY_TARGET (fewer rounds: it is slow).
"""

from __future__ import annotations

from collections.abc import Hashable

from bench.candle_ceiling import TIMEFRAMES, CandleCeiling, wire_rows
from bench.datasets import Datasets
from bench.interleave import Call, Samples, dataset_servers, interleaved_rounds
from bench.report import SectionResult, Table, ms, ratio, times
from wadm_client import RawWadmClient

SYMBOL = "BTCUSDT"
LIMIT = 500
DATASETS = ("100k", "10m")
WARMUP_ROUNDS = 5
ROUNDS = 50
GROUP_BY_ROUNDS = 7
MAX_SECONDS = 120.0
TARGET_RATIO = 1.5
CEILING_TARGET = 1.3
GROUP_BY_TARGET = 25.0
# Both the servers and the ceiling open the dataset files read-only, so they can share them.
READ_ONLY = {"WADM_READ_ONLY": "true"}


def _call(client: RawWadmClient, timeframe: str) -> Call:
    async def call() -> int:
        response = await client.get_candles(SYMBOL, timeframe, limit=LIMIT)
        return len(response.candles)

    return call


def _sql_call(ceiling: CandleCeiling, timeframe: str, first_us: int, last_us: int) -> Call:
    async def call() -> int:
        return len(await ceiling.rollups(TIMEFRAMES[timeframe], SYMBOL, first_us, last_us))

    return call


def _group_by_call(ceiling: CandleCeiling, timeframe: str) -> Call:
    async def call() -> int:
        return len(await ceiling.group_by(TIMEFRAMES[timeframe], SYMBOL, LIMIT))

    return call


async def run(data: Datasets) -> SectionResult:
    """Both datasets served at once; the same client process calls them and the ceilings in interleaved rounds."""
    small, large = DATASETS
    async with dataset_servers(data, DATASETS, READ_ONLY) as served:
        ceiling = CandleCeiling(served[-1].dataset.path)
        try:
            calls: dict[Hashable, Call] = {
                (timeframe, s.dataset.name): _call(s.client, timeframe) for timeframe in TIMEFRAMES for s in served
            }
            same_digits: dict[str, bool] = {}
            for timeframe in TIMEFRAMES:
                answer = wire_rows(await served[-1].client.get_candles(SYMBOL, timeframe, limit=LIMIT))
                first_us, last_us = answer[0][0], answer[-1][0]
                same_digits[timeframe] = answer == await ceiling.rollups(
                    TIMEFRAMES[timeframe], SYMBOL, first_us, last_us
                )
                calls[(timeframe, "sql")] = _sql_call(ceiling, timeframe, first_us, last_us)
            samples, rounds = await interleaved_rounds(
                calls, warmup_rounds=WARMUP_ROUNDS, rounds=ROUNDS, max_seconds=MAX_SECONDS
            )
            slow_calls: dict[Hashable, Call] = {}
            for timeframe in TIMEFRAMES:
                slow_calls[(timeframe, "group_by")] = _group_by_call(ceiling, timeframe)
                slow_calls[(timeframe, large)] = _call(served[-1].client, timeframe)
            slow, slow_rounds = await interleaved_rounds(
                slow_calls, warmup_rounds=1, rounds=GROUP_BY_ROUNDS, max_seconds=MAX_SECONDS
            )
        finally:
            ceiling.close()
    table = Table(
        f"GetCandles({SYMBOL}, limit={LIMIT}): latency in ms, {rounds} interleaved rounds",
        [
            *("timeframe", "candles", f"{small} p50", f"{small} p90", f"{large} p50", f"{large} p90"),
            *("ratio p50", "ratio p90", f"<= {TARGET_RATIO}"),
        ],
    )
    ceilings = Table(
        f"GetCandles({SYMBOL}, limit={LIMIT}) at {large} against hand-written SQL in DuckDB: p50 ms "
        f"({rounds} interleaved rounds; GROUP BY {slow_rounds})",
        [
            *("timeframe", "service", "SQL over rollups", "service / SQL", f"<= {CEILING_TARGET}x", "same digits"),
            *("GROUP BY raw trades", "service (beside it)", "GROUP BY / service", f">= {GROUP_BY_TARGET:g}x"),
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
        best: Samples = samples[(timeframe, "sql")]
        grouped, beside = slow[(timeframe, "group_by")], slow[(timeframe, large)]
        over_sql, faster = ratio(b.median, best.median), ratio(grouped.median, beside.median)
        ceilings.add(
            timeframe,
            ms(b.median),
            ms(best.median),
            times(over_sql),
            "yes" if over_sql <= CEILING_TARGET else "NO",
            "yes" if same_digits[timeframe] else "NO",
            ms(grouped.median),
            ms(beside.median),
            times(faster),
            "yes" if faster >= GROUP_BY_TARGET else "NO",
        )
        by_timeframe[timeframe] = {
            small: {"p50_ms": a.median * 1000, "p90_ms": a.p90 * 1000, "candles": a.sizes[-1] if a.sizes else 0},
            large: {"p50_ms": b.median * 1000, "p90_ms": b.p90 * 1000, "candles": b.sizes[-1] if b.sizes else 0},
            "ratio_p50": median_ratio,
            "ratio_p90": p90_ratio,
            "sql_rollups_p50_ms": best.median * 1000,
            "service_over_sql_p50": over_sql,
            "same_digits": same_digits[timeframe],
            "group_by_p50_ms": grouped.median * 1000,
            "service_beside_group_by_p50_ms": beside.median * 1000,
            "group_by_over_service_p50": faster,
        }
    table.notes.append(f"ratio = {large} / {small}; target: the p50 ratio <= {TARGET_RATIO} for every timeframe")
    table.notes.append("servers run with WADM_CACHE=false (every call reads the store) and WADM_READ_ONLY=true")
    table.notes.append(
        "each distinct candle is rendered once (convert.CANDLE_RENDERS wire candles kept); after the warm-up"
        " rounds the service's Python per call is merging those bytes (docs/benchmarks.md, section 1)"
    )
    ceilings.notes.append(
        "SQL over rollups: one statement told the exact bucket range of the service's answer (the service must"
        " find it), the product's aggregation and text formatting, fetched into Python on a worker thread"
    )
    ceilings.notes.append("same digits: the SQL's candles equal the service's, field for field (vwap and sells aside)")
    ceilings.notes.append("GROUP BY raw trades: the newest 500 buckets aggregated from the symbol's trades per call")
    figures = {"rounds": rounds, "symbol": SYMBOL, "limit": LIMIT, "by_timeframe": by_timeframe}
    return SectionResult("candles", [table, ceilings], figures)
