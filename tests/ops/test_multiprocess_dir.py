"""The metrics directory of `--workers`: made when not given, emptied when given, left alone for one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, sys
from wadm_grpc.metrics import multiprocess
made = multiprocess.prepare(workers=int(sys.argv[1]))
print(made or "-", os.environ.get("PROMETHEUS_MULTIPROC_DIR", "-"))
multiprocess.remove(made)
print(made is None or not made.exists())
"""


def prepare(workers: int, env: dict[str, str]) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(workers)], env=clean | env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_a_directory_is_made_for_workers_and_removed() -> None:
    made, env, removed = prepare(2, {})

    assert made != "-" and env == made
    assert removed == "True"


def test_a_given_directory_is_emptied_and_kept(tmp_path: Path) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")

    made, env, _ = prepare(2, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})

    assert (made, env) == ("-", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_one_process_without_a_directory_keeps_its_own_registry() -> None:
    assert prepare(1, {})[:2] == ["-", "-"]
