"""The `wadm` command line against a real seeded server: tables, JSON lines, CSV, exit codes, a pty for the terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.clients.conftest import Seeded
from tests.clients.test_client import fresh_trades, publish_once_streaming
from wadm_client import WadmSyncClient

WADM = [str(Path(sys.executable).parent / "wadm")]  # the console script the package installs


def wadm(*args: str, target: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = os.environ | (env or {})
    if target is not None:
        environment["WADM_TARGET"] = target
    return subprocess.run([*WADM, *args], capture_output=True, text=True, env=environment, timeout=60, check=False)


def test_candles_table_off_a_terminal(seeded: Seeded) -> None:
    done = wadm("candles", "BTCUSDT", "1m", "--limit", "3", target=seeded.server.target)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].strip() == "BTCUSDT 1m"
    assert "open_time" in lines[2] and "close" in lines[2]
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 3
    assert len({line.index("│", 2) for line in rows}) == 1  # aligned columns


def test_candles_json_lines_keep_exact_decimals(seeded: Seeded) -> None:
    done = wadm("candles", "BTCUSDT", "1m", "--limit", "1000", "--json", target=seeded.server.target)

    assert done.returncode == 0, done.stderr
    candles = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(c["trade_count"] for c in candles) == len(seeded.trades["BTCUSDT"])
    assert sum(Decimal(c["volume"]) for c in candles) == sum(Decimal(t.quantity) for t in seeded.trades["BTCUSDT"])
    assert isinstance(candles[0]["open"], str) and candles[0]["open_time"].endswith("Z")


def test_book_and_trades_as_csv(seeded: Seeded) -> None:
    book = list(
        csv.DictReader(
            io.StringIO(wadm("book", "SOLUSDT", "--depth", "4", "--csv", target=seeded.server.target).stdout)
        )
    )
    assert [row["side"] for row in book] == ["ask"] * 4 + ["bid"] * 4
    assert Decimal(book[3]["price"]) > Decimal(book[4]["price"])  # best ask above best bid, asks printed top-down

    trades = list(
        csv.DictReader(
            io.StringIO(wadm("trades", "ETHUSDT", "--since", "1h", "--csv", target=seeded.server.target).stdout)
        )
    )
    assert len(trades) == len(seeded.trades["ETHUSDT"])  # every page
    assert trades[0]["trade_id"] == seeded.trades["ETHUSDT"][-1].trade_id


def test_stats_and_symbols(seeded: Seeded) -> None:
    stats = [
        json.loads(line)
        for line in wadm("stats", "BTCUSDT", "NOPEUSDT", "--json", target=seeded.server.target).stdout.splitlines()
    ]
    assert [s["symbol"] for s in stats] == ["BTCUSDT", "NOPEUSDT"]
    assert stats[0]["last_price"] == seeded.trades["BTCUSDT"][-1].price and stats[1]["last_price"] is None

    symbols = wadm("symbols", "--json", target=seeded.server.target).stdout.splitlines()
    assert sorted(json.loads(line)["symbol"] for line in symbols) == sorted(seeded.trades)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("candles", "BTC USDT", "1m", "--limit", "5000"), 2, ("INVALID_ARGUMENT", "symbol:", "limit:")),
        (("candles", "BTCUSDT", "2m"), 2, ("timeframe must be one of",)),
        (("book", "NOPEUSDT"), 3, ("NOT_FOUND",)),
        (("stats", "BTCUSDT", "--window", "2h"), 2, ("window must be one of",)),
    ],
)
def test_errors_are_one_line_and_an_exit_code(
    seeded: Seeded, args: tuple[str, ...], code: int, words: tuple[str, ...]
) -> None:
    done = wadm(*args, target=seeded.server.target)

    assert done.returncode == code
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("wadm: ")
    assert all(word in done.stderr for word in words)
    assert "Traceback" not in done.stderr


def test_an_unreachable_server_is_exit_6_and_the_flag_wins_over_the_environment(seeded: Seeded) -> None:
    done = wadm("symbols", "--target", "127.0.0.1:9", "--timeout", "3", target=seeded.server.target)

    assert done.returncode == 6
    assert done.stderr.startswith("wadm: UNAVAILABLE") and len(done.stderr.splitlines()) == 1


def test_tail_prints_live_trades_as_json_lines(seeded: Seeded) -> None:
    trades = fresh_trades("ETHUSDT", 2, first_id=50_000)
    env = os.environ | {"WADM_TARGET": seeded.server.target}
    with subprocess.Popen([*WADM, "tail", "ETHUSDT", "--json"], stdout=subprocess.PIPE, text=True, env=env) as tail:
        try:
            from tests.clients.test_client import live_streams

            publish_once_streaming(seeded.server.target, trades, streams=live_streams(seeded.server.target) + 1)
            assert tail.stdout is not None
            got = [json.loads(tail.stdout.readline()) for _ in trades]
        finally:
            tail.send_signal(signal.SIGINT)
        assert tail.wait(30) == 130
    assert [t["trade_id"] for t in got] == [t.trade_id for t in trades]
    assert got[0]["price"] == "150.125" and got[0]["side"] == "buy"


def test_candles_live_prints_the_open_candle_as_json_lines(seeded: Seeded) -> None:
    trades = fresh_trades("BTCUSDT", 2, first_id=60_000)  # bybit: the only ones of this minute
    with WadmSyncClient.connect(seeded.server.target) as publisher:
        publisher.publish_trades([trades])  # stored before the stream opens: its first message has them
    env = os.environ | {"WADM_TARGET": seeded.server.target}
    command = [*WADM, "candles", "BTCUSDT", "1m", "--live", "--exchange", "bybit", "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as live:
        try:
            assert live.stdout is not None
            first = json.loads(live.stdout.readline())
        finally:
            live.send_signal(signal.SIGINT)
        assert live.wait(30) == 130
    minute_us = trades[0].time.seconds * 1_000_000 // 60_000_000 * 60_000_000
    assert first["trade_count"] == 2 and first["open"] == "150.125" and first["volume"] == "1.0"
    assert first["open_time"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(minute_us / 1e6)))


def read_pty(fd: int, until: bytes, *, seconds: float = 60) -> bytes:
    """What the program wrote to its terminal, until `until` has appeared (or the deadline: then fail)."""
    data = b""
    deadline = time.monotonic() + seconds
    while until not in data:
        assert time.monotonic() < deadline, data.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the program ended and closed the terminal
                break
            data += chunk
    return data


def run_on_pty(args: list[str], target: str) -> tuple[subprocess.Popen[bytes], int]:
    main, child = pty.openpty()
    env = os.environ | {"WADM_TARGET": target, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(args, stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    return process, main


def test_on_a_terminal_candles_are_a_drawn_table(seeded: Seeded) -> None:
    process, fd = run_on_pty([*WADM, "candles", "SOLUSDT", "1m", "--limit", "2"], seeded.server.target)
    try:
        out = read_pty(fd, b"\xe2\x94\x94")  # the table's bottom-left corner
        assert process.wait(30) == 0
    finally:
        os.close(fd)
    text = out.decode()
    assert "┃" in text and "open_time" in text and "SOLUSDT 1m" in text


def test_watch_redraws_the_newest_candles_in_place_until_ctrl_c(seeded: Seeded, tmp_path: Path) -> None:
    args = [*WADM, "candles", "BTCUSDT", "1m", "--watch", "--interval", "0.2", "--limit", "2"]
    process, fd = run_on_pty(args, seeded.server.target)
    try:
        first = read_pty(fd, b"Ctrl-C to stop")
        again = read_pty(fd, b"\x1b[2K")  # rich.live erases the lines it drew, then draws them again
        again += read_pty(fd, b"Ctrl-C to stop")
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        rest = b""
    finally:
        os.close(fd)
    assert b"BTCUSDT 1m" in first and b"Traceback" not in first + again + rest


def test_flags_before_the_command_and_a_bad_environment(seeded: Seeded) -> None:
    before = wadm("--json", "--target", seeded.server.target, "symbols", env={"WADM_TARGET": "127.0.0.1:9"})
    assert before.returncode == 0, before.stderr
    assert sorted(json.loads(line)["symbol"] for line in before.stdout.splitlines()) == sorted(seeded.trades)

    bad = wadm("symbols", target=seeded.server.target, env={"WADM_TIMEOUT": "soon"})
    assert bad.returncode == 2 and bad.stderr == "wadm: WADM_TIMEOUT must be seconds, got 'soon'\n"
