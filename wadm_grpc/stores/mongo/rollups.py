"""Incremental rollup maintenance: recompute the 1m/1h/1d buckets (and market summaries) that trades touched.

Every bucket is recomputed from its source in full (1m from trades, 1h from 1m, 1d from 1h) and upserted
with ReplaceOne, never incremented, so running the same work twice writes the same documents: maintenance
is idempotent, and a late trade simply makes its buckets be recomputed.

Which buckets: `insert_trades` knows the trades it stored; in a process that does not hold the rollup lease
(lease.py) it records them in the dirty-bucket collection instead, for the leader to recompute. Trades that
collectors insert straight into the collection are found by a watermark on `_id` (ObjectIds grow with
time): each pass scans the documents after the last `_id` it finished (less `rescan_seconds`, for writers
whose inserts commit late or whose clocks lag). Every write carries the leader's generation (fencing).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReplaceOne

from wadm_grpc.domain.timeframe import Rollup
from wadm_grpc.domain.trade import Trade
from wadm_grpc.domain.trade_batch import TradeBatch
from wadm_grpc.stores.mongo import pipelines, rows
from wadm_grpc.stores.mongo.commands import Commands
from wadm_grpc.stores.mongo.documents import Document
from wadm_grpc.stores.mongo.lease import LeaseLost
from wadm_grpc.stores.mongo.pipelines import Range

BucketKey = tuple[str, str, int]  # symbol, exchange, bucket start (us)
# Touched buckets of a market closer than this many buckets are recomputed through one index range (the
# buckets between are read too, but only touched ones are written back)...
_MERGE_GAP = 8
# ...and one query's $or has at most this many ranges (a market with more has its closest ones joined).
_RANGES_PER_QUERY = 32
_SOURCE = {Rollup.H1: Rollup.M1, Rollup.D1: Rollup.H1}


@dataclass
class RefreshReport:
    """What one maintenance pass (or one ingest) did."""

    scanned_trades: int = 0
    written: dict[str, int] = field(default_factory=dict)  # tier label or "markets" -> documents upserted
    dirty_buckets: int = 0  # buckets other processes recorded, recomputed by this pass


def minute_keys(trades: Iterable[Trade]) -> set[BucketKey]:
    """The 1m buckets `trades` fall in (read from the columns of a TradeBatch: no Trade objects)."""
    if isinstance(trades, TradeBatch):
        c = trades.columns
        size = Rollup.M1.micros
        return set(zip(c.symbol, c.exchange, [t - t % size for t in c.time_us], strict=True))
    return {(t.symbol, t.exchange, Rollup.M1.bucket_start(t.time_us)) for t in trades}


def merged_ranges(keys: Iterable[BucketKey], size: int) -> list[list[Range]]:
    """Bucket keys as index ranges [low, high), in groups of at most _RANGES_PER_QUERY (one query each).

    A market's touched buckets closer than _MERGE_GAP buckets share a range; past _RANGES_PER_QUERY ranges, a
    market's closest ranges are joined until it has that many (scattered late trades cost reading the
    buckets between them, never more than one market's span).
    """
    by_market: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for symbol, exchange, bucket in keys:
        by_market[(symbol, exchange)].add(bucket)
    ranges: list[Range] = []
    for (symbol, exchange), touched in sorted(by_market.items()):
        buckets = sorted(touched)
        gaps = sorted((b - a, i) for i, (a, b) in enumerate(itertools.pairwise(buckets)))
        joins = sum(1 for gap, _ in gaps if gap <= _MERGE_GAP * size)
        joins = max(joins, len(buckets) - _RANGES_PER_QUERY)
        joined = {i for _, i in gaps[:joins]}
        low = buckets[0]
        for i, bucket in enumerate(buckets):
            if i not in joined:  # bucket i ends a range
                ranges.append((symbol, exchange, low, bucket + size))
                if i + 1 < len(buckets):
                    low = buckets[i + 1]
    return [ranges[i : i + _RANGES_PER_QUERY] for i in range(0, len(ranges), _RANGES_PER_QUERY)]


def _rollup_document(tier: Rollup, row: Document) -> tuple[BucketKey, Document]:
    key = row["_id"]
    bucket = int(key["bucket"])  # mongomock's $mod yields floats; MongoDB's longs
    document = {"tier": tier.label, "symbol": key["symbol"], "exchange": key["exchange"], "bucket": bucket}
    document.update((name, row[name]) for name in rows.ROW_FIELDS)
    return (key["symbol"], key["exchange"], bucket), document


def _fenced(unique: Document, document: Document, generation: int) -> ReplaceOne[Document]:
    """Replace the document at `unique` unless a newer lease generation wrote it (then E11000: refused)."""
    newer = {"generation": {"$not": {"$gt": generation}}}
    return ReplaceOne({**unique, **newer}, {**document, "generation": generation}, upsert=True)


async def _write(db: Commands, role: str, replacements: list[ReplaceOne[Document]], generation: int) -> None:
    if await db.replace(role, replacements):  # type: ignore[arg-type]
        raise LeaseLost(f"a newer rollup leader wrote {role}: generation {generation}'s writes were refused")


async def _refresh_tier(db: Commands, tier: Rollup, touched: set[BucketKey], generation: int) -> int:
    """Recompute `tier`'s touched buckets from their source and upsert them; returns how many."""
    source = _SOURCE.get(tier)
    replacements: list[ReplaceOne[Document]] = []
    for chunk in merged_ranges(touched, tier.micros):
        if source is None:
            rows = await db.aggregate("trades", pipelines.minute_rollups(chunk))
        else:
            rows = await db.aggregate("rollups", pipelines.tier_rollups(tier, source, chunk))
        for row in rows:
            key, document = _rollup_document(tier, row)
            if key in touched:
                unique = {name: document[name] for name in ("tier", "symbol", "bucket", "exchange")}
                replacements.append(_fenced(unique, document, generation))
    await _write(db, "rollups", replacements, generation)
    return len(replacements)


