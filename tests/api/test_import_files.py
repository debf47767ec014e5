"""`import` of Binance files as published: .zip and .csv, spot/USD-M/COIN-M named apart, several at once,
resume, --direct equal to the service path digit for digit (and to Binance's official klines)."""

from __future__ import annotations

import os
import re
import signal
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from tests.api.test_import_cli import run_cli
from tests.api.test_real_klines import COVERED, FIELDS, kline_candles
from tests.conftest import Running
from tests.support import DATA, UM_TRADES, read_kline_rows
from wadm_client import RawWadmClient
from wadm_grpc import importer
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.bus.memory import InProcessTradeBus
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.domain.trade import TradeCursor
from wadm_grpc.feeds.binance_files import FileRefused, Position, TradeFile, describe
from wadm_grpc.imports.destinations import Counts, IngestDestination
from wadm_grpc.imports.progress import Progress
from wadm_grpc.ports import TradeQuery, TradeStore
from wadm_grpc.stores.duckdb import DuckDBTradeStore

SPOT_TRADES = DATA / "BTCUSDT-spot-trades-2024-08-08T2354.csv"
SUMMARY = re.compile(
    r"^(?P<path>\S+): (?P<symbol>\S+) on (?P<exchange>\S+): (?P<read>\d+) read, (?P<accepted>\d+) accepted, "
    r"(?P<duplicates>\d+) duplicates, (?P<skipped>\d+) skipped as already stored, [0-9.]+ s, [0-9,]+ rows/s$"
)


def rows_of(path: Path, count: int | None = None) -> list[str]:
    """Data lines (no header) of a shared file."""
    lines = path.read_text().splitlines()[1:]
    return lines if count is None else lines[:count]


def write_zip(path: Path, member: str, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "\n".join(lines) + "\n")
    return path


