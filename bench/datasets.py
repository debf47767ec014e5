"""Seeded trade datasets in DuckDB files under bench/.data/, built by SQL and reused while fresh.

Every trade is a pure function of its index i, the seed and the end time: `hash()` of (i, seed) picks
the symbol, exchange, side, price noise and quantity; times rise with i, evenly spread (with jitter)
over SPAN_DAYS that end at the dataset's end time, so the newest 24 hours hold trades like any other
day. The rollups are then rebuilt by the store itself (`DuckDBTradeStore.rebuild_rollups`).

The server's clock is real time, so a dataset whose end is more than MAX_AGE_SECONDS old is rebuilt
(GetMultiStats over the last 24h must find the data where a live system would have it); so is one built
for another store schema (the product's DDL is fingerprinted).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from wadm_grpc.stores.duckdb import DuckDBTradeStore

DATA_DIR = Path(__file__).resolve().parent / ".data"
SEED = 20240808
SPAN_DAYS = 600
DAY_US = 86_400_000_000
MAX_AGE_SECONDS = 6 * 3600
# Bump when the generator changes, so cached files are rebuilt.
GENERATOR_VERSION = 1
EXCHANGES = ("binance", "bybit")

# (symbol, typical price, digits after the point of its prices)
SYMBOLS: tuple[tuple[str, float, int], ...] = (
    ("BTCUSDT", 60_000, 2),
    ("ETHUSDT", 3_000, 2),
    ("SOLUSDT", 150, 3),
    ("BNBUSDT", 550, 3),
    ("XRPUSDT", 0.55, 5),
    ("DOGEUSDT", 0.12, 6),
    ("ADAUSDT", 0.45, 5),
    ("AVAXUSDT", 30, 4),
    ("LINKUSDT", 14, 4),
    ("DOTUSDT", 6, 4),
    ("TRXUSDT", 0.12, 6),
    ("POLUSDT", 0.5, 5),
    ("LTCUSDT", 75, 3),
    ("BCHUSDT", 380, 3),
    ("ATOMUSDT", 7, 4),
    ("NEARUSDT", 5, 4),
    ("APTUSDT", 8, 4),
    ("ARBUSDT", 0.8, 5),
    ("OPUSDT", 1.8, 5),
    ("FILUSDT", 4, 4),
)
SYMBOL_NAMES = tuple(symbol for symbol, _, _ in SYMBOLS)


@dataclass(frozen=True)
class Dataset:
    """A ready DuckDB file of `trades` trades ending at `end_us`."""

    name: str
    trades: int
    path: Path
    end_us: int
    build_seconds: float
    reused: bool

    def describe(self) -> dict[str, object]:
        """For the results file."""
        return {
            "trades": self.trades,
            "end_us": self.end_us,
            "span_days": SPAN_DAYS,
            "seed": SEED,
            "reused": self.reused,
            "build_seconds": round(self.build_seconds, 1),
        }


def _insert_sql(trades: int, end_us: int) -> str:
    span = SPAN_DAYS * DAY_US
    step = span // trades
    start = end_us - span
    symbols = ", ".join(f"({k}, '{name}', {price}, {scale})" for k, (name, price, scale) in enumerate(SYMBOLS))
    # One CAST per price scale: DuckDB DECIMAL types have a fixed scale.
    exact_price = " ".join(f"WHEN {s} THEN CAST(raw AS DECIMAL(20, {s}))" for s in sorted({s for *_, s in SYMBOLS}))
    return f"""
