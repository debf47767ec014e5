"""DuckDB-only behaviour: persistence across restarts, full rollup rebuilds, off-loop queries, sums
beyond what DECIMAL(38, 18) can add, migrations."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.contract.test_trade_store import T0, as_exact, query
from tests.reference import aggregate, buckets, exact
from tests.support import make_trades
from wadm_grpc.domain.timeframe import DAY_US, HOUR_US, MINUTE_US, Timeframe
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.domain.trade_batch import TradeBatch, TradeColumns
from wadm_grpc.stores.duckdb import DuckDBTradeStore
from wadm_grpc.stores.duckdb.batches import trades_table
from wadm_grpc.stores.duckdb.store import _Counting


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
        # Some not new, one key repeated within the group: the insert is redone with the first copies only,
        # returning the new rows; then one merge.
        assert statements == 3
        assert as_exact(await store.candles(query(Timeframe.M1))) == as_exact(  # type: ignore[arg-type]
            list(buckets(trades, Timeframe.M1.bucket_start).items())
        )
    finally:
        await store.close()


async def test_new_trades_cost_one_insert_and_one_merge_and_stored_ones_a_second_insert(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    trades = make_trades(seed=15, count=80, start_us=T0, spacing_us=1_000_000, exchanges=("a", "b"))
    try:
        await store.insert_trades(trades[:10])
        before = store.round_trips
        results = await asyncio.gather(store.insert_trades(trades[10:30]), store.insert_trades(trades[30:50]))
        assert results == [trades[10:30], trades[30:50]]
        assert store.round_trips - before == 2  # insert (counting only), merge: once for both

        before = store.round_trips
        results = await asyncio.gather(store.insert_trades(trades[0:20]), store.insert_trades(trades[50:80]))
        assert results == [[], trades[50:80]]
        assert store.round_trips - before == 3  # the insert again, returning the new rows; merge
        assert as_exact(await store.candles(query(Timeframe.M1))) == as_exact(  # type: ignore[arg-type]
            list(buckets(trades, Timeframe.M1.bucket_start).items())
        )
    finally:
        await store.close()


def as_batch(trades: list[Trade]) -> TradeBatch:
    """The trades as ingest's bulk path hands them over: columns of exact text, no Trade objects."""
    return TradeBatch(TradeColumns.of_trades(trades))


async def test_batches_as_columns_store_like_trades_and_duplicates_count_once(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    trades = make_trades(seed=15, count=3000, start_us=T0, spacing_us=61_000_017, exchanges=("a", "b"))
    try:
        assert await store.insert_trades(as_batch(trades[:1000])) == trades[:1000]
        # Overlapping the stored ones, repeating one inside a batch, and two callers at once.
        results = await asyncio.gather(
            store.insert_trades(as_batch([*trades[900:2000], trades[1500]])),
            store.insert_trades(as_batch(trades[1800:])),
        )

        assert results == [trades[1000:2000], trades[2000:]]
        for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1):
            expected = list(buckets(trades, timeframe.bucket_start).items())[-1000:]
            assert as_exact(await store.candles(query(timeframe))) == as_exact(expected)  # type: ignore[arg-type]
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
    # A quote of 10^21 does not fit DECIMAL(38, 18) (the API refuses such trades before they get here).
    huge = [Trade("x", "HUGEUSD", str(i), Decimal(10**10), Decimal(10**11), Side.BUY, T0 + i) for i in range(2)]
    fine = make_trades(seed=16, count=50, start_us=T0, spacing_us=1_000_000)
    try:
        results = await asyncio.gather(store.insert_trades(huge), store.insert_trades(fine), return_exceptions=True)

        assert isinstance(results[0], Exception)
        assert results[1] == fine  # the other caller's batch was stored anyway
        assert [s.symbol for s in await store.symbols(())] == ["BTCUSDT"]  # nothing of the bad batch
    finally:
        await store.close()


# Trade values at the domain's bounds (below 10^16, at most 18 decimals, price and quantity at most 18
# together). BIG ones: 10,000 of them sum past 10^20, where a DECIMAL(38, 18) sum overflows.
BIG = (("1", "9999999999999999.99"), ("9999999999999999", "1"), ("99999999.99999999", "99999999.9999999"))
TINY = (("1", "0.000000000000000001"), ("0.000000000000000001", "1"), ("0.999999999999999999", "1"))
MINUTE = T0 - T0 % MINUTE_US


def trades_at_the_bounds(*, seed: int) -> list[Trade]:
    """Seeded: 10,500 BIG trades on exchange exa, 1,000 mixed ones each on exb and exc, all in one minute."""
    rng = random.Random(seed)
    trades = []
    for exchange, count, values in (("exa", 10_500, BIG), ("exb", 1_000, BIG + TINY), ("exc", 1_000, BIG + TINY)):
        for index in range(count):
            price, quantity = rng.choice(values)
            side = rng.choice((Side.BUY, Side.SELL))
            time_us = MINUTE + rng.randrange(MINUTE_US)
            trades.append(Trade(exchange, "CROSSUSDT", str(index), Decimal(price), Decimal(quantity), side, time_us))
    rng.shuffle(trades)
    return trades


async def assert_every_read_is_exact(store: DuckDBTradeStore, trades: list[Trade], other: list[Trade]) -> None:
    """Candles of every stored tier, window stats (rollups and raw edges), symbols: as the reference."""
    for timeframe in (Timeframe.M1, Timeframe.H1, Timeframe.D1, Timeframe.W1):
        got = await store.candles(query(timeframe, symbol="CROSSUSDT"))
        assert as_exact(got) == as_exact(list(buckets(trades, timeframe.bucket_start).items())), timeframe  # type: ignore[arg-type]
        only_exa = await store.candles(query(timeframe, symbol="CROSSUSDT", exchanges=("exa",)))
        expected_exa = buckets([t for t in trades if t.exchange == "exa"], timeframe.bucket_start)
        assert as_exact(only_exa) == as_exact(list(expected_exa.items())), timeframe  # type: ignore[arg-type]
    windows = (
        (MINUTE - 2 * DAY_US + 1, MINUTE + 2 * DAY_US + 5 * HOUR_US - 1),  # days, hours, minutes, raw edges
        (MINUTE + 20_000_001, MINUTE + 40_000_000),  # inside the minute: raw trades only
    )
    for start, end in windows:
        stats = await store.window_stats(["CROSSUSDT", "BTCUSDT"], (), start, end)
        for symbol, mine in (("CROSSUSDT", trades), ("BTCUSDT", other)):
            inside = [t for t in mine if start <= t.time_us <= end]
            assert exact(stats[symbol].ohlcv) == exact(aggregate(inside)), (symbol, start, end)
    summaries = {s.symbol: s for s in await store.symbols(())}
    assert summaries["CROSSUSDT"].trade_count == len(trades)
    assert summaries["CROSSUSDT"].exchanges == ("exa", "exb", "exc")
    assert str(summaries["CROSSUSDT"].last_price) == str(aggregate(trades).close)


async def test_sums_past_what_decimal_can_add_stay_exact_in_every_tier_and_read(tmp_path: Path) -> None:
    trades = trades_at_the_bounds(seed=18)
    other = make_trades(seed=19, count=30, start_us=MINUTE, spacing_us=1_999_999)
    assert aggregate([t for t in trades if t.exchange == "exa"]).quote_volume > 10**20  # one market alone
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    try:
        for start in range(0, len(trades), 2_500):  # later batches merge into stored buckets
            assert await store.insert_trades(trades[start : start + 2_500]) == trades[start : start + 2_500]
        await store.insert_trades(other)

        await assert_every_read_is_exact(store, trades, other)

        # The market's whole history (the "all" tier) is past 10^20, and trades keep being accepted.
        later = Trade(
            "exa", "CROSSUSDT", "later", Decimal("1"), Decimal("9999999999999999.99"), Side.BUY, MINUTE + DAY_US
        )
        assert await store.insert_trades([later]) == [later]
        await assert_every_read_is_exact(store, [*trades, later], other)

        await store.rebuild_rollups()  # the SQL path from the trades table
        await assert_every_read_is_exact(store, [*trades, later], other)
    finally:
        await store.close()


async def test_one_ingest_past_what_decimal_can_add_in_one_bucket_stays_exact(tmp_path: Path) -> None:
    # Issue 12: one merge statement per transaction, however large: 10,500 BIG trades of one market in one
    # minute, in ONE call, are summed as DECIMAL in runs of at most SLICE_TRADES, then added as limbs.
    trades = trades_at_the_bounds(seed=37)
    other = make_trades(seed=38, count=30, start_us=MINUTE, spacing_us=1_999_999)
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    try:
        assert await store.insert_trades(trades) == trades
        await store.insert_trades(other)
        await assert_every_read_is_exact(store, trades, other)
    finally:
        await store.close()


# Version 2's tables, as that version created them (sums as DECIMAL(38, 18)).
V2_DDL = (
    """CREATE TABLE trades (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, trade_id VARCHAR NOT NULL, time_us BIGINT NOT NULL,
    price DECIMAL(38, 18) NOT NULL, quantity DECIMAL(38, 18) NOT NULL, quote DECIMAL(38, 18) NOT NULL,
    price_scale UTINYINT NOT NULL, quantity_scale UTINYINT NOT NULL, is_buy BOOLEAN NOT NULL,
    PRIMARY KEY (exchange, symbol, trade_id))""",
    """CREATE TABLE rollups (
    tier VARCHAR NOT NULL, symbol VARCHAR NOT NULL, exchange VARCHAR NOT NULL, bucket BIGINT NOT NULL,
    open DECIMAL(38, 18) NOT NULL, open_us BIGINT NOT NULL, open_id VARCHAR NOT NULL,
    high DECIMAL(38, 18) NOT NULL, low DECIMAL(38, 18) NOT NULL,
    close DECIMAL(38, 18) NOT NULL, close_us BIGINT NOT NULL, close_id VARCHAR NOT NULL,
    volume DECIMAL(38, 18) NOT NULL, quote DECIMAL(38, 18) NOT NULL, trade_count BIGINT NOT NULL,
    buy_volume DECIMAL(38, 18) NOT NULL, buy_quote DECIMAL(38, 18) NOT NULL,
    price_scale UTINYINT NOT NULL, quantity_scale UTINYINT NOT NULL, quote_scale UTINYINT NOT NULL,
    PRIMARY KEY (tier, symbol, exchange, bucket))""",
    "CREATE TABLE wadm_schema (version INTEGER NOT NULL)",
)


async def test_a_version_2_file_is_migrated_and_its_rollups_rebuilt_exactly(tmp_path: Path) -> None:
    path = tmp_path / "v2.duckdb"
    trades = trades_at_the_bounds(seed=20)
    other = make_trades(seed=21, count=30, start_us=MINUTE, spacing_us=1_999_999)
    with duckdb.connect(str(path)) as connection:
        for ddl in V2_DDL:
            connection.execute(ddl)
        connection.execute("INSERT INTO wadm_schema VALUES (2)")
        connection.register("old_trades", trades_table([*trades, *other]))
        connection.execute("INSERT INTO trades SELECT * FROM old_trades")
        # A stale version-2 rollup row: the migration must not keep it.
        stale = "'1m', 'CROSSUSDT', 'exa', ?, 1, ?, '0', 1, 1, 1, ?, '0', 1, 1, 1, 1, 1, 0, 0, 0"
        connection.execute(f"INSERT INTO rollups VALUES ({stale})", [MINUTE, MINUTE, MINUTE])

    migrated = DuckDBTradeStore(path)
    try:
        await assert_every_read_is_exact(migrated, trades, other)
        later = Trade("exb", "CROSSUSDT", "later", Decimal("9999999999999999"), Decimal("1"), Side.SELL, MINUTE + 1)
        assert await migrated.insert_trades([later]) == [later]
        await assert_every_read_is_exact(migrated, [*trades, later], other)
    finally:
        await migrated.close()
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("SELECT version FROM wadm_schema").fetchall() == [(3,)]


async def test_candle_reads_see_every_committed_write_though_bounds_are_remembered(tmp_path: Path) -> None:
    # Issue 12: a market's bounds are remembered between candle reads until the next write.
    store = DuckDBTradeStore(tmp_path / "t.duckdb", read_threads=1)  # one reader: one cursor, prepared once
    trades = make_trades(seed=31, count=40, start_us=T0, spacing_us=61_000_000)
    try:
        await store.insert_trades(trades[:20])
        before = await store.candles(query(Timeframe.M1))
        assert [start for start, _ in before] == sorted({Timeframe.M1.bucket_start(t.time_us) for t in trades[:20]})
        statements = store.round_trips
        assert await store.candles(query(Timeframe.M1)) == before
        assert store.round_trips - statements == 1  # bounds remembered: the EXECUTE only

        await store.insert_trades(trades[20:])

        after = await store.candles(query(Timeframe.M1))
        assert as_exact(after) == as_exact(list(buckets(trades, Timeframe.M1.bucket_start).items()))  # type: ignore[arg-type]
    finally:
        await store.close()


async def test_sparse_history_is_read_in_one_window(tmp_path: Path) -> None:
    # Issue 12: the first window is sized by the market's trade density, so 500 candles of a market with
    # a trade every ~3 hours take one statement, not a series of 4x-widening misses.
    store = DuckDBTradeStore(tmp_path / "t.duckdb", read_threads=1)  # one reader: one cursor, prepared once
    try:
        await store.insert_trades(make_trades(seed=32, count=700, start_us=T0, spacing_us=3 * HOUR_US + 7))
        await store.candles(query(Timeframe.M1, limit=5))  # prepares the statement
        await store.insert_trades(make_trades(seed=33, count=1, start_us=T0 - DAY_US, spacing_us=1))  # widens bounds
        statements = store.round_trips
        got = await store.candles(query(Timeframe.M1, limit=500))
        assert len(got) == 500
        assert store.round_trips - statements == 1  # ONE window (the bounds were widened by the write, not voided)
    finally:
        await store.close()


async def test_ingest_widens_the_remembered_bounds_and_reads_stay_exact(tmp_path: Path) -> None:
    # Issue 12: reads during ingest. An ingest widens the remembered bounds of the markets it reached (a read
    # after it needs no bounds statement) and the candles still include every committed trade; a write that
    # does not say what it added (a rollup rebuild) voids them.
    store = DuckDBTradeStore(tmp_path / "t.duckdb", read_threads=1)  # one reader: one cursor, prepared once
    trades = make_trades(seed=34, count=60, start_us=T0, spacing_us=61_000_000, exchanges=("a", "b"))
    later = make_trades(
        seed=35,
        count=40,
        start_us=T0 + 70 * MINUTE_US,
        spacing_us=59_000_000,
        symbols=("BTCUSDT", "ETHUSDT"),
        exchanges=("b", "c"),
    )
    earlier = make_trades(seed=36, count=5, start_us=T0 - DAY_US, spacing_us=7_000_000, exchanges=("c",))
    batches = [
        [replace(t, trade_id=f"{name}-{t.trade_id}") for t in batch] for name, batch in (("l", later), ("e", earlier))
    ]
    views: tuple[tuple[str, ...], ...] = ((), ("a",), ("c",))
    try:
        await store.insert_trades(trades)
        for exchanges in views:  # bounds remembered (("c",): a market without trades yet), statements prepared
            await store.candles(query(Timeframe.M1, exchanges=exchanges))
        stored = list(trades)
        for batch in batches:
            await store.insert_trades(batch)
            stored += batch
            for exchanges in views:
                statements = store.round_trips
                got = await store.candles(query(Timeframe.M1, exchanges=exchanges))
                assert store.round_trips - statements == 1  # no bounds statement after the ingest
                expected = [t for t in stored if t.symbol == "BTCUSDT" and (not exchanges or t.exchange in exchanges)]
                assert as_exact(got) == as_exact(list(buckets(expected, Timeframe.M1.bucket_start).items()))  # type: ignore[arg-type]

        await store.rebuild_rollups()
        statements = store.round_trips
        await store.candles(query(Timeframe.M1))
        assert store.round_trips - statements == 2  # voided: the bounds are read again
    finally:
        await store.close()


async def test_the_symbol_list_is_served_without_a_statement_until_the_next_write(tmp_path: Path) -> None:
    # Issue 10: ListSymbols (what clients poll) stays off the store while a flood saturates it.
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    trades = make_trades(seed=34, count=30, start_us=T0, spacing_us=1_000_000)
    try:
        await store.insert_trades(trades[:10])
        first = await store.symbols(())
        statements = store.round_trips
        assert await store.symbols(()) == first
        assert store.round_trips == statements  # remembered

        await store.insert_trades(trades[10:])
        statements = store.round_trips

        after = {s.symbol: s.trade_count for s in await store.symbols(())}
        counts: dict[str, int] = {}
        for trade in trades:
            counts[trade.symbol] = counts.get(trade.symbol, 0) + 1
        assert after == counts  # the write is seen at once
        assert store.round_trips == statements + 1  # read afresh
    finally:
        await store.close()


