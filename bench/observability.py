"""What the observing interceptor (request id, metrics, access log) and TLS cost a unary call.

One in-process server per variant with a servicer that answers ListSymbols with one prebuilt response
(no product code behind it, so the interceptor's share is as large as it can be), one client channel,
64 calls in flight; the variants are measured in interleaved rounds so load from other work on the
machine falls on all of them alike. Ratios are against the server as it was before: the malformed-request
interceptor only, plaintext.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.datasets import Datasets
from bench.report import SectionResult, Table, ratio, times, whole
from wadm_grpc.api.grpc.malformed import MalformedRequestInterceptor
from wadm_grpc.api.grpc.observe import ObservingInterceptor
from wadm_grpc.api.tls import TlsFiles, grpc_server_credentials
from wadm_grpc.metrics.registry import Metrics
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc

IN_FLIGHT = 64
CALLS_PER_ROUND = 4000
ROUNDS = 3
ANSWER = md.ListSymbolsResponse(
    symbols=[md.SymbolSummary(symbol=f"SYM{i}USDT", exchanges=["binance"], trade_count=i) for i in range(20)]
)


class _Servicer(md_grpc.MarketDataServiceServicer):
    async def ListSymbols(self, request: md.ListSymbolsRequest, context: Any) -> md.ListSymbolsResponse:
        return ANSWER


async def _server(
    interceptors: Sequence[grpc.aio.ServerInterceptor], credentials: grpc.ServerCredentials | None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=list(interceptors))
    md_grpc.add_MarketDataServiceServicer_to_server(_Servicer(), server)
    address = "127.0.0.1:0"
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    await server.start()
    return server, port


async def _round(channel: grpc.aio.Channel) -> float:
    """Calls per second over one round."""
    stub = md_grpc.MarketDataServiceStub(channel)
    remaining = CALLS_PER_ROUND

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await stub.ListSymbols(md.ListSymbolsRequest())

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return CALLS_PER_ROUND / (time.perf_counter() - began)


def _certificates(directory: Path) -> tuple[TlsFiles, bytes]:
    from tests.ops.certificates import Authority  # dev dependency (cryptography), as for the tests

    authority = Authority.create(directory, "bench")
    issued = authority.issue("bench-server", server=True)
    return TlsFiles(cert=issued.cert, key=issued.key), authority.cert.read_bytes()


async def run(data: Datasets) -> SectionResult:
    """Interleaved rounds of each variant; the median round of each, as a ratio to the baseline."""
    logging.getLogger("wadm_grpc.access").setLevel(logging.WARNING)  # as with a log shipper's INFO: not printed
    with tempfile.TemporaryDirectory() as directory:
        files, ca = _certificates(Path(directory))
        variants: dict[str, tuple[list[grpc.aio.ServerInterceptor], grpc.ServerCredentials | None]] = {
            "before (malformed-request interceptor only)": ([MalformedRequestInterceptor()], None),
            "+ observing interceptor": ([ObservingInterceptor(Metrics()), MalformedRequestInterceptor()], None),
            "+ observing + TLS": (
                [ObservingInterceptor(Metrics()), MalformedRequestInterceptor()],
                grpc_server_credentials(files),
            ),
        }
        servers = []
        channels: dict[str, grpc.aio.Channel] = {}
        try:
            for name, (interceptors, credentials) in variants.items():
                server, port = await _server(interceptors, credentials)
                servers.append(server)
                target = f"127.0.0.1:{port}"
                if credentials is None:
                    channels[name] = grpc.aio.insecure_channel(target)
                else:
                    channels[name] = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca))
            for channel in channels.values():  # connect and warm up
                await _round(channel)
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(ROUNDS):
                for name, channel in channels.items():
                    rates[name].append(await _round(channel))
        finally:
            for channel in channels.values():
                await channel.close()
            for server in servers:
                await server.stop(0)
    medians = {name: sorted(values)[len(values) // 2] for name, values in rates.items()}
    baseline = next(iter(medians.values()))
    table = Table(
        f"Unary ListSymbols, {IN_FLIGHT} in flight, client and server in one process (median of {ROUNDS} rounds)",
        ["server", "calls/s", "vs before"],
    )
    for name, rate in medians.items():
        table.add(name, whole(rate), times(ratio(rate, baseline)))
    table.notes.append("An empty servicer: with product code behind the call the interceptor's share is smaller.")
    return SectionResult("observability", [table], {"calls_per_second": medians})
