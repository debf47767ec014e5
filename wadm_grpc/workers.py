"""Several server processes sharing one port (SO_REUSEPORT), forked before any gRPC object exists.

The parent only forks, forwards SIGTERM/SIGINT and waits; each worker is a whole server (its own store
connection, cache and bus reader). If a worker dies on its own, the others are stopped too, so a
supervisor sees the failure and restarts the service instead of running it half-sized.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import replace
from types import FrameType

from wadm_grpc.config import Settings
from wadm_grpc.metrics import multiprocess

log = logging.getLogger("wadm_grpc.workers")


def run(settings: Settings) -> int:
    """Serve with settings.workers processes; the exit status is 0 when every worker stopped cleanly."""
    made = multiprocess.prepare(workers=settings.workers)  # before prometheus-client is imported
    try:
        return _run(settings)
    finally:
        multiprocess.remove(made)


def _run(settings: Settings) -> int:
    from wadm_grpc.bootstrap import serve

    if settings.workers == 1:
        asyncio.run(serve(settings))
        return 0
    children: dict[int, int] = {}
    for index in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through its exit status
            status = 0
            try:
                # One demo feed is enough: trades reach every worker through the Redis bus.
                asyncio.run(serve(replace(settings, demo_feed=settings.demo_feed and index == 0), worker=index))
            except BaseException:
                log.exception("worker failed", extra={"worker": index})
                status = 1
            os._exit(status)
        children[pid] = index
    log.info("workers started", extra={"workers": settings.workers, "pids": sorted(children)})
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    while children:
        pid, wait_status = os.wait()
        index = children.pop(pid, -1)
        multiprocess.worker_exited(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        worst = max(worst, abs(code))
        if index >= 0 and not stopping:
            log.error("worker exited; stopping the others", extra={"worker": index, "exit_code": code})
            forward(signal.SIGTERM, None)
            worst = max(worst, 1)
    return worst


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
