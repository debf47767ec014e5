"""A streaming run with the consumers in several client processes (bench/stream_clients.py).

Same publisher, schedule and tally as bench/stream_load.py; only the consumers move out of the bench
process, so that at 1,000+ streams the client's own event loop (protobuf parsing, latency bookkeeping) is
not what the latency measures. The publisher may target another process than the streams (a writer
beside read-only `--workers`), and the CPU of every server process (workers included) is metered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bench.processes import ROOT, CpuMeter, ServerProcess
from bench.stream_load import (
    CHANNEL_OPTIONS,
    DRAIN_MAX_SECONDS,
    Consumer,
    StreamRun,
    Tally,
    Window,
    publish_window,
    warm_up,
)
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc

# Beyond the drain: how long the processes may take to send their tallies.
REPORT_TIMEOUT_SECONDS = 60.0


@dataclass
class _Client:
    process: asyncio.subprocess.Process
    ready: int = 0
    result: dict[str, Any] | None = None

    async def send(self, command: dict[str, object]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()


async def _follow(client: _Client, clients: Sequence[_Client], tally: Tally) -> None:
    """Read one client process's lines: readiness into `tally.ready`, then its result."""
    assert client.process.stdout is not None
    while line := await client.process.stdout.readline():
        message = json.loads(line)
        if "ready" in message:
            client.ready = int(message["ready"])
            tally.ready = sum(c.ready for c in clients)
        elif "result" in message:
            client.result = message["result"]
        tally.progress.set()


async def measure_in_processes(
    server: ServerProcess,
    streams: int,
    tick_seconds: float,
    *,
    client_processes: int,
    publisher: ServerProcess | None = None,
) -> StreamRun:
    """`streams` streams to `server` from `client_processes` processes; trades published to `publisher`
    (default: `server`). Bounded like bench/stream_load.measure."""
    publisher = publisher or server
    share = math.ceil(streams / client_processes)
    clients: list[_Client] = []
    tally = Tally([])
    readers: list[asyncio.Task[None]] = []
    ingest_channel = grpc.aio.insecure_channel(publisher.target, options=CHANNEL_OPTIONS)
    try:
        for first in range(0, streams, share):
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.stream_clients", server.target, str(first)),
                str(min(share, streams - first)),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 28,  # the result line holds every latency
            )
            clients.append(_Client(process))
        readers = [asyncio.create_task(_follow(c, clients, tally)) for c in clients]
        publish = ingest_grpc.TradeIngestServiceStub(ingest_channel).PublishTrades(timeout=600)
        subscribe_seconds = await warm_up(server, streams, publish, tally)
        meter = CpuMeter([server] if publisher is server else [server, publisher])
        meter.start()
        for client in clients:
            await client.send({"start": True})
        window = await publish_window(tick_seconds, publish)
        await publish.done_writing()
        ingest_lag = math.nan
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(DRAIN_MAX_SECONDS):
                await publish
                ingest_lag = time.perf_counter() - window.start - window.seconds
        expected = dict(window.per_symbol)
        for client in clients:
            await client.send({"drain": expected})
        async with asyncio.timeout(DRAIN_MAX_SECONDS + REPORT_TIMEOUT_SECONDS):
            await asyncio.gather(*readers)
        meter.stop()
        server.check_alive()
        publisher.check_alive()
        return _run(server, streams, tick_seconds, clients, window, subscribe_seconds, ingest_lag, meter)
    finally:
        for task in readers:
            task.cancel()
        for client in clients:
            if client.process.returncode is None:
                client.process.kill()
            await client.process.wait()
        await ingest_channel.close()


def _run(
    server: ServerProcess,
    streams: int,
    tick_seconds: float,
    clients: Sequence[_Client],
    window: Window,
    subscribe_seconds: float,
    ingest_lag: float,
    meter: CpuMeter,
) -> StreamRun:
    results = [c.result for c in clients]
    if any(r is None for r in results):
        raise RuntimeError("a client process ended without its tally")
    consumers: list[Consumer] = []
    latencies: list[int] = []
    messages = 0
    last_receipt = 0.0
    outcomes: set[str] = set()
    for result in results:
        assert result is not None
        for symbol, ready, received, error in result["consumers"]:
            consumers.append(Consumer(symbol, ready, received, error))
        latencies += result["latencies_us"]
        messages += int(result["messages"])
        last_receipt = max(last_receipt, float(result["last_receipt"]))
        outcomes.add(str(result["outcome"]))
    subscribed = [c for c in consumers if c.ready]
    expected = {id(c): window.per_symbol[c.symbol] for c in subscribed}
    undelivered = sum(max(0, expected[id(c)] - c.received) for c in subscribed if c.error is None)
    if math.isnan(ingest_lag):
        outcome = "ingest unfinished"
    elif "deadline" in outcomes and undelivered:
        outcome = "backlog at cutoff"
    else:
        outcome = "settled"
    client_cpu = sum(float(r["cpu_seconds"]) for r in results if r is not None)
    server_cpu = sum(meter.server_percent)
    return StreamRun(
        server=server.name,
        streams=streams,
        tick_seconds=tick_seconds,
        subscribed=len(subscribed),
        subscribe_seconds=subscribe_seconds,
        published=window.published,
        publish_seconds=window.seconds,
        late_ticks=window.late_ticks,
        expected=sum(expected.values()),
        received=sum(c.received for c in consumers),
        undelivered=undelivered,
        outcome=outcome,
        ingest_lag_seconds=ingest_lag,
        messages=messages,
        delivery_seconds=max(last_receipt - window.start, window.seconds),
        latencies_us=latencies,
        cut_off=Counter(c.error for c in consumers if c.error is not None),
        server_cpu_percent=server_cpu,
        client_cpu_percent=100 * client_cpu / max(window.seconds, time.perf_counter() - window.start),
        server_rss_mib=server.rss_mib(),
        client_processes=len(clients),
    )