async def test_clustered_history_is_read_in_one_window_once_a_read_found_its_reach(tmp_path: Path) -> None:
    # Issue 12: a sparse past and a dense last hour (an ingest into a quiet market) fool the density
    # estimate into too short a first window. The window the last read of the same shape needed is
    # remembered, so the next reads take one statement, and every answer stays exact.
    store = DuckDBTradeStore(tmp_path / "t.duckdb", read_threads=1)  # one reader: one cursor, prepared once
    sparse = make_trades(seed=37, count=700, start_us=T0, spacing_us=3 * HOUR_US + 7)
    end_us = sparse[-1].time_us
    other = make_trades(seed=38, count=3, start_us=T0, spacing_us=MINUTE_US, symbols=("ETHUSDT",))
    dense = [
        replace(t, trade_id=f"d-{t.trade_id}")
        for t in make_trades(seed=39, count=3000, start_us=end_us + HOUR_US, spacing_us=1_200_000)
    ]
    more = [
        replace(t, trade_id=f"m-{t.trade_id}")
        for t in make_trades(seed=40, count=1500, start_us=dense[-1].time_us + 1, spacing_us=1_200_000)
    ]
    stored: list[Trade] = []

    async def newest_500() -> int:
        statements = store.round_trips
        got = await store.candles(query(Timeframe.M1, limit=500))
        expected = list(buckets(stored, Timeframe.M1.bucket_start).items())[-500:]
        assert as_exact(got) == as_exact(expected)  # type: ignore[arg-type]
        return store.round_trips - statements

    try:
        for batch in (sparse, other):
            await store.insert_trades(batch)
            stored += [t for t in batch if t.symbol == "BTCUSDT"]
        await store.candles(query(Timeframe.M1, symbol="ETHUSDT", limit=5))  # prepares the statement, bounds read
        await store.insert_trades(dense)  # widens the remembered bounds: no bounds statement below
        stored += dense
        assert await newest_500() > 1  # the density estimate alone falls short: widening windows
        assert await newest_500() == 1  # the reach the last read needed
        await store.insert_trades(more)
        stored += more
        assert await newest_500() == 1  # still enough after more trades at the newest end
    finally:
        await store.close()


async def test_a_read_whose_anchor_did_not_move_scans_exactly_its_candles_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12: once a read found where its candles are, the next read of the same shape from the same
    # anchor bucket (a read-only snapshot, a quiet market) reads exactly that range, not the density
    # estimate's window (25% wider by its margin); a moved anchor widens it by as many buckets.
    store = DuckDBTradeStore(tmp_path / "t.duckdb", read_threads=1)
    windows: list[int] = []
    execute = _Counting.execute

    def recording(self: _Counting, statement: str, parameters: object = None) -> duckdb.DuckDBPyConnection:
        if statement.startswith("EXECUTE wadm_candles"):  # EXECUTE name('BTCUSDT', low, high, wanted)
            windows.append(int(statement.split(", ")[-3]))
        return execute(self, statement, parameters)

    monkeypatch.setattr(_Counting, "execute", recording)
    try:
        await store.insert_trades(make_trades(seed=42, count=3000, start_us=T0, spacing_us=47_000_000))
        first = await store.candles(query(Timeframe.M1, limit=200))
        assert len(first) == 200 and windows[-1] < first[0][0]  # the density estimate's margin
        again = await store.candles(query(Timeframe.M1, limit=200))
        assert again == first and windows[-1] == first[0][0]  # one statement, exactly the range
        later = make_trades(seed=43, count=3, start_us=T0 + 3000 * 47_000_000 + MINUTE_US, spacing_us=MINUTE_US)
        await store.insert_trades([replace(t, trade_id=f"later-{t.trade_id}") for t in later])
        moved = await store.candles(query(Timeframe.M1, limit=200))
        assert len(moved) == 200 and moved[:197] == first[3:] and windows[-1] <= moved[0][0]
    finally:
        await store.close()


