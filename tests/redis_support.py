"""A real redis-server per test: started on a free port in a temporary directory, stoppable, restartable."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.005


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process (no persistence, not daemonized) that tests can kill and bring back."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: run `make redis-server` (make test does it)")
        self._binary = binary
        self._directory = directory
        self._log = directory / "redis.log"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on `self.port` and return once it answers PING (bounded wait)."""
        assert not self.running, "already running"
        # Append: a restart keeps the first run's log for diagnosis.
        command = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._directory)]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        # Append: a restart keeps the first run's log for diagnosis.
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _answers_ping(self.port):
            if self._process.poll() is not None:
                pytest.fail(f"redis-server exited with {self._process.returncode}:\n{self._log.read_text()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"redis-server did not answer PING within {READY_TIMEOUT_SECONDS}s")
            time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        """SIGKILL, as a crash would: clients see their connections drop."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()  # SIGKILL also ends a stalled (SIGSTOPped) process
            self._process.wait(STOP_TIMEOUT_SECONDS)
            self._process = None

    def stall(self) -> None:
        """SIGSTOP: the process keeps its data and sockets but answers nothing (a hung Redis)."""
        assert self._process is not None and self.running
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `stall`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Kill if running, then start again on the same port (empty: nothing is persisted)."""
        self.kill()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server, killed at teardown whatever the test did."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.kill()