INSERT INTO trades
WITH symbols(k, symbol, base, scale) AS (VALUES {symbols}),
draws AS (
    SELECT range AS i, hash(range, {SEED}) AS h1, hash(range, {SEED + 1}) AS h2, hash(range, {SEED + 2}) AS h3
    FROM range({trades})
),
priced AS (
    SELECT i, h2, h3, s.symbol, s.scale,
           s.base * (1 + 0.2 * sin(i / {trades} * 40 + s.k) + ((h1 % 2001)::DOUBLE - 1000) / 100000) AS raw,
           CAST((h2 // 2) % 99999 + 1 AS DECIMAL(18, 0)) * 0.00001::DECIMAL(6, 5) AS qty
    FROM draws JOIN symbols AS s ON s.k = (h1 // 3000) % {len(SYMBOLS)}
),
exact AS (SELECT *, CASE scale {exact_price} END AS px FROM priced)
SELECT CASE WHEN h2 % 2 = 0 THEN '{EXCHANGES[0]}' ELSE '{EXCHANGES[1]}' END,
       symbol,
       CAST(i AS VARCHAR),
       {start} + i * {step} + CAST(h3 % {step} AS BIGINT) AS time_us,
       CAST(px AS DECIMAL(38, 18)),
       CAST(qty AS DECIMAL(38, 18)),
       CAST(px * qty AS DECIMAL(38, 18)),
       scale,
       5,
       (h3 // 7) % 2 = 0
FROM exact
ORDER BY time_us"""


def _meta(trades: int, schema: str) -> dict[str, object]:
    return {"trades": trades, "seed": SEED, "span_days": SPAN_DAYS, "version": GENERATOR_VERSION, "schema": schema}


async def schema_fingerprint() -> str:
    """A digest of the tables and columns the product's store creates: a cached file built for another
    schema is rebuilt rather than migrated or misread."""
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        path = Path(directory) / "schema.duckdb"
        await DuckDBTradeStore(path).close()
        connection = duckdb.connect(str(path), read_only=True)
        try:
            rows = connection.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
            ).fetchall()
        finally:
            connection.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


async def ensure(name: str, trades: int, *, now_us: int, rebuild: bool = False) -> Dataset:
    """The dataset `name` of `trades` trades: the cached file if it matches and is fresh, else built now."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"{name}.duckdb"
    meta_path = DATA_DIR / f"{name}.json"
    wanted = _meta(trades, await schema_fingerprint())
    if not rebuild and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        fresh = now_us - int(meta["end_us"]) <= MAX_AGE_SECONDS * 1_000_000
        if fresh and all(meta.get(key) == value for key, value in wanted.items()):
            return Dataset(name, trades, path, int(meta["end_us"]), float(meta["build_seconds"]), reused=True)
    end_us = now_us - now_us % 60_000_000  # whole minute
    started = time.perf_counter()
    building = DATA_DIR / f"{name}.building.duckdb"
    for stale in (building, Path(f"{building}.wal"), path, Path(f"{path}.wal"), meta_path):
        stale.unlink(missing_ok=True)
    await DuckDBTradeStore(building).close()  # the product creates its schema
    await asyncio.to_thread(_bulk_insert, building, trades, end_us)
    store = DuckDBTradeStore(building)
    try:
        await store.rebuild_rollups()
    finally:
        await store.close()
    building.rename(path)
    seconds = time.perf_counter() - started
    meta_path.write_text(json.dumps({**wanted, "end_us": end_us, "build_seconds": seconds}) + "\n")
    return Dataset(name, trades, path, end_us, seconds, reused=False)


def _bulk_insert(path: Path, trades: int, end_us: int) -> None:
    connection = duckdb.connect(str(path))
    try:
        connection.execute(_insert_sql(trades, end_us))
        row = connection.execute("SELECT count(*) FROM trades").fetchone()
        if row is None or row[0] != trades:
            raise RuntimeError(f"dataset {path.name}: expected {trades} trades, found {row}")
    finally:
        connection.close()


# The datasets the sections use, by name.
SIZES = {"100k": 100_000, "10m": 10_000_000}


class Datasets:
    """The run's datasets: each ensured once (built or reused) the first time a section asks for it."""

    def __init__(self, *, now_us: int, rebuild: bool = False) -> None:
        self.now_us = now_us
        self._rebuild = rebuild
        self._ready: dict[str, Dataset] = {}

    async def get(self, name: str) -> Dataset:
        """The dataset `name` (a key of SIZES)."""
        if name not in self._ready:
            trades = SIZES[name]
            print(f"  dataset {name}: {trades:,} trades ...", end=" ", flush=True)
            dataset = await ensure(name, trades, now_us=self.now_us, rebuild=self._rebuild)
            age_minutes = (self.now_us - dataset.end_us) / 60e6
            how = "reused" if dataset.reused else f"built in {dataset.build_seconds:.0f} s"
            print(f"{how} (ends {age_minutes:.0f} min before the bench started)", flush=True)
            self._ready[name] = dataset
        return self._ready[name]

    def describe(self) -> dict[str, object]:
        """Every dataset used so far, for the results file."""
        return {name: dataset.describe() for name, dataset in self._ready.items()}
