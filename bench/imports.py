"""Section `import` (issue 12, real-size imports): a generated 2M-row Binance USD-M trades file imported
through a running server (PublishTrades) and with --direct, against DuckDB alone.

- the file: ROWS rows in Binance's USD-M layout (header, `id,price,qty,quote_qty,time,is_buyer_maker`),
  every row a pure function of its index (DuckDB `hash`), cached in bench/.data/.
- ceiling: DuckDB alone, `INSERT OR IGNORE INTO trades SELECT ... FROM read_csv(...)` (or from an Arrow
  table pyarrow read from the file: the faster of the two is the ceiling) into an empty file with the
  product's trades DDL (the same columns computed in SQL; quote taken from the file).
- --direct: `python -m wadm_grpc import --direct FILE` into an empty file, a real process; its load rate
  (the summary line's seconds: read, validate, insert) is compared with the ceiling (target >= 0.5x), and
  the whole command (process start and the one rollup rebuild included) is shown beside it.
  Interleaved rounds (ceilings, direct, direct, ceilings); the best of each is compared.
- through the service: the same command with --target, into a real server process on an empty store.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.datasets import DATA_DIR, Datasets
from bench.processes import wadm_server
from bench.report import SectionResult, Table, ratio, times, whole
from wadm_grpc.stores.duckdb import sql

ROWS = 2_000_000
SEED = 12
GENERATOR_VERSION = 1
START_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z: a day of trades, as a Binance daily file
DIRECT_TARGET = 0.5
ROUNDS = 3  # the ceiling moves most with the machine's load: more rounds, a fairer best
_SUMMARY = re.compile(r": (\d+) read, (\d+) accepted, .* ([0-9.]+) s, [0-9,]+ rows/s")


def bench_file(rows: int = ROWS) -> Path:
    """The cached generated file (built once, by DuckDB)."""
    path = DATA_DIR / f"BTCUSDT-um-trades-bench-{rows}-v{GENERATOR_VERSION}.csv"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            f"""COPY (
                SELECT i + 5266583935 AS id, printf('%.1f', 60000 + (hash(i, {SEED}) % 400000) / 10.0) AS price,
                       printf('%.3f', 0.001 + (hash(i, {SEED} + 1) % 2000) / 1000.0) AS qty,
                       printf('%.4f', (60000 + (hash(i, {SEED}) % 400000) / 10.0)
                                      * (0.001 + (hash(i, {SEED} + 1) % 2000) / 1000.0)) AS quote_qty,
                       {START_MS} + i * 86400000 // {rows} AS time,
                       CASE WHEN hash(i, {SEED} + 2) % 2 = 0 THEN 'true' ELSE 'false' END AS is_buyer_maker
                FROM range({rows}) t(i) ORDER BY i
            ) TO '{partial}' (HEADER, DELIMITER ',', QUOTE '')"""
        )
    partial.rename(path)
    return path


# The trades row computed in SQL from the CSV's text columns (quote taken from the file).
_ROW_SQL = """'binance-usdm', 'BTCUSDT', id,
    CASE WHEN CAST(time AS BIGINT) >= 100000000000000 THEN CAST(time AS BIGINT) ELSE CAST(time AS BIGINT) * 1000 END,
    CAST(price AS DECIMAL(38, 18)), CAST(qty AS DECIMAL(38, 18)), CAST(quote_qty AS DECIMAL(38, 18)),
    CASE WHEN strpos(price, '.') = 0 THEN 0 ELSE length(price) - strpos(price, '.') END,
    CASE WHEN strpos(qty, '.') = 0 THEN 0 ELSE length(qty) - strpos(qty, '.') END,
    is_buyer_maker = 'false'"""


def _ceiling(source: Path, directory: Path, *, via: str) -> float:
    """Seconds for DuckDB alone to load the file into an empty trades table: `read_csv` (DuckDB's own CSV
    reader) or `arrow` (pyarrow's reader, then one INSERT from the Arrow table)."""
    target = directory / f"ceiling-{time.monotonic_ns()}.duckdb"
    with duckdb.connect(str(target)) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(sql.TRADES_DDL)
        began = time.perf_counter()
        if via == "read_csv":
            relation = f"read_csv('{source}', header = true, all_varchar = true)"
        else:
            names = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
            table = pacsv.read_csv(
                source, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
            )
            con.register("csv_rows", table)
            relation = "csv_rows"
        con.execute(f"INSERT OR IGNORE INTO trades SELECT {_ROW_SQL} FROM {relation}")
        seconds = time.perf_counter() - began
    target.unlink()
    return seconds


async def _command(*args: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(whole seconds, the summary line's seconds, stdout) of `python -m wadm_grpc import ...`."""
    import os

    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wadm_grpc",
        "import",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | (env or {}),
    )
    out, err = await process.communicate()
    wall = time.perf_counter() - began
    text = out.decode()
    match = _SUMMARY.search(text)
    if process.returncode != 0 or match is None or int(match.group(2)) != int(match.group(1)):
        raise RuntimeError(f"import failed ({process.returncode}): {text} {err.decode()[-2000:]}")
    return wall, float(match.group(3)), text


async def run(data: Datasets) -> SectionResult:
    """Measure; one table."""
    source = await asyncio.to_thread(bench_file)
    ceiling: dict[str, list[float]] = {"read_csv": [], "arrow": []}
    direct_load: list[float] = []
    direct_wall: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wadm-import-bench-") as scratch:
        directory = Path(scratch)
        for round_number in range(ROUNDS):
            order = ("read_csv", "arrow", "direct") if round_number % 2 == 0 else ("direct", "arrow", "read_csv")
            for which in order:
                if which != "direct":
                    ceiling[which].append(await asyncio.to_thread(_ceiling, source, directory, via=which))
                    continue
                store = directory / f"direct-{round_number}.duckdb"
                wall, load, _ = await _command("--direct", str(source), env={"WADM_STORE": f"duckdb:{store}"})
                direct_wall.append(wall)
                direct_load.append(load)
                store.unlink()
        async with wadm_server("wadm-import", directory / "service.duckdb") as server:
            service_wall, service_load, _ = await _command("--target", server.target, str(source))
    best_ways = {way: min(seconds) for way, seconds in ceiling.items()}
    best_ceiling, best_load, best_wall = min(best_ways.values()), min(direct_load), min(direct_wall)
    table = Table(
        f"import: a generated {ROWS:,}-row Binance USD-M trades file (best of {ROUNDS} interleaved rounds)",
        ["way", "rows/s", "seconds", "x DuckDB alone", "target"],
    )
    for way, label in (("read_csv", "read_csv(file)"), ("arrow", "an Arrow table of the file")):
        table.add(
            f"DuckDB alone: INSERT OR IGNORE ... SELECT FROM {label}",
            whole(ROWS / best_ways[way]),
            f"{best_ways[way]:.2f}",
            times(ratio(best_ceiling, best_ways[way])),
            "ceiling" if best_ways[way] == best_ceiling else "-",
        )
    table.add(
        "--direct: load (read, validate, insert)",
        whole(ROWS / best_load),
        f"{best_load:.2f}",
        times(ratio(best_ceiling, best_load)),
        f">= {DIRECT_TARGET}x",
    )
    table.add(
        "--direct: whole command (+ start, one rollup rebuild)",
        whole(ROWS / best_wall),
        f"{best_wall:.2f}",
        times(ratio(best_ceiling, best_wall)),
        "-",
    )
    table.add(
        "through the service (PublishTrades, 10k-trade messages)",
        whole(ROWS / service_load),
        f"{service_load:.2f}",
        times(ratio(best_ceiling, service_load)),
        "-",
    )
    table.notes.append(
        "x DuckDB alone = the faster DuckDB-alone way's seconds / seconds (higher is better); "
        "the service path is bound by PublishTrades (the ingest section's subject)"
    )
    return SectionResult(
        "import",
        [table],
        {
            "rows": ROWS,
            "ceiling_seconds": ceiling,
            "direct_load_seconds": direct_load,
            "direct_wall_seconds": direct_wall,
            "service_load_seconds": service_load,
            "service_wall_seconds": service_wall,
            "direct_ratio": ratio(best_ceiling, best_load),
            "direct_target": DIRECT_TARGET,
        },
    )
