"""Where an import writes: a running server over PublishTrades, or the DuckDB file directly (--direct)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.trade_input import MAX_TIME_US
from wadm_grpc.feeds.binance_files import TradeFile
from wadm_grpc.imports.rows import CANONICAL_ID, StoredRange, trade_inputs, validated
from wadm_grpc.ports import TradeQuery

if TYPE_CHECKING:
    from wadm_client import RawWadmClient
    from wadm_client.pb.wadm.market.v1 import trade_pb2
    from wadm_grpc.bootstrap import App
    from wadm_grpc.stores.duckdb.bulk_load import DuckDBBulkLoader

MAX_MESSAGE_TRADES = 10_000  # PublishTrades' batch limit
# Newest and oldest trades looked at to find a market's id range through the service (same-time ties).
_EDGE_PAGE = 100


@dataclass(slots=True)
class Counts:
    """What one file did so far."""

    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows to write, with the file line of the first (for error messages)."""

    rows: pa.RecordBatch
    first_line: int


class Destination(Protocol):
    """A place trades go."""

    async def stored_range(self, exchange: str, symbol: str) -> StoredRange | None:
        """Ids the market surely holds all of, or None when that cannot be told."""
        ...

    async def write(self, trade_file: TradeFile, batches: AsyncIterator[Batch], counts: Counts) -> None:
        """Write every batch, adding to `counts` as they commit; InvalidArgumentError at a bad batch
        (the batches before it are stored)."""
        ...


def run_of(count: int, edge_ids: list[str]) -> StoredRange | None:
    """The run [min, max] of a market's newest and oldest ids when it accounts for all `count` trades."""
    if not edge_ids or not all(re.fullmatch(CANONICAL_ID, i) for i in edge_ids):
        return None
    low, high = min(map(int, edge_ids)), max(map(int, edge_ids))
    return StoredRange(low, high) if high - low + 1 == count else None


