"""`python -m bench.stream_clients TARGET FIRST COUNT`: one process of StreamTrades consumers (bench/stream_load.py).

Streams FIRST .. FIRST+COUNT-1 (stream i follows symbol i mod 20, STREAMS_PER_CHANNEL per connection), tallied
like the in-process consumers. Run in several processes, the consumers' protobuf parsing and latency
bookkeeping no longer share one event loop, as the clients of a real deployment would not.

JSON lines. Out: {"ready": n} whenever more of its streams have received a warm-up trade; at the end
{"result": {...}}. In: {"start": true} when the measured window begins (CPU is counted from there);
{"drain": {symbol: expected}} once ingest has finished: wait until every stream has what it should, or no
delivery came for QUIET_SECONDS (at most DRAIN_MAX_SECONDS), then report and exit.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import sys
import time

import grpc

from bench.stream_load import (
    CHANNEL_OPTIONS,
    DRAIN_MAX_SECONDS,
    HEARTBEAT_SECONDS,
    QUIET_SECONDS,
    STREAMS_PER_CHANNEL,
    SYMBOLS,
    Consumer,
    Tally,
    consume,
    wait_until,
)
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _report_ready(tally: Tally, streams: int) -> None:
    said = 0
    while said < streams:
        tally.progress.clear()
        if tally.ready != said:
            said = tally.ready
            _say({"ready": said})
            continue
        await tally.progress.wait()


async def _drain(tally: Tally, expected: dict[str, int]) -> str:
    consumers = tally.consumers

    def complete() -> bool:
        return all(c.error is not None or not c.ready or c.received >= expected.get(c.symbol, 0) for c in consumers)

    drain_began = time.perf_counter()

    def settled() -> bool:
        return complete() or time.perf_counter() - max(tally.last_receipt, drain_began) > QUIET_SECONDS

    await wait_until(settled, tally, time.perf_counter() + DRAIN_MAX_SECONDS)
    if complete():
        return "complete"
    return "quiet" if settled() else "deadline"


async def main(target: str, first: int, count: int) -> None:
    """Open the streams, report readiness, follow the parent's commands, report the tally."""
    consumers = [Consumer(SYMBOLS[i % len(SYMBOLS)]) for i in range(first, first + count)]
    tally = Tally(consumers)
    channels = [
        grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        for _ in range(math.ceil(count / STREAMS_PER_CHANNEL))
    ]
    tasks = []
    for index, consumer in enumerate(consumers):
        request = md.StreamTradesRequest(symbols=[consumer.symbol])
        request.heartbeat_interval.FromSeconds(HEARTBEAT_SECONDS)
        call = md_grpc.MarketDataServiceStub(channels[index // STREAMS_PER_CHANNEL]).StreamTrades(request)
        tasks.append(asyncio.create_task(consume(call, consumer, tally)))
    ready = asyncio.create_task(_report_ready(tally, count))
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    cpu_start = _cpu_seconds()
    outcome = "no drain command"
    while line := await commands.readline():
        command = json.loads(line)
        if "start" in command:
            cpu_start = _cpu_seconds()
        elif "drain" in command:
            outcome = await _drain(tally, command["drain"])
            break
    cpu = _cpu_seconds() - cpu_start
    # The tally as it stands now: cancelling the calls below must not count as the server ending them.
    result = {
        "outcome": outcome,
        "latencies_us": tally.latencies_us,
        "messages": tally.messages,
        "last_receipt": tally.last_receipt,  # perf_counter: CLOCK_MONOTONIC, the same in every process
        "consumers": [[c.symbol, c.ready, c.received, c.error] for c in consumers],
        "cpu_seconds": cpu,
    }
    ready.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(ready, *tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    _say({"result": result})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
