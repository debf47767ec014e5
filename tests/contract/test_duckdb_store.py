"""DuckDB-only behaviour: persistence across restarts, full rollup rebuilds, off-loop queries."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.contract.test_trade_store import T0, as_exact, query
from tests.reference import buckets
from tests.support import make_trades
from wadm_grpc.domain.timeframe import Timeframe
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
