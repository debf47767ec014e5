"""`python -m wadm_grpc import`: Binance public-data CSV in, through PublishTrades or straight into a store."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import Running
from tests.support import UM_TRADES, read_kline_rows
from wadm_grpc.config import Settings
from wadm_grpc.importer import default_target


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wadm_grpc",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | (env or {}),
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_import_publishes_through_the_server_and_a_rerun_skips_what_is_stored(served: Running) -> None:
    code, out, err = await run_cli("import", "--exchange", "binance", "--target", served.target, str(UM_TRADES))
    assert code == 0, err
    assert "BTCUSDT on binance: 21313 read, 21313 accepted, 0 duplicates, 0 skipped as already stored" in out

    code, out, _ = await run_cli("import", "--exchange", "binance", "--target", served.target, str(UM_TRADES))
    assert code == 0
    assert "21313 read, 0 accepted, 0 duplicates, 21313 skipped as already stored" in out
    kline = read_kline_rows()[3]
    candles = await served.client.get_candles("BTCUSDT", "1m", start=int(kline["open_time"]) * 1000, limit=1)
    assert (candles.candles[0].close, candles.candles[0].volume) == (kline["close"], kline["volume"])


async def test_headerless_file_and_explicit_symbol_direct_into_the_store(tmp_path: Path) -> None:
    lines = UM_TRADES.read_text().splitlines()[1:101]  # no header
    source = tmp_path / "trades.csv"
    source.write_text("\n".join(lines) + "\n")
    env = {"WADM_STORE": f"duckdb:{tmp_path / 'direct.duckdb'}"}

    code, out, err = await run_cli(
        "import", "--direct", "--exchange", "binance", "--symbol", "btcusdt", str(source), env=env
    )

    assert code == 0, err
    assert "BTCUSDT on binance: 100 read, 100 accepted, 0 duplicates" in out


async def test_a_bad_row_is_reported_and_nothing_of_its_batch_is_sent(served: Running, tmp_path: Path) -> None:
    source = tmp_path / "ETHUSDT-trades.csv"
    source.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,2683.80,0.002,5.3676,1723161255611,maybe\n")

    code, _, err = await run_cli("import", "--exchange", "binance", "--target", served.target, str(source))

    assert code == 1
    assert "trades[0].side" in err
    assert (await served.client.list_symbols()).symbols == []


def first_trades(directory: Path, count: int) -> Path:
    """The first `count` trades of the real file, with its header, under a name that says BTCUSDT."""
    source = directory / "BTCUSDT-trades-first.csv"
    source.write_text("\n".join(UM_TRADES.read_text().splitlines()[: count + 1]) + "\n")
    return source


async def test_without_target_import_publishes_to_the_server_wadm_host_and_port_name(
    served: Running, tmp_path: Path
) -> None:
    assert served.server.port != Settings().port
    env = {"WADM_HOST": "0.0.0.0", "WADM_PORT": str(served.server.port)}  # listening everywhere: reached on loopback

    code, out, err = await run_cli("import", "--exchange", "binance", str(first_trades(tmp_path, 100)), env=env)

    assert code == 0, err
    assert "BTCUSDT on binance: 100 read, 100 accepted, 0 duplicates" in out
    assert [s.symbol for s in (await served.client.list_symbols()).symbols] == ["BTCUSDT"]


async def test_an_explicit_target_wins_over_wadm_port(served: Running) -> None:
    env = {"WADM_PORT": "1"}  # nothing listens there

    code, out, err = await run_cli(
        "import", "--exchange", "binance", "--target", served.target, str(UM_TRADES), env=env
    )

    assert code == 0, err
    assert "21313 read, 21313 accepted" in out


async def test_without_target_a_port_picked_at_start_is_refused_with_a_hint() -> None:
    code, _, err = await run_cli("import", "--exchange", "binance", str(UM_TRADES), env={"WADM_PORT": "0"})

    assert code == 2
    assert "pass --target" in err


def test_default_target_maps_wildcard_hosts_to_loopback() -> None:
    assert default_target(Settings(host="0.0.0.0", port=7000)) == "127.0.0.1:7000"
    assert default_target(Settings(host="::", port=7000)) == "[::1]:7000"
    assert default_target(Settings(host="10.1.2.3", port=7000)) == "10.1.2.3:7000"
    assert default_target(Settings(host="fd00::5", port=7000)) == "[fd00::5]:7000"
    assert default_target(Settings(host="[fd00::5]", port=7000)) == "[fd00::5]:7000"
