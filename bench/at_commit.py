"""`python -m bench --commit REV`: measure one commit of the product, whatever the working tree holds.

The commit is exported (`git archive`) into a temporary directory, this bench/ is copied beside it (so the
harness is the current one), and the bench runs there: the servers, the client and the dataset builder
all import that commit's code. Datasets and results stay in this checkout's bench/.data and bench/results.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SOURCE_VARIABLE = "BENCH_SOURCE"


def run_at_commit(revision: str, argv: Sequence[str]) -> int:
    """Run `python -m bench ARGV` against `revision`; returns its exit status."""
    commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}").decode().strip()
    archive = _git("archive", "--format=tar", commit)
    with tempfile.TemporaryDirectory(prefix="wadm-bench-source-") as directory:
        tree = Path(directory)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        shutil.rmtree(tree / "bench", ignore_errors=True)
        shutil.copytree(BENCH, tree / "bench", ignore=shutil.ignore_patterns(".data", "results", "__pycache__"))
        for name in (".data", "results"):
            (BENCH / name).mkdir(exist_ok=True)
            (tree / "bench" / name).symlink_to(BENCH / name, target_is_directory=True)
        env = os.environ | {
            SOURCE_VARIABLE: f"{commit[:7]} (exported; bench/ from the working tree)",
            "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "clients" / "python")]),
        }
        print(f"measuring commit {commit[:7]} from {tree}", flush=True)
        return _run_child([sys.executable, "-m", "bench", *argv], cwd=tree, env=env)


def _run_child(argv: list[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Run the bench child; SIGTERM/SIGHUP are passed on, and it is never left running (it stops its servers)."""
    child = subprocess.Popen(argv, cwd=cwd, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout
