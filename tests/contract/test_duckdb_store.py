"""DuckDB-only behaviour: persistence across restarts, full rollup rebuilds, off-loop queries."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path

import duckdb

from tests.contract.test_trade_store import T0, as_exact, query
from tests.reference import buckets
from tests.support import make_trades
from wadm_grpc.domain.errors import FailedPreconditionError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.stores.duckdb import DuckDBTradeStore


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    trades = make_trades(seed=12, count=100, start_us=T0, spacing_us=1_000_000)
    store = DuckDBTradeStore(tmp_path / "var" / "wadm.duckdb")  # parent directories are created
    await store.insert_trades(trades)
    before = await store.candles(query(Timeframe.M1))
    await store.close()

    reopened = DuckDBTradeStore(tmp_path / "var" / "wadm.duckdb")
    try:
        assert await reopened.candles(query(Timeframe.M1)) == before
        assert await reopened.insert_trades(trades) == []
    finally:
        await reopened.close()


async def test_rebuild_reproduces_incremental_rollups(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    try:
        trades = make_trades(seed=11, count=800, start_us=T0, spacing_us=3_333_333_333, exchanges=("a", "b"))
        for start in range(0, 800, 90):
            await store.insert_trades(trades[start : start + 90])
        before = {tf: as_exact(await store.candles(query(tf))) for tf in Timeframe}  # type: ignore[arg-type]

        await store.rebuild_rollups()

        assert {tf: as_exact(await store.candles(query(tf))) for tf in Timeframe} == before  # type: ignore[arg-type]
        expected = as_exact(list(buckets(trades, Timeframe.D1.bucket_start).items()))  # type: ignore[arg-type]
        assert before[Timeframe.D1] == expected
    finally:
        await store.close()


async def test_queries_run_on_worker_threads_not_the_event_loop(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    seen: list[str] = []
    original = store._read

    async def spy(work):  # type: ignore[no-untyped-def]
        return await original(lambda cursor: (seen.append(threading.current_thread().name), work(cursor))[1])

    store._read = spy  # type: ignore[method-assign]
    try:
        await store.insert_trades(make_trades(seed=13, count=10, start_us=T0, spacing_us=1_000_000))
        await store.candles(query(Timeframe.M1))
        await store.symbols(())
        assert seen
        assert all(name.startswith("duckdb-read") for name in seen)
        assert threading.current_thread().name not in seen
    finally:
        await store.close()


async def test_concurrent_batches_share_one_transaction_and_count_each_trade_once(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    trades = make_trades(seed=14, count=90, start_us=T0, spacing_us=1_000_000, exchanges=("a", "b"))
    try:
        await store.insert_trades(trades[:10])
        before = store.round_trips
        # Three callers at once: overlapping with each other and with what is stored.
        results = await asyncio.gather(
            store.insert_trades(trades[5:40]), store.insert_trades(trades[30:70]), store.insert_trades(trades[60:90])
        )
        statements = store.round_trips - before

        assert results == [trades[10:40], trades[40:70], trades[70:90]]
        assert statements == 3  # insert trades, read stored buckets, write merged buckets: once for all three
        assert as_exact(await store.candles(query(Timeframe.M1))) == as_exact(  # type: ignore[arg-type]
            list(buckets(trades, Timeframe.M1.bucket_start).items())
        )
    finally:
        await store.close()


async def test_an_older_layout_is_migrated_and_its_rollups_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    trades = make_trades(seed=15, count=200, start_us=T0, spacing_us=60_000_000)
    store = DuckDBTradeStore(path)
    await store.insert_trades(trades)
    await store.close()
    with duckdb.connect(str(path)) as connection:  # make it look like a version-1 file
        connection.execute("DROP TABLE wadm_schema")
        connection.execute("DELETE FROM rollups")
        connection.execute("CREATE TABLE markets (symbol VARCHAR)")

    migrated = DuckDBTradeStore(path)
    try:
        assert as_exact(await migrated.candles(query(Timeframe.H1))) == as_exact(  # type: ignore[arg-type]
            list(buckets(trades, Timeframe.H1.bucket_start).items())
        )
        assert [s.trade_count for s in await migrated.symbols(())] == [200]
    finally:
        await migrated.close()


async def test_one_bad_batch_fails_alone_in_a_shared_transaction(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    huge = [
        Trade("x", "HUGEUSD", str(i), Decimal("1"), Decimal("99999999999999999999"), Side.BUY, T0 + i) for i in range(2)
    ]
    fine = make_trades(seed=16, count=50, start_us=T0, spacing_us=1_000_000)
    try:
        results = await asyncio.gather(store.insert_trades(huge), store.insert_trades(fine), return_exceptions=True)

        assert isinstance(results[0], FailedPreconditionError)
        assert "HUGEUSD on x" in str(results[0])
        assert results[1] == fine  # the other caller's batch was stored anyway
        assert [s.symbol for s in await store.symbols(())] == ["BTCUSDT"]  # nothing of the bad batch
    finally:
        await store.close()