def write_csv(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def summaries(out: str) -> list[dict[str, str]]:
    found = [SUMMARY.match(line) for line in out.splitlines()]
    return [match.groupdict() for match in found if match]


def store_env(tmp_path: Path) -> dict[str, str]:
    return {"WADM_STORE": f"duckdb:{tmp_path / 'store.duckdb'}"}


async def stored_trades(tmp_path: Path, symbol: str, exchange: str) -> list[tuple[str, str, str, str, int]]:
    store = DuckDBTradeStore(tmp_path / "store.duckdb")
    try:
        found = []
        cursor = None
        while True:
            page = await store.trades(TradeQuery(symbol, (exchange,), None, None, cursor, 5000))
            if not page:
                break
            found.extend(page)
            last = page[-1]
            cursor = TradeCursor(last.time_us, last.exchange, last.trade_id)
        return sorted((t.trade_id, str(t.price), str(t.quantity), t.side.value, t.time_us) for t in found)
    finally:
        await store.close()


async def test_zip_and_csv_files_of_three_markets_at_once_are_named_apart(tmp_path: Path) -> None:
    um = write_zip(
        tmp_path / "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip",
        "BTCUSDT-trades-2024-08-08.csv",
        [UM_TRADES.read_text().splitlines()[0], *rows_of(UM_TRADES, 300)],
    )
    spot = write_zip(  # as Binance publishes spot: no header, is_best_match last
        tmp_path / "downloads/BTCUSDT-trades-2024-08-08.zip",
        "BTCUSDT-trades-2024-08-08.csv",
        [f"{line},True" for line in rows_of(SPOT_TRADES, 200)],
    )
    coinm = write_csv(  # COIN-M's header names base_qty
        tmp_path / "BTCUSD_PERP-trades-2024-08-08.csv",
        ["id,price,qty,base_qty,time,is_buyer_maker", "1,61800.3,2,0.00323622,1723161256322,false"],
    )

    code, out, err = await run_cli("import", "--direct", str(um), str(spot), str(coinm), env=store_env(tmp_path))

    assert code == 0, err
    assert [(s["symbol"], s["exchange"], s["accepted"]) for s in summaries(out)] == [
        ("BTCUSDT", "binance-usdm", "300"),
        ("BTCUSDT", "binance", "200"),
        ("BTCUSD_PERP", "binance-coinm", "1"),
    ]
    assert len(await stored_trades(tmp_path, "BTCUSDT", "binance")) == 200
    assert await stored_trades(tmp_path, "BTCUSD_PERP", "binance-coinm") == [
        ("1", "61800.3", "2", "buy", 1723161256322000)
    ]


async def test_an_ambiguous_or_contradictory_file_is_refused_and_nothing_is_imported(tmp_path: Path) -> None:
    good = write_csv(
        tmp_path / "BTCUSDT-um-trades.csv", [UM_TRADES.read_text().splitlines()[0], *rows_of(UM_TRADES, 5)]
    )
    headerless = write_csv(tmp_path / "BTCUSDT-trades-2024-08-08.csv", rows_of(UM_TRADES, 5))  # USD-M or COIN-M?
    contradictory = write_csv(  # named spot, laid out as COIN-M
        tmp_path / "BTCUSD-spot-trades.csv", ["id,price,qty,base_qty,time,is_buyer_maker", *rows_of(UM_TRADES, 5)]
    )

    for bad, reason in ((headerless, "ambiguous market"), (contradictory, "its name says spot")):
        code, out, err = await run_cli("import", "--direct", str(good), str(bad), env=store_env(tmp_path))
        assert code == 2
        assert reason in err and "pass --market" in err
        assert out == ""
    assert not (tmp_path / "store.duckdb").exists()

    code, out, err = await run_cli("import", "--direct", "--market", "usdm", str(headerless), env=store_env(tmp_path))
    assert code == 0, err
    assert summaries(out)[0]["exchange"] == "binance-usdm"


def test_a_directory_and_a_missing_path_are_refused_saying_which(tmp_path: Path) -> None:
    for path, reason in (
        (tmp_path, "a directory, not a trade file"),
        (tmp_path / "BTCUSDT-trades.csv", "no such file"),
    ):
        with pytest.raises(FileRefused, match=reason):
            describe(path, exchange=None, market=None, symbol=None)


async def test_microsecond_spot_times_equal_millisecond_ones(tmp_path: Path) -> None:
    lines = rows_of(SPOT_TRADES, 50)
    micro = []
    for line in lines:
        cells = line.split(",")
        cells[4] += "000"
        micro.append(",".join(cells))
    ms = write_csv(tmp_path / "ms/BTCUSDT-spot-trades.csv", lines)
    us = write_csv(tmp_path / "us/BTCUSDT-spot-trades.csv", micro)

    code, _, err = await run_cli("import", "--direct", str(ms), env=store_env(tmp_path))
    assert code == 0, err
    code, _, err = await run_cli("import", "--direct", "--exchange", "spot-us", str(us), env=store_env(tmp_path))
    assert code == 0, err

    from_ms = await stored_trades(tmp_path, "BTCUSDT", "binance")
    assert from_ms == await stored_trades(tmp_path, "BTCUSDT", "spot-us")
    assert from_ms[0][4] == int(lines[0].split(",")[4]) * 1000


async def test_resume_after_an_interrupt_skips_what_is_stored_and_ends_exact(tmp_path: Path) -> None:
    header = UM_TRADES.read_text().splitlines()[0]
    part = write_csv(tmp_path / "part/BTCUSDT-um-trades.csv", [header, *rows_of(UM_TRADES, 5000)])
    whole = write_zip(tmp_path / "BTCUSDT-um-trades.zip", "BTCUSDT-um-trades.csv", UM_TRADES.read_text().splitlines())

    code, out, err = await run_cli("import", "--direct", str(part), env=store_env(tmp_path))  # the interrupted run
    assert code == 0, err
    code, out, err = await run_cli("import", "--direct", str(whole), env=store_env(tmp_path))

    assert code == 0, err
    [summary] = summaries(out)
    assert (summary["read"], summary["accepted"], summary["duplicates"], summary["skipped"]) == (
        "21313",
        "16313",
        "0",
        "5000",
    )
    fresh = tmp_path / "fresh"
    code, _, err = await run_cli("import", "--direct", str(UM_TRADES), env=store_env(fresh))
    assert code == 0, err
    assert await stored_trades(tmp_path, "BTCUSDT", "binance-usdm") == await stored_trades(
        fresh, "BTCUSDT", "binance-usdm"
    )


async def test_a_stored_run_with_gaps_is_not_skipped_but_inserted_idempotently(tmp_path: Path) -> None:
    header = UM_TRADES.read_text().splitlines()[0]
    rows = rows_of(UM_TRADES, 300)
    holes = write_csv(tmp_path / "holes/BTCUSDT-um-trades.csv", [header, *rows[:100], *rows[200:]])
    whole = write_csv(tmp_path / "BTCUSDT-um-trades.csv", [header, *rows])

    code, _, err = await run_cli("import", "--direct", str(holes), env=store_env(tmp_path))
    assert code == 0, err
    code, out, err = await run_cli("import", "--direct", str(whole), env=store_env(tmp_path))

    assert code == 0, err
    [summary] = summaries(out)
    assert (summary["accepted"], summary["duplicates"], summary["skipped"]) == ("100", "200", "0")


async def test_the_summary_line_when_not_on_a_terminal(tmp_path: Path) -> None:
    code, out, err = await run_cli("import", "--direct", str(UM_TRADES), env=store_env(tmp_path))

    assert code == 0, err
    [line, rollups] = out.splitlines()
    assert SUMMARY.match(line)
    assert line.startswith(f"{UM_TRADES}: BTCUSDT on binance-usdm: 21313 read, 21313 accepted, 0 duplicates, 0 skipped")
    assert rollups.startswith("rollups rebuilt in ")
    assert "ETA" not in err


async def test_a_bad_row_fails_its_file_with_exit_1_and_keeps_the_other_files(tmp_path: Path) -> None:
    header = UM_TRADES.read_text().splitlines()[0]
    bad = write_csv(tmp_path / "ETHUSDT-um-trades.csv", [header, "1,2683.80,0.002,5.3676,1723161255611,maybe"])
    good = write_csv(tmp_path / "BTCUSDT-um-trades.csv", [header, *rows_of(UM_TRADES, 10)])

    code, out, err = await run_cli("import", "--direct", str(bad), str(good), env=store_env(tmp_path))

    assert code == 1
    assert "trades[0].side" in err and "line 2" in err
    assert [s["accepted"] for s in summaries(out)] == ["0", "10"]


async def test_a_locked_store_is_refused_with_exit_2(tmp_path: Path) -> None:
    store = DuckDBTradeStore(tmp_path / "store.duckdb")  # this process holds the file, as a server would
    try:
        code, _, err = await run_cli("import", "--direct", str(UM_TRADES), env=store_env(tmp_path))
    finally:
        await store.close()

    assert code == 2
    assert "is locked by another process" in err and "without --direct" in err


@asynccontextmanager
async def serving(path: Path) -> AsyncIterator[Running]:
    """A real server over an existing DuckDB file."""
    store = DuckDBTradeStore(path)
    bus = InProcessTradeBus(buffer_trades=1000)
    app = await bootstrap(Settings(page_token_key=b"test-key"), store=store, bus=bus)
    server = await start_grpc(app, "127.0.0.1:0")
    client = RawWadmClient.connect(f"127.0.0.1:{server.port}", timeout_seconds=30)
    try:
        yield Running(app=app, server=server, client=client, bus=bus)
    finally:
        await client.close()
        await bus.close()
        await server.stop(0)
        await app.close()


async def test_direct_equals_the_service_path_digit_for_digit_and_the_official_klines(
    served: Running, tmp_path: Path
) -> None:
    code, _, err = await run_cli("import", "--direct", str(UM_TRADES), env=store_env(tmp_path))
    assert code == 0, err
    code, _, err = await run_cli("import", "--market", "usdm", "--target", served.target, str(UM_TRADES))
    assert code == 0, err

    async with serving(tmp_path / "store.duckdb") as direct:
        klines = await kline_candles(direct)
        assert klines == await kline_candles(served)
        assert klines == [
            {field: row[field] for field in FIELDS} | {"open_time": row["open_time"], "close_time": row["close_time"]}
            for row in read_kline_rows()[COVERED]
        ]
        for timeframe in ("1m", "5m", "1h", "1d"):
            assert await direct.client.get_candles("BTCUSDT", timeframe) == await served.client.get_candles(
                "BTCUSDT", timeframe
            )
        assert await direct.client.list_symbols() == await served.client.list_symbols()


async def test_ctrl_c_stops_after_the_batch_in_flight_exits_130_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_read = importer.read_batches
    signalled = False

    def read_then_interrupt(trade_file: TradeFile, position: Position) -> Iterator[pa.RecordBatch]:
        nonlocal signalled
        for batch in real_read(trade_file, position, block_bytes=64 << 10):  # ~20 batches
            yield batch
            if not signalled:
                signalled = True
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as the terminal sends it

    monkeypatch.setattr(importer, "read_batches", read_then_interrupt)
    settings = Settings(store=f"duckdb:{tmp_path / 'store.duckdb'}")
    request = importer.ImportRequest(files=[str(UM_TRADES)], direct=True, progress=False)

    assert await importer.run_import(settings, request) == importer.INTERRUPTED

    out, err = capsys.readouterr()
    [summary] = summaries(out.replace(" (interrupted)", ""))
    assert "(interrupted)" in out and "run the same command again to resume" in err
    assert 0 < int(summary["accepted"]) == int(summary["read"]) < 21313
    assert len(await stored_trades(tmp_path, "BTCUSDT", "binance-usdm")) == int(summary["accepted"])

    monkeypatch.setattr(importer, "read_batches", real_read)
    assert await importer.run_import(settings, request) == 0
    [again] = summaries(capsys.readouterr().out)
    assert (int(again["skipped"]), int(again["accepted"])) == (
        int(summary["accepted"]),
        21313 - int(summary["accepted"]),
    )


async def test_direct_on_another_store_goes_through_ingest_and_resumes_too(
    store: TradeStore, clock: ManualClock, tmp_path: Path
) -> None:
    header = UM_TRADES.read_text().splitlines()[0]
    part = write_csv(tmp_path / "part/BTCUSDT-um-trades.csv", [header, *rows_of(UM_TRADES, 1000)])
    whole = write_csv(tmp_path / "BTCUSDT-um-trades.csv", [header, *rows_of(UM_TRADES, 3000)])
    app = await bootstrap(Settings(), store=store, bus=InProcessTradeBus(buffer_trades=10), clock=clock)
    destination = IngestDestination(app)
    found = []
    for path in (part, whole):
        trade_file = describe(path, exchange=None, market=None, symbol=None)
        counts = Counts()
        with Progress(trade_file, enabled=False) as progress:
            await importer._import_file(trade_file, destination, counts, progress, importer._Stop())
        found.append((counts.read, counts.inserted, counts.duplicates, counts.skipped))

    assert found == [(1000, 1000, 0, 0), (3000, 2000, 0, 1000)]
    [summary] = await store.symbols(("binance-usdm",))
    assert summary.trade_count == 3000


async def test_a_rerun_after_a_load_killed_before_its_rollup_rebuild_repairs_the_rollups(tmp_path: Path) -> None:
    from wadm_grpc.imports.rows import validated
    from wadm_grpc.stores.duckdb.bulk_load import DuckDBBulkLoader

    trade_file = describe(UM_TRADES, exchange=None, market=None, symbol=None)
    loader = DuckDBBulkLoader.open(tmp_path / "store.duckdb")
    for batch in importer.read_batches(trade_file, Position()):  # loaded, then "killed": no finish()
        rows = validated(batch, exchange="binance-usdm", symbol="BTCUSDT", first_line=2, latest_us=2**62)
        loader.load("binance-usdm", "BTCUSDT", rows)
    loader._connection.close()
    await loader.store.close()

    code, out, err = await run_cli("import", "--direct", str(UM_TRADES), env=store_env(tmp_path))

    assert code == 0, err
    assert "21313 skipped as already stored" in out and "rollups rebuilt" in out
    store = DuckDBTradeStore(tmp_path / "store.duckdb")
    try:
        assert [(s.symbol, s.trade_count) for s in await store.symbols(())] == [("BTCUSDT", 21313)]
    finally:
        await store.close()


async def test_progress_bar_shows_rows_rate_and_eta_when_asked_for(tmp_path: Path) -> None:
    code, out, err = await run_cli("import", "--direct", "--progress", str(UM_TRADES), env=store_env(tmp_path))

    assert code == 0, err
    assert "21,313 rows" in err and "rows/s" in err and "ETA" in err
    assert SUMMARY.match(out.splitlines()[0])
