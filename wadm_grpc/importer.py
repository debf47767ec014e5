"""`python -m wadm_grpc import`: load Binance public-data trade files (.csv, .zip) through PublishTrades or
straight into the DuckDB file (--direct); resumable, with a progress bar on a terminal.

Exit status: 0 every file loaded; 1 a file had bad rows or the server failed; 2 refused before
importing anything (ambiguous market, no symbol, locked store, no server named); 130 Ctrl-C (after
the batch in flight is committed and reported).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from wadm_grpc.config import Settings
from wadm_grpc.domain.errors import FailedPreconditionError, InvalidArgumentError
from wadm_grpc.domain.names import exchange_problem, normalize_symbol
from wadm_grpc.feeds.binance_files import FileRefused, Market, Position, TradeFile, describe, read_batches
from wadm_grpc.imports.destinations import (
    Batch,
    Counts,
    Destination,
    DirectDestination,
    IngestDestination,
    ServiceDestination,
)
from wadm_grpc.imports.progress import Progress
from wadm_grpc.imports.rows import skip_stored

# Listening on every interface is served on loopback too: that is where a local import connects.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}
INTERRUPTED = 130


def default_target(settings: Settings) -> str:
    """host:port of the server these settings describe (a nonzero port), as a client on this machine reaches it."""
    host = settings.host
    if host in _WILDCARD_HOSTS:
        host = "::1" if ":" in host else "127.0.0.1"
    host = host.strip("[]")
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """What the command line asked for."""

    files: list[str]
    exchange: str | None = None
    market: str | None = None
    symbol: str | None = None
    target: str | None = None
    direct: bool = False
    progress: bool | None = None  # None: a bar when stderr is a terminal


def _plan(request: ImportRequest) -> list[TradeFile]:
    """Every file described, or FileRefused / InvalidArgumentError before anything is imported."""
    exchange = None
    if request.exchange is not None:
        exchange, problem = exchange_problem(request.exchange)
        if problem:
            raise InvalidArgumentError.of("--exchange", problem)
    market = Market[request.market.upper()] if request.market else None
    planned = []
    for name in request.files:
        path = Path(name)
        try:
            described = describe(path, exchange=exchange, market=market, symbol=request.symbol)
        except FileRefused as error:
            raise FileRefused(f"{path}: {error}") from error
        symbol = normalize_symbol(described.symbol, field=f"{path}: symbol")
        planned.append(dataclasses.replace(described, symbol=symbol))
    return planned


async def run_import(settings: Settings, request: ImportRequest) -> int:
    """Import each file in order; print one summary line per file; the exit status."""
    if request.target is None and not request.direct and settings.port == 0:
        print("error: WADM_PORT=0 names no server to publish to; pass --target host:port", file=sys.stderr)
        return 2
    try:
        planned = _plan(request)
    except (FileRefused, InvalidArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = _Stop()
    stop.install()
    try:
        if request.direct:
            return await _run_direct(settings, planned, request, stop)
        from wadm_client import RawWadmClient

        target = request.target or default_target(settings)
        async with RawWadmClient.connect(target, timeout_seconds=3600) as client:
            return await _run_all(planned, ServiceDestination(client), request, stop)
    finally:
        stop.uninstall()


async def _run_direct(settings: Settings, planned: list[TradeFile], request: ImportRequest, stop: _Stop) -> int:
    path = settings.duckdb_path
    if path is None:  # MongoDB: through the ingest service in this process
        from wadm_grpc.bootstrap import bootstrap

        app = await bootstrap(settings)
        try:
            return await _run_all(planned, IngestDestination(app), request, stop)
        finally:
            await app.close()
    from wadm_grpc.stores.duckdb.bulk_load import DuckDBBulkLoader

    try:
        loader = DuckDBBulkLoader.open(path)
    except FailedPreconditionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    latest_us = time.time_ns() // 1000 + round(settings.max_future_seconds * 1_000_000)
    try:
        return await _run_all(planned, DirectDestination(loader, latest_us=latest_us), request, stop)
    finally:
        began = time.perf_counter()
        if await loader.finish():  # even after Ctrl-C: what was loaded gets its rollups
            print(f"rollups rebuilt in {time.perf_counter() - began:.1f} s")


async def _run_all(planned: list[TradeFile], destination: Destination, request: ImportRequest, stop: _Stop) -> int:
    status = 0
    show_bar = sys.stderr.isatty() if request.progress is None else request.progress
    for trade_file in planned:
        if stop.requested:
            break
        counts = Counts()
        began = time.perf_counter()
        try:
            with Progress(trade_file, enabled=show_bar, force_terminal=request.progress is True) as progress:
                await _import_file(trade_file, destination, counts, progress, stop)
        except (InvalidArgumentError, FileRefused) as error:
            print(f"{trade_file.path}: rejected: {error}", file=sys.stderr)
            status = 1
        except grpc.aio.AioRpcError as error:
            print(f"{trade_file.path}: {error.code().name}: {error.details()}", file=sys.stderr)
            status = 1
        print(_summary(trade_file, counts, time.perf_counter() - began, interrupted=stop.requested), flush=True)
    if stop.requested:
        print(
            "interrupted: what each line above reports is stored; run the same command again to resume", file=sys.stderr
        )
        return INTERRUPTED
    return status


async def _import_file(
    trade_file: TradeFile,
    destination: Destination,
    counts: Counts,
    progress: Progress,
    stop: _Stop,
    *,
    resume: bool = True,
) -> None:
    stored = await destination.stored_range(trade_file.exchange, trade_file.symbol) if resume else None
    position = Position()

    async def batches() -> AsyncIterator[Batch]:
        first_line = 2 if trade_file.has_header else 1
        for rows in read_batches(trade_file, position):
            counts.read += rows.num_rows
            kept, skipped = skip_stored(rows, stored)
            counts.skipped += skipped
            if kept.num_rows:
                yield Batch(kept, first_line)  # lines are exact while nothing is skipped
            first_line += rows.num_rows
            progress.update(position.bytes_read, counts.read)
            await asyncio.sleep(0)  # let a Ctrl-C be seen between batches
            if stop.requested:
                return

    await destination.write(trade_file, batches(), counts)


def _summary(trade_file: TradeFile, counts: Counts, seconds: float, *, interrupted: bool) -> str:
    rate = counts.read / seconds if seconds > 0 else 0.0
    return (
        f"{trade_file.path}: {trade_file.symbol} on {trade_file.exchange}: {counts.read} read, "
        f"{counts.inserted} accepted, {counts.duplicates} duplicates, {counts.skipped} skipped as already stored, "
        f"{seconds:.1f} s, {rate:,.0f} rows/s{' (interrupted)' if interrupted else ''}"
    )


class _Stop:
    """Ctrl-C once: finish the batch in flight, report, exit 130. Twice: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._task: asyncio.Task[object] | None = None

    def install(self) -> None:
        self._task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_signal)

    def uninstall(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_signal(self) -> None:
        if self.requested and self._task is not None:
            self._task.cancel()
        self.requested = True


async def publish_file(target: str, path: Path, exchange: str, symbol: str) -> tuple[int, int]:
    """Publish every row of one file (no resume skipping) to the server at `target` as `exchange`/`symbol`;
    (accepted, duplicates)."""
    from wadm_client import RawWadmClient

    described = describe(path, exchange=exchange, market=None, symbol=symbol)
    counts = Counts()
    async with RawWadmClient.connect(target, timeout_seconds=3600) as client:
        with Progress(described, enabled=False) as progress:
            await _import_file(described, ServiceDestination(client), counts, progress, _Stop(), resume=False)
    return counts.inserted, counts.duplicates
