"""`python -m wadm_grpc import`: load Binance trades CSV files through the ingest path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

from wadm_grpc.config import Settings
from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.names import normalize_symbol
from wadm_grpc.domain.trade_input import MAX_TIME_US, TradeInput, parse_trades
from wadm_grpc.feeds.binance_csv import read_trades, symbol_from_filename

# Listening on every interface is served on loopback too: that is where a local import connects.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def default_target(settings: Settings) -> str:
    """host:port of the server these settings describe (a nonzero port), as a client on this machine reaches it."""
    host = settings.host
    if host in _WILDCARD_HOSTS:
        host = "::1" if ":" in host else "127.0.0.1"
    host = host.strip("[]")
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


async def run_import(
    settings: Settings, *, files: list[str], exchange: str, symbol: str | None, target: str | None, direct: bool
) -> int:
    """Import each file; print what happened; exit status 0 when every file loaded.

    Without `target`, publishes to the server WADM_HOST/WADM_PORT describe."""
    if target is None and not direct and settings.port == 0:
        print("error: WADM_PORT=0 names no server to publish to; pass --target host:port", file=sys.stderr)
        return 2
    status = 0
    for name in files:
        path = Path(name)
        named = symbol or symbol_from_filename(path)
        if named is None:
            print(f"{path}: cannot tell the symbol from the file name; pass --symbol", file=sys.stderr)
            status = 2
            continue
        try:
            file_symbol = normalize_symbol(named, field="--symbol")
            if direct:
                accepted, duplicates = await _direct(settings, path, exchange, file_symbol)
            else:
                destination = target or default_target(settings)
                accepted, duplicates = await publish_file(destination, path, exchange, file_symbol)
        except InvalidArgumentError as error:
            print(f"{path}: rejected: {error}", file=sys.stderr)
            status = 1
            continue
        except grpc.aio.AioRpcError as error:
            print(f"{path}: {error.code().name}: {error.details()}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {file_symbol} on {exchange}: {accepted} accepted, {duplicates} duplicates")
    return status


def _batches(path: Path, exchange: str, symbol: str) -> Iterator[list[TradeInput]]:
    with path.open(newline="") as stream:
        yield from read_trades(stream, exchange=exchange, symbol=symbol)


async def _direct(settings: Settings, path: Path, exchange: str, symbol: str) -> tuple[int, int]:
    from wadm_grpc.bootstrap import bootstrap

    app = await bootstrap(settings)
    accepted = duplicates = 0
    try:
        for batch in _batches(path, exchange, symbol):
            result = await app.ingest.publish_trades(batch)
            accepted += result.accepted
            duplicates += result.duplicates
    finally:
        await app.close()
    return accepted, duplicates


async def publish_file(target: str, path: Path, exchange: str, symbol: str) -> tuple[int, int]:
    """Stream a CSV file's batches to the server at `target` over PublishTrades; (accepted, duplicates).

    A malformed batch is caught here, before it is sent:
    the stream ends there (earlier batches are stored; a re-run skips them as duplicates) and the
    error is raised after the server's answer."""
    from wadm_client import RawWadmClient, make_trade

    rejected: list[InvalidArgumentError] = []

    def checked(batches: Iterator[list[TradeInput]]) -> Iterator[list[TradeInput]]:
        for batch in batches:
            try:
                parse_trades(batch, latest_us=MAX_TIME_US)  # the server judges times against its clock
            except InvalidArgumentError as error:
                rejected.append(error)
                return
            yield batch

    async with RawWadmClient.connect(target, timeout_seconds=600) as client:
        response = await client.publish_trades(
            [
                make_trade(
                    exchange=t.exchange,
                    symbol=t.symbol,
                    trade_id=t.trade_id,
                    price=t.price,
                    quantity=t.quantity,
                    side=t.side.value if t.side else "",
                    time=t.time_us or 0,
                )
                for t in batch
            ]
            for batch in checked(_batches(path, exchange, symbol))
        )
    if rejected:
        raise InvalidArgumentError(
            rejected[0].violations,
            f"{rejected[0]} (stored before it: {response.accepted_count} accepted, "
            f"{response.duplicate_count} duplicates)",
        )
    return response.accepted_count, response.duplicate_count
