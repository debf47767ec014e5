"""The abuse section's victim in a process of its own (`python -m bench.abuse_victim TARGET`), so its latencies
are the server's and not those of a client loop shared with the flood's 1,000 callers.

Protocol: it times QUIET_CALLS rounds (cached GetCandles, then ListSymbols) and prints them as one JSON line,
then waits for a line on stdin, loops rounds until the next line (or the end of stdin), and prints the loaded
rounds and its errors as a second JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import grpc

from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

QUIET_CALLS = 200
CALL_TIMEOUT_SECONDS = 60.0
CALLS = ("GetCandles (cached)", "ListSymbols")
CACHED = md.GetCandlesRequest(symbol="BTCUSDT", timeframe=md.TIMEFRAME_1M, limit=100)


async def _round(stub: md_grpc.MarketDataServiceStub, latencies: dict[str, list[float]]) -> None:
    began = time.perf_counter()
    await stub.GetCandles(CACHED, timeout=CALL_TIMEOUT_SECONDS)
    middle = time.perf_counter()
    await stub.ListSymbols(md.ListSymbolsRequest(), timeout=CALL_TIMEOUT_SECONDS)
    latencies[CALLS[0]].append(middle - began)
    latencies[CALLS[1]].append(time.perf_counter() - middle)


async def main(target: str) -> None:
    """Run the protocol against `target`."""
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = md_grpc.MarketDataServiceStub(channel)
        quiet: dict[str, list[float]] = {call: [] for call in CALLS}
        for _ in range(QUIET_CALLS):  # warms the cache, then measures the victim alone
            await _round(stub, quiet)
        print(json.dumps({"quiet": quiet}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        stop = loop.run_in_executor(None, sys.stdin.readline)
        loaded: dict[str, list[float]] = {call: [] for call in CALLS}
        errors: Counter[str] = Counter()
        while not stop.done():
            try:
                await _round(stub, loaded)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
        print(json.dumps({"loaded": loaded, "errors": dict(errors)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