class IngestDestination:
    """The configured store through the ingest service in this process (--direct on a store other than
    the embedded DuckDB one: MongoDB)."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def stored_range(self, exchange: str, symbol: str) -> StoredRange | None:
        store = self._app.store
        info = next((s for s in await store.symbols((exchange,)) if s.symbol == symbol), None)
        if info is None or info.trade_count <= 0:
            return None
        ids: list[str] = []
        for end_us in (None, info.first_trade_us):
            page = await store.trades(TradeQuery(symbol, (exchange,), None, end_us, None, _EDGE_PAGE))
            ids.extend(trade.trade_id for trade in page)
        return run_of(info.trade_count, ids)

    async def write(self, trade_file: TradeFile, batches: AsyncIterator[Batch], counts: Counts) -> None:
        exchange, symbol = trade_file.exchange, trade_file.symbol
        async for batch in batches:
            inputs = trade_inputs(batch.rows, exchange=exchange, symbol=symbol, first_line=batch.first_line)
            for start in range(0, len(inputs), MAX_MESSAGE_TRADES):
                try:
                    result = await self._app.ingest.publish_trades(inputs[start : start + MAX_MESSAGE_TRADES])
                except InvalidArgumentError as error:
                    raise InvalidArgumentError(
                        error.violations, f"{error} (trades[0] is line {batch.first_line + start} of the file)"
                    ) from error
                counts.inserted += result.accepted
                counts.duplicates += result.duplicates


class DirectDestination:
    """The DuckDB file, bulk-loaded (rollups rebuilt once, by the caller, through `loader.finish`)."""

    def __init__(self, loader: DuckDBBulkLoader, *, latest_us: int) -> None:
        self._loader = loader
        self._latest_us = latest_us

    async def stored_range(self, exchange: str, symbol: str) -> StoredRange | None:
        found = self._loader.stored_range(exchange, symbol)
        return StoredRange(*found) if found else None

    async def write(self, trade_file: TradeFile, batches: AsyncIterator[Batch], counts: Counts) -> None:
        """One insert in flight on a writer thread while the next batch is read and validated (DuckDB
        releases the GIL); each insert is one statement, committed or not at all, and is awaited before
        this returns, so `counts` is exact even after Ctrl-C."""
        exchange, symbol = trade_file.exchange, trade_file.symbol
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Future[int] | None = None
        in_flight_rows = 0
        with ThreadPoolExecutor(1, "import-insert") as writer:
            try:
                async for batch in batches:
                    rows = validated(
                        batch.rows,
                        exchange=exchange,
                        symbol=symbol,
                        first_line=batch.first_line,
                        latest_us=self._latest_us,
                    )
                    if in_flight is not None:
                        _count(counts, await in_flight, in_flight_rows)
                    in_flight = loop.run_in_executor(writer, self._loader.load, exchange, symbol, rows)
                    in_flight_rows = rows.num_rows
            finally:
                if in_flight is not None:
                    _count(counts, await asyncio.shield(in_flight), in_flight_rows)


def _count(counts: Counts, inserted: int, rows: int) -> None:
    counts.inserted += inserted
    counts.duplicates += rows - inserted


class ServiceDestination:
    """A running server, over one PublishTrades stream per file (the server judges times against its clock)."""

    def __init__(self, client: RawWadmClient) -> None:
        self._client = client

    async def stored_range(self, exchange: str, symbol: str) -> StoredRange | None:
        """From ListSymbols (the market's count and time bounds) and its newest and oldest trades: a run of
        ids when max - min + 1 equals the count (assumes ids grow with time, as Binance's do)."""
        from wadm_client import requests

        listed = await self._client.list_symbols(exchanges=[exchange])
        info = next((s for s in listed.symbols if s.symbol == symbol), None)
        if info is None or info.trade_count <= 0:
            return None
        ids: list[str] = []
        for end in (None, info.first_trade_time.ToDatetime(tzinfo=UTC)):
            request = requests.trades(symbol, exchanges=[exchange], start=None, end=end, page_size=_EDGE_PAGE)
            page = await self._client.market.ListTrades(
                request, timeout=self._client.timeout_seconds, metadata=self._client.options.metadata()
            )
            ids.extend(trade.trade_id for trade in page.trades)
        return run_of(info.trade_count, ids)

    async def write(self, trade_file: TradeFile, batches: AsyncIterator[Batch], counts: Counts) -> None:

        exchange, symbol = trade_file.exchange, trade_file.symbol
        rejected: list[InvalidArgumentError] = []

        async def messages() -> AsyncIterator[list[trade_pb2.Trade]]:
            async for batch in batches:
                try:
                    rows = validated(
                        batch.rows, exchange=exchange, symbol=symbol, first_line=batch.first_line, latest_us=MAX_TIME_US
                    )
                except InvalidArgumentError as error:
                    rejected.append(error)
                    return
                for start in range(0, rows.num_rows, MAX_MESSAGE_TRADES):
                    yield list(_messages(rows.slice(start, MAX_MESSAGE_TRADES), exchange, symbol))

        response = await self._client.publish_trades(messages())
        counts.inserted += response.accepted_count
        counts.duplicates += response.duplicate_count
        if rejected:
            raise rejected[0]


def _messages(rows: pa.Table, exchange: str, symbol: str) -> Iterator[trade_pb2.Trade]:
    from google.protobuf.timestamp_pb2 import Timestamp

    from wadm_client.pb.wadm.market.v1 import trade_pb2

    buy, sell = trade_pb2.SIDE_BUY, trade_pb2.SIDE_SELL
    columns = [rows.column(name).to_pylist() for name in ("trade_id", "price", "quantity", "time_us", "is_buy")]
    for trade_id, price, quantity, time_us, is_buy in zip(*columns, strict=True):
        seconds, micros = divmod(time_us, 1_000_000)
        yield trade_pb2.Trade(
            exchange=exchange,
            symbol=symbol,
            trade_id=trade_id,
            price=price,
            quantity=quantity,
            side=buy if is_buy else sell,
            time=Timestamp(seconds=seconds, nanos=micros * 1000),
        )
