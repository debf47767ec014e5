"""`pip install ./clients/python` in a fresh venv: only the client's dependencies, and the examples and CLI run."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.clients.conftest import Seeded
from tests.clients.test_client import fresh_trades, live_streams, publish_once_streaming

pytestmark = pytest.mark.timeout(600)  # a venv, a wheel build and an install, on a loaded machine

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
SERVER_ONLY = {"duckdb", "pyarrow", "pymongo", "redis", "hiredis", "starlette", "uvicorn", "websockets", "wadm-grpc"}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the client installed from a copy of clients/python (the build writes beside its sources)."""
    root = tmp_path_factory.mktemp("fresh")
    source = root / "src"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    venv.create(root / "venv", with_pip=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, str(source)], check=True, timeout=300)  # pip's wheel cache keeps this quick on re-runs
    return root / "venv"


def test_installs_none_of_the_servers_dependencies(fresh_venv: Path) -> None:
    listed = subprocess.run(
        [fresh_venv / "bin" / "python", "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}

    assert {"wadm-client", "grpcio", "protobuf", "googleapis-common-protos", "rich"} <= names
    assert not names & SERVER_ONLY
    gone = subprocess.run(  # from elsewhere than the worktree, which would be on sys.path
        [fresh_venv / "bin" / "python", "-c", "import wadm_grpc"], capture_output=True, check=False, cwd=fresh_venv
    )
    assert gone.returncode != 0


def run(fresh_venv: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A program of the fresh venv, run from inside it (not the worktree)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, cwd=fresh_venv)


def test_the_examples_and_the_cli_run_from_it(fresh_venv: Path, seeded: Seeded) -> None:
    python, wadm, target = fresh_venv / "bin" / "python", fresh_venv / "bin" / "wadm", seeded.server.target
    examples = CLIENT / "examples"

    sync = run(fresh_venv, python, examples / "candles_sync.py", "SOLUSDT", "--target", target)
    assert sync.returncode == 0, sync.stderr
    assert "bids:" in sync.stdout and "asks:" in sync.stdout

    before = live_streams(target)
    publisher = publish_once_streaming(target, fresh_trades("SOLUSDT", 2, first_id=70_000), streams=before + 1)
    watched = run(fresh_venv, python, examples / "watch_market.py", "SOLUSDT", "--target", target, "--trades", "2")
    publisher.join(30)
    assert watched.returncode == 0, watched.stderr
    assert "SOLUSDT 1m candles:" in watched.stdout and "150.125" in watched.stdout

    table = run(fresh_venv, wadm, "candles", "BTCUSDT", "1m", "--limit", "3", "--target", target)
    assert table.returncode == 0, table.stderr
    assert sum(line.startswith("│") for line in table.stdout.splitlines()) == 3
    lines = run(fresh_venv, wadm, "candles", "BTCUSDT", "1m", "--limit", "3", "--json", "--target", target).stdout
    candles = [json.loads(line) for line in lines.splitlines()]
    assert len(candles) == 3 and all(isinstance(c["close"], str) for c in candles)