async def _refresh_markets(db: Commands, markets: set[tuple[str, str]], generation: int) -> int:
    replacements: list[ReplaceOne[Document]] = []
    ordered = sorted(markets)
    for start in range(0, len(ordered), _RANGES_PER_QUERY):
        rows = await db.aggregate("rollups", pipelines.market_summaries(ordered[start : start + _RANGES_PER_QUERY]))
        for row in rows:
            market = {"symbol": row["_id"]["symbol"], "exchange": row["_id"]["exchange"]}
            summary = {name: row[name] for name in ("first_us", "last", "count", "price_scale")}
            replacements.append(_fenced(market, {**market, **summary}, generation))
    await _write(db, "markets", replacements, generation)
    return len(replacements)


async def refresh_buckets(
    db: Commands, touched_minutes: set[BucketKey], report: RefreshReport, generation: int
) -> None:
    """Recompute every tier's buckets over `touched_minutes`, then the touched markets' summaries, as the
    leader of lease `generation`; LeaseLost if a newer leader's documents refused a write."""
    touched = touched_minutes
    for tier in Rollup:
        touched = {(s, e, tier.bucket_start(b)) for s, e, b in touched}
        written = await _refresh_tier(db, tier, touched, generation)
        report.written[tier.label] = report.written.get(tier.label, 0) + written
    written = await _refresh_markets(db, {(s, e) for s, e, _ in touched}, generation)
    report.written["markets"] = report.written.get("markets", 0) + written


def _dirty_id(key: BucketKey) -> str:
    symbol, exchange, bucket = key
    return f"{symbol}/{exchange}/{bucket}"


async def mark_dirty(db: Commands, touched_minutes: set[BucketKey]) -> None:
    """Record minute buckets for the leader to recompute (a process without the lease ingested into them).
    Each mark gets a fresh `mark`, so the leader only clears marks it has recomputed."""
    marks = [
        ReplaceOne(
            {"_id": _dirty_id(key)},
            {"symbol": key[0], "exchange": key[1], "bucket": key[2], "mark": ObjectId()},
            upsert=True,
        )
        for key in sorted(touched_minutes)
    ]
    await db.replace("dirty", marks)


async def refresh_dirty(db: Commands, report: RefreshReport, generation: int, batch: int) -> None:
    """Recompute the buckets other processes marked, `batch` marks at a time, clearing the marks after."""
    while True:
        marks = await db.find("dirty", {}, limit=batch)
        if not marks:
            return
        keys = {(m["symbol"], m["exchange"], int(m["bucket"])) for m in marks}
        await refresh_buckets(db, keys, report, generation)
        report.dirty_buckets += len(keys)
        await db.delete_many("dirty", {"$or": [{"_id": m["_id"], "mark": m["mark"]} for m in marks]})
        if len(marks) < batch:
            return


def rescan_from(last_id: ObjectId | None, rescan_seconds: float) -> ObjectId | None:
    """Where a pass starts: after the watermark, less `rescan_seconds` of ObjectId time."""
    if last_id is None or rescan_seconds <= 0:
        return last_id
    return ObjectId.from_datetime(last_id.generation_time - timedelta(seconds=rescan_seconds))


async def scan_and_refresh(
    db: Commands,
    since: ObjectId | None,
    batch: int,
    save_watermark: Callable[[Any], Awaitable[None]],
    generation: int,
    progress: Callable[[RefreshReport], None] | None = None,
) -> RefreshReport:
    """Roll up every trade document after `since`, `batch` documents at a time, saving the watermark after
    each batch (so an interrupted pass resumes where it stopped) and reporting `progress`."""
    report = RefreshReport()
    while True:
        rows = await db.aggregate("trades", pipelines.scan_new_trades(since, batch))
        scanned = sum(int(row["trades"]) for row in rows)
        if not scanned:
            return report
        report.scanned_trades += scanned
        keys = {(row["_id"]["symbol"], row["_id"]["exchange"], int(row["_id"]["bucket"])) for row in rows}
        await refresh_buckets(db, keys, report, generation)
        since = max(row["last_id"] for row in rows)
        await save_watermark(since)
        if progress is not None:
            progress(report)
        if scanned < batch:
            return report
