"""Server subprocesses on 127.0.0.1: the real service and the bench's empty servers, always killed at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

# The line both the real server and the bench's empty servers log once they listen (JSON on stderr).
READY_MESSAGE = "wadm-grpc started"
GATEWAY_READY_MESSAGE = "wadm-grpc gateway started"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


class ServerFailed(RuntimeError):
    """A server subprocess did not start, or died."""


@dataclass
class ServerProcess:
    """A started server: its address and a way to read its CPU time."""

    name: str
    process: asyncio.subprocess.Process
    target: str
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all threads), and of its live child processes
        (the workers of `--workers N`)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return _process_cpu_seconds(pid) + sum(_process_cpu_seconds(int(child)) for child in children)

    def rss_mib(self) -> float:
        """Resident memory in MiB."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return float("nan")
        line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
        return int(line.split()[1]) / 1024

    def check_alive(self) -> None:
        """Raise ServerFailed (with the end of its log) if the process has exited."""
        if self.process.returncode is not None:
            tail = "\n".join(self.log_tail)
            raise ServerFailed(f"{self.name} exited with {self.process.returncode}:\n{tail}")


def wadm_env(store_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of `python -m wadm_grpc serve` for the bench: no inherited WADM_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WADM_")}
    env |= {
        "WADM_HOST": "127.0.0.1",
        "WADM_PORT": "0",
        "WADM_STORE": f"duckdb:{store_path}",
        "WADM_DEMO_FEED": "false",
        "WADM_LOG_FORMAT": "json",
        "WADM_GRACE_SECONDS": "1",
        "WADM_HTTP": "false",  # bench/http.py measures the gateway; here it would only hold port 8080
        # The benches put up to 100 streams and 64 calls on one channel; the server's default cap (32 calls
        # per connection) is measured by section abuse, which sets it explicitly.
        "WADM_GRPC_MAX_CONCURRENT_STREAMS": "1000",
    }
    return env | dict(extra or {})


@asynccontextmanager
async def wadm_server(
    name: str, store_path: Path, extra_env: Mapping[str, str] | None = None, *, workers: int = 1
) -> AsyncIterator[ServerProcess]:
    """The real service (`python -m wadm_grpc serve`) on a free port of 127.0.0.1 (with `workers`, a fixed
    port must be in `extra_env`; ready once every worker logged that it serves)."""
    argv = [sys.executable, "-m", "wadm_grpc", "serve"]
    async with _server(name, argv, wadm_env(store_path, extra_env), ready_count=workers) as server:
        yield server


@asynccontextmanager
async def wadm_gateway(name: str, target: str, http_port: int) -> AsyncIterator[ServerProcess]:
    """`python -m wadm_grpc gateway` (the HTTP/JSON face in its own process) on 127.0.0.1:`http_port`,
    forwarding to the gRPC server at `target`; its `target` is the HTTP address."""
    argv = [sys.executable, "-m", "wadm_grpc", "gateway", "--target", target, "--host", "127.0.0.1"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("WADM_")}
    env["WADM_LOG_FORMAT"] = "json"
    async with _server(name, [*argv, "--port", str(http_port)], env, ready=GATEWAY_READY_MESSAGE) as gateway:
        yield gateway


@asynccontextmanager
async def empty_server(name: str, candles_response: Path | None = None) -> AsyncIterator[ServerProcess]:
    """The bench's empty servicers (bench/empty_server.py) on a free port of 127.0.0.1."""
    argv = [sys.executable, "-m", "bench.empty_server"]
    if candles_response is not None:
        argv += ["--candles-response", str(candles_response)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("WADM_")}
    async with _server(name, argv, env) as server:
        yield server


@asynccontextmanager
async def _server(
    name: str, argv: list[str], env: dict[str, str], *, ready_count: int = 1, ready: str = READY_MESSAGE
) -> AsyncIterator[ServerProcess]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServerProcess(name=name, process=process, target="")
    reader: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            port = await _wait_for_port(server, ready_count, ready)
        server.target = f"127.0.0.1:{port}"
        # Keep reading the log so the server never blocks on a full pipe.
        reader = asyncio.create_task(_keep_reading(server))
        yield server
    finally:
        await _stop(process)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _wait_for_port(server: ServerProcess, ready_count: int = 1, ready_message: str = READY_MESSAGE) -> int:
    stderr = server.process.stderr
    assert stderr is not None
    ready = 0
    while True:
        line = await stderr.readline()
        if not line:
            await server.process.wait()
            server.check_alive()
        text = line.decode(errors="replace").rstrip()
        server.log_tail.append(text)
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict) and record.get("message") == ready_message:
                ready += 1
                if ready == ready_count:
                    return int(record["port"])


async def _keep_reading(server: ServerProcess) -> None:
    stderr = server.process.stderr
    assert stderr is not None
    while line := await stderr.readline():
        server.log_tail.append(line.decode(errors="replace").rstrip())


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (graceful drain), then SIGKILL if it is still there after a few seconds (or if we are cancelled)."""
    try:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                    await process.wait()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


@dataclass
class CpuMeter:
    """CPU used by the bench process and some servers between start() and stop(), as % of one core."""

    servers: list[ServerProcess]
    _wall: float = 0.0
    _client: float = 0.0
    _server: list[float] = field(default_factory=list)
    client_percent: float = float("nan")
    server_percent: list[float] = field(default_factory=list)

    def start(self) -> None:
        """Begin the window."""
        self._wall = time.perf_counter()
        self._client = _own_cpu_seconds()
        self._server = [s.cpu_seconds() for s in self.servers]

    def stop(self) -> None:
        """End the window and compute the percentages."""
        wall = time.perf_counter() - self._wall
        self.client_percent = 100 * (_own_cpu_seconds() - self._client) / wall
        self.server_percent = [
            100 * (s.cpu_seconds() - before) / wall for s, before in zip(self.servers, self._server, strict=True)
        ]


def _process_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
