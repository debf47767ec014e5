"""`python -m bench [SECTION ...]`: run every section (or the ones named), print a table each, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from bench import (
    abuse,
    cache_workers,
    candles,
    http,
    http_streams,
    imports,
    ingest,
    live_candles,
    multistats,
    observability,
    resume,
    slow_consumers,
    stream_path,
    streaming,
    unary,
)
from bench.at_commit import run_at_commit
from bench.datasets import Datasets
from bench.machine import describe, source, summary
from bench.report import SectionResult, write_results

# A 1-minute load average above this before a section means other work shares the cores: figures are noisier.
BUSY_LOAD = 0.5
Section = Callable[[Datasets], Awaitable[SectionResult]]
# Subsets of other sections, for a quick rerun: not part of a whole run.
ONLY_WHEN_NAMED = frozenset({"capacity"})
SECTIONS: dict[str, Section] = {
    "candles": candles.run,
    "ingest": ingest.run,
    "multistats": multistats.run,
    "unary": unary.run,
    "streaming": streaming.run,
    "capacity": streaming.run_capacity,
    "stream-path": stream_path.run,
    "slow-consumers": slow_consumers.run,
    "live-candles": live_candles.run,
    "redis": cache_workers.run,
    "http": http.run,
    "http-streams": http_streams.run,
    "abuse": abuse.run,
    "observability": observability.run,
    "import": imports.run,
    "resume": resume.run,
}


async def run(names: Sequence[str], *, rebuild: bool) -> int:
    """Run the sections in order; a failing section is reported and the others still run."""
    started = datetime.now(UTC)
    machine = describe()
    print(summary(machine), flush=True)
    data = Datasets(now_us=time.time_ns() // 1000, rebuild=rebuild)
    results: list[SectionResult] = []
    failed: list[str] = []
    for name in names:
        if source() != machine["source"]:
            print(f"WARNING: the product changed during the run: now {source()}", flush=True)
        load_before = os.getloadavg()[0]
        busy = f"  (machine busy: load average {load_before:.1f})" if load_before > BUSY_LOAD else ""
        print(f"\n== {name}{busy}", flush=True)
        began = time.perf_counter()
        try:
            result = await SECTIONS[name](data)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        result.seconds = time.perf_counter() - began
        result.figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
        for table in result.tables:
            print(table.text(), flush=True)
        print(f"  ({result.seconds:.0f} s)", flush=True)
        results.append(result)
    path = write_results(machine, results, started, datasets=data.describe())
    total = (datetime.now(UTC) - started).total_seconds()
    print(f"\nresults: {path.resolve()} (and latest.json, latest.md); {total:.0f} s in all", flush=True)
    if failed:
        print(f"FAILED sections: {', '.join(failed)}", flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    # `[]` in choices: argparse checks the empty default of nargs="*" against them.
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], metavar="SECTION", help=", ".join(SECTIONS))
    parser.add_argument("--rebuild-data", action="store_true", help="rebuild the cached datasets in bench/.data/")
    parser.add_argument(
        "--commit", metavar="REV", help="measure this commit of the product (exported), not the working tree"
    )
    args = parser.parse_args(argv)
    names = args.sections or [name for name in SECTIONS if name not in ONLY_WHEN_NAMED]
    if args.commit:
        return run_at_commit(args.commit, [*names, *(["--rebuild-data"] if args.rebuild_data else [])])
    try:
        return asyncio.run(_until_signal(run(names, rebuild=args.rebuild_data)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: every server started was stopped", flush=True)
        return 130


async def _until_signal(work: Coroutine[Any, Any, int]) -> int:
    """Run `work`; SIGTERM or SIGHUP cancel it like Ctrl-C does, so every server is still stopped."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    return await task


if __name__ == "__main__":
    raise SystemExit(main())
