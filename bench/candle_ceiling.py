"""The ceilings of section `candles`: hand-written SQL for the same candles, run by DuckDB in the bench process.

- `rollups`: the best one statement over the product's own `rollups` table, told the exact range of the
  500 buckets the service returned (which the service has to find out), with the product's exact
  aggregation and its text formatting (the same digits), fetched into Python.
- `group_by`: the old service's way, a GROUP BY over the raw trades on every query.

The server subprocess and this process open the dataset file read-only, side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.stores.duckdb import sql

TIMEFRAMES = {"1m": Timeframe.M1, "1h": Timeframe.H1, "1d": Timeframe.D1}


def rollups_statement(timeframe: Timeframe) -> str:
    """Candles of one symbol from the tier of `timeframe` (whose buckets are the candles) in [?, ?]."""
    assert timeframe.rollup.micros == timeframe.micros, "a timeframe stored as its own tier"
    return f"""
SELECT bucket, {sql.AGGREGATE_TEXT} FROM (
    SELECT bucket, {sql.AGGREGATES} FROM rollups
    WHERE tier = '{timeframe.rollup.label}' AND symbol = ? AND bucket >= ? AND bucket <= ?
    GROUP BY bucket
) ORDER BY bucket"""


def group_by_statement(timeframe: Timeframe) -> str:
    """The newest ? candles of one symbol, aggregated from its raw trades."""
    size = timeframe.micros
    return f"""
SELECT open_time, {sql.AGGREGATE_TEXT} FROM (
    SELECT bucket - bucket % {size} AS open_time, {sql.AGGREGATES}
    FROM ({sql.trades_as_buckets()}) WHERE symbol = ?
    GROUP BY open_time ORDER BY open_time DESC LIMIT ?
) ORDER BY open_time"""


def wire_rows(response: md.GetCandlesResponse) -> list[tuple[Any, ...]]:
    """The service's candles in the ceiling's column order (open time in microseconds, decimals as text)."""
    return [
        (
            c.open_time.seconds * 1_000_000 + c.open_time.nanos // 1000,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.quote_volume,
            c.trade_count,
            c.taker_buy_volume,
            c.taker_buy_quote_volume,
        )
        for c in response.candles
    ]


class CandleCeiling:
    """One read-only DuckDB connection to a dataset file; each call runs on a worker thread (as the
    service runs its statements), with a cursor per call."""

    def __init__(self, path: Path) -> None:
        self._connection = duckdb.connect(str(path), read_only=True)

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def _run(self, statement: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._connection.cursor() as cursor:
            return [tuple(row[:10]) for row in cursor.execute(statement, list(parameters)).fetchall()]

    async def rollups(self, timeframe: Timeframe, symbol: str, first_us: int, last_us: int) -> list[tuple[Any, ...]]:
        """The candles with open times in [first_us, last_us], from the rollups."""
        return await asyncio.to_thread(self._run, rollups_statement(timeframe), [symbol, first_us, last_us])

    async def group_by(self, timeframe: Timeframe, symbol: str, limit: int) -> list[tuple[Any, ...]]:
        """The newest `limit` candles, from the raw trades."""
        return await asyncio.to_thread(self._run, group_by_statement(timeframe), [symbol, limit])