class HeldWriter:
    """Holds the store's writer inside its transaction of `held` (on the writer thread) until released."""

    def __init__(self, store: DuckDBTradeStore, held: list[Trade], monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        insert = store._insert

        def holding(cursor: object, batches: list[list[Trade]], **rest: object) -> object:
            if any(batch is held for batch in batches):
                self.entered.set()
                assert self.release.wait(30)
            return insert(cursor, batches, **rest)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_insert", holding)


async def assert_candles_exact(store: DuckDBTradeStore, trades: list[Trade], symbol: str) -> None:
    for timeframe in (Timeframe.M1, Timeframe.H1):
        mine = [t for t in trades if t.symbol == symbol]
        got = await store.candles(query(timeframe, symbol=symbol))
        assert as_exact(got) == as_exact(list(buckets(mine, timeframe.bucket_start).items())), timeframe  # type: ignore[arg-type]


@asynccontextmanager
async def bulk_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, seed: int
) -> AsyncIterator[tuple[DuckDBTradeStore, list[Trade], asyncio.Future[object], HeldWriter]]:
    """A store whose writer is held inside the transaction of a 3,000-trade BTCUSDT batch (being written)."""
    store = DuckDBTradeStore(tmp_path / "t.duckdb")
    bulk = make_trades(seed=seed, count=3000, start_us=T0, spacing_us=1_000_000)
    held = HeldWriter(store, bulk, monkeypatch)
    try:
        writing: asyncio.Future[object] = asyncio.ensure_future(store.insert_trades(bulk))
        assert await asyncio.to_thread(held.entered.wait, 30)
        yield store, bulk, writing, held
    finally:
        held.release.set()
        await store.close()


async def test_a_small_batch_of_other_markets_is_written_while_a_transaction_is_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = make_trades(seed=32, count=10, start_us=T0 + 60_000_000, spacing_us=1000, symbols=("ETHUSDT",))
    async with bulk_in_flight(tmp_path, monkeypatch, seed=31) as (store, bulk, writing, held):
        assert await asyncio.wait_for(store.insert_trades(live), 30) == live  # while the bulk is held
        assert not writing.done()
        held.release.set()
        assert await writing == bulk

        await assert_candles_exact(store, bulk, "BTCUSDT")
        await assert_candles_exact(store, live, "ETHUSDT")
        before = {s.symbol: s.trade_count for s in await store.symbols(())}
        await store.rebuild_rollups()  # the incremental rollups of both transactions equal a rebuild
        await assert_candles_exact(store, bulk, "BTCUSDT")
        await assert_candles_exact(store, live, "ETHUSDT")
        assert before == {"BTCUSDT": 3000, "ETHUSDT": 10}


async def test_a_small_batch_of_a_market_in_flight_waits_for_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bulk_in_flight(tmp_path, monkeypatch, seed=33) as (store, bulk, writing, held):
        late = [replace(t, trade_id=f"late-{t.trade_id}") for t in bulk[:10]]  # the same market and minutes
        waiting = asyncio.ensure_future(store.insert_trades(late))
        for _ in range(10):  # let it run as far as it can without the writer
            await asyncio.sleep(0)

        assert not waiting.done() and [trades for trades, _ in store._queued] == [late]
        held.release.set()
        assert await writing == bulk
        assert await waiting == late
        await assert_candles_exact(store, bulk + late, "BTCUSDT")


async def test_a_conflict_beside_the_writer_sends_the_batch_to_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = make_trades(seed=35, count=10, start_us=T0 + 60_000_000, spacing_us=1000, symbols=("ETHUSDT",))
    async with bulk_in_flight(tmp_path, monkeypatch, seed=34) as (store, bulk, writing, held):
        insert, queue = store._insert, store._queue
        conflicts, queued = [], asyncio.Event()

        def conflicting(cursor: object, batches: list[list[Trade]], **rest: object) -> object:
            if rest.get("merger") is store._side_merger:
                conflicts.append(batches)
                raise duckdb.TransactionException("Conflict on tuple deletion!")  # as DuckDB reports one
            return insert(cursor, batches, **rest)  # type: ignore[arg-type]

        async def noting_queue(trades: list[Trade]) -> object:
            queued.set()
            return await queue(trades)

        monkeypatch.setattr(store, "_insert", conflicting)
        monkeypatch.setattr(store, "_queue", noting_queue)
        stored = asyncio.ensure_future(store.insert_trades(live))
        await asyncio.wait_for(queued.wait(), 30)  # after the side writer's attempt failed

        assert len(conflicts) == 1 and not stored.done()  # queued for the writer, which is held
        held.release.set()
        assert (await writing, await stored) == (bulk, live)
        await assert_candles_exact(store, live, "ETHUSDT")
