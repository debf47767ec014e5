"""Section `http-streams`: live trades over HTTP (NDJSON, WebSocket) beside gRPC StreamTrades.

One real server (gateway on) per case, or for the "(gateway process)" cases the server with its gateway
off and `python -m wadm_grpc gateway` in a process of its own in front of it. N clients of one transport
follow one symbol each (client i: symbol i mod 20), and the same publisher as section `streaming` sends
the same load through PublishTrades. Warm-up, the publishing schedule, the drain and the tally are
bench/stream_load.py's; only the consumers differ: `GET /api/v1/market/trades:stream` read line by line
with httpx, and `/api/v1/market/ws/trades` with the `websockets` client, each decoding the JSON trades as
a browser would. Latency = ingest (publish wall time, the trade's time) to the client having decoded the
trade.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.datasets import Datasets
from bench.processes import ServerProcess, wadm_gateway, wadm_server
from bench.report import SectionResult, Table, ratio, times
from bench.stream_load import (
    CHANNEL_OPTIONS,
    HEARTBEAT_SECONDS,
    MEASURE_SECONDS,
    STREAMS_PER_CHANNEL,
    SYMBOLS,
    TRADES_PER_SECOND,
    Consumer,
    StreamRun,
    Tally,
    measure,
    publish_and_tally,
)
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc

CLIENT_COUNTS = (100, 1_000)
TICK_SECONDS = 0.05
GRPC = "gRPC StreamTrades"
NDJSON = "HTTP NDJSON"
WEBSOCKET = "WebSocket"
NDJSON_APART = "HTTP NDJSON (gateway process)"
WEBSOCKET_APART = "WebSocket (gateway process)"
APART = {NDJSON_APART: NDJSON, WEBSOCKET_APART: WEBSOCKET}
HttpConsume = Callable[[str, Consumer, Tally], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _record(trades: Sequence[dict[str, Any]], consumer: Consumer, tally: Tally) -> None:
    """Tally one message's trades like stream_load's gRPC consumer: warm-up ids mark the stream ready."""
    now_us = time.time_ns() // 1000
    measured = 0
    stamp = Timestamp()
    for trade in trades:
        if trade["trade_id"][0] == "w":
            if not consumer.ready:
                consumer.ready = True
                tally.ready += 1
            continue
        measured += 1
        stamp.FromJsonString(trade["time"])
        tally.latencies_us.append(now_us - stamp.ToMicroseconds())
    consumer.received += measured
    tally.received += measured
    tally.messages += 1
    tally.last_receipt = time.perf_counter()
    tally.progress.set()


async def _ndjson(client: httpx.AsyncClient, consumer: Consumer, tally: Tally) -> None:
    params = {"symbols": consumer.symbol, "heartbeat_interval": f"{HEARTBEAT_SECONDS}s"}
    try:
        async with client.stream("GET", "/api/v1/market/trades:stream", params=params) as response:
            if response.status_code != 200:
                consumer.error = f"HTTP {response.status_code}"
                return
            async for line in response.aiter_lines():
                if not line:
                    continue
                envelope = json.loads(line)
                if "error" in envelope:
                    consumer.error = f"error {envelope['error'].get('code')}"
                    return
                batch = envelope["result"].get("trades")
                if batch is not None:
                    _record(batch.get("trades", []), consumer, tally)
    except httpx.HTTPError as error:
        consumer.error = type(error).__name__
    finally:
        tally.progress.set()


async def _websocket(url: str, consumer: Consumer, tally: Tally) -> None:
    try:
        async with connect(url, max_size=None) as socket_:
            subscribe = {"op": "subscribe", "symbols": [consumer.symbol], "heartbeat_interval": HEARTBEAT_SECONDS}
            await socket_.send(json.dumps(subscribe))
            async for text in socket_:
                frame = json.loads(text)
                if frame["type"] == "trades":
                    _record(frame["trades"], consumer, tally)
                elif frame["type"] == "error":
                    consumer.error = f"error {frame['error'].get('code')}"
                    return
    except ConnectionClosed as closed:
        consumer.error = f"close {closed.rcvd.code if closed.rcvd else '?'}"
    except OSError as error:
        consumer.error = type(error).__name__
    finally:
        tally.progress.set()


async def _measure_http(server: ServerProcess, http_port: int, transport: str, streams: int) -> StreamRun:
    """N HTTP consumers of `transport`, then stream_load's publisher and tally."""
    base = f"127.0.0.1:{http_port}"
    consumers = [Consumer(SYMBOLS[i % len(SYMBOLS)]) for i in range(streams)]
    tally = Tally(consumers)
    groups = math.ceil(streams / STREAMS_PER_CHANNEL)
    limits = httpx.Limits(max_connections=STREAMS_PER_CHANNEL, max_keepalive_connections=0)
    # One httpx client per STREAMS_PER_CHANNEL streams, like the gRPC bench's channels; no read timeout.
    clients = [
        httpx.AsyncClient(base_url=f"http://{base}", limits=limits, timeout=httpx.Timeout(30, read=None))
        for _ in range(groups)
    ]
    ingest_channel = grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS)
    tasks: list[asyncio.Task[None]] = []
    try:
        for index, consumer in enumerate(consumers):
            if transport == NDJSON:
                work = _ndjson(clients[index // STREAMS_PER_CHANNEL], consumer, tally)
            else:
                work = _websocket(f"ws://{base}/api/v1/market/ws/trades", consumer, tally)
            tasks.append(asyncio.create_task(work))
        publish = ingest_grpc.TradeIngestServiceStub(ingest_channel).PublishTrades(timeout=600)
        return await publish_and_tally(server, streams, TICK_SECONDS, publish, tally)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()
        await ingest_channel.close()


async def run(data: Datasets) -> SectionResult:
    """For each N, each transport on a fresh server (fresh, empty store)."""
    runs: list[tuple[str, StreamRun]] = []
    gateway_cpu: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="wadm-bench-") as directory:
        for streams in CLIENT_COUNTS:
            for case, transport in enumerate((GRPC, NDJSON, WEBSOCKET, NDJSON_APART, WEBSOCKET_APART)):
                http_port = _free_port()
                apart = transport in APART
                env = {"WADM_HTTP": "false" if apart else "true", "WADM_HTTP_PORT": str(http_port)}
                store = Path(directory) / f"http-streams-{streams}-{case}.duckdb"
                async with wadm_server("wadm", store, env) as server:
                    if transport == GRPC:
                        result = await measure(server, streams, TICK_SECONDS)
                    elif apart:
                        async with wadm_gateway("gateway", server.target, http_port) as gateway:
                            began, cpu = time.perf_counter(), gateway.cpu_seconds()
                            result = await _measure_http(server, http_port, APART[transport], streams)
                            elapsed = time.perf_counter() - began
                            gateway_cpu[len(runs)] = 100 * (gateway.cpu_seconds() - cpu) / elapsed
                    else:
                        result = await _measure_http(server, http_port, transport, streams)
                runs.append((transport, result))
                print(f"  {transport}, {streams} clients: done", flush=True)
    return _report(runs, gateway_cpu)


def _report(runs: Sequence[tuple[str, StreamRun]], gateway_cpu: dict[int, float]) -> SectionResult:
    table = Table(
        f"Live trades by transport: {TRADES_PER_SECOND} trades/s over {len(SYMBOLS)} symbols for "
        f"{MEASURE_SECONDS:.0f} s, a batch every {TICK_SECONDS * 1000:.0f} ms; latency = ingest to client",
        [
            *("transport", "clients", "subscribed", "p50 ms", "p99 ms", "max ms", "lost", "cut off"),
            *("p50 vs gRPC", "p99 vs gRPC", "server CPU", "client CPU"),
        ],
    )
    baseline = {r.streams: r for transport, r in runs if transport == GRPC}
    for index, (transport, r) in enumerate(runs):
        grpc_run = baseline.get(r.streams)
        server_cpu = f"{r.server_cpu_percent:.0f}%"
        if index in gateway_cpu:
            server_cpu += f" + gateway {gateway_cpu[index]:.0f}%"
        table.add(
            transport,
            f"{r.streams:,}",
            f"{r.subscribed:,}",
            f"{r.latency_ms(50):.1f}",
            f"{r.latency_ms(99):.1f}",
            f"{max(r.latencies_us, default=0) / 1000:.0f}",
            f"{r.lost:,}" if r.lost is not None else f"? ({r.outcome}: {r.undelivered:,} not yet delivered)",
            ", ".join(f"{n} {code}" for code, n in r.cut_off.items()) or "0",
            times(ratio(r.latency_ms(50), grpc_run.latency_ms(50))) if grpc_run else "-",
            times(ratio(r.latency_ms(99), grpc_run.latency_ms(99))) if grpc_run else "-",
            server_cpu,
            f"{r.client_cpu_percent:.0f}%",
        )
    table.notes += [
        "one server process (gRPC + its gateway) per row; the HTTP clients decode JSON, the gRPC ones protobuf",
        "lost: trades of a client's symbol it never received (clients still open), once deliveries settled",
        "server CPU: the one process serving gRPC and the gateway, in % of one core; '(gateway process)' rows:"
        " the gRPC server alone (WADM_HTTP=false) while `python -m wadm_grpc gateway` serves HTTP in a process"
        " of its own (its CPU averaged over the whole run, subscribe phase included)",
    ]
    figures: dict[str, object] = {
        "trades_per_second": TRADES_PER_SECOND,
        "measure_seconds": MEASURE_SECONDS,
        "batch_every_ms": TICK_SECONDS * 1000,
        "runs": [
            {"transport": transport, **r.figures(), "gateway_cpu_percent": gateway_cpu.get(index)}
            for index, (transport, r) in enumerate(runs)
        ],
    }
    return SectionResult("http-streams", [table], figures)
