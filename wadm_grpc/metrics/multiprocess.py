"""Multiprocess mode (`--workers`): every worker writes its metrics to files in one directory, and a
scrape reaching any worker adds them up (prometheus-client's MultiProcessCollector).

prometheus-client picks its storage when it is imported, so `prepare` runs before anything imports it,
and before the workers are forked. The directory is PROMETHEUS_MULTIPROC_DIR when set, else a fresh one
made here; either way it is emptied first (files of a previous run would add to this one's counts).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enabled() -> bool:
    """True when metrics are shared through files (set before prometheus-client was imported)."""
    return bool(os.environ.get(ENV))


def prepare(*, workers: int) -> Path | None:
    """Set up the directory for `workers` processes (None for one process without PROMETHEUS_MULTIPROC_DIR).
    Returns the directory when this call made it (the caller removes it at exit)."""
    given = os.environ.get(ENV)
    if not given and workers <= 1:
        return None  # one process, its own registry
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.glob("*.db"):
            entry.unlink()
        return None
    if "prometheus_client" in sys.modules:  # it chose per-process storage when imported
        raise RuntimeError("multiprocess metrics must be prepared before prometheus_client is imported")
    made = Path(tempfile.mkdtemp(prefix="wadm-metrics-"))
    os.environ[ENV] = str(made)
    return made


def worker_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters still count)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove(made: Path | None) -> None:
    """Remove a directory `prepare` made."""
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
