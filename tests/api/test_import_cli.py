"""`python -m wadm_grpc import`: Binance public-data CSV in, through PublishTrades or straight into a store."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import Running
from tests.support import UM_TRADES, read_kline_rows


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


async def test_import_publishes_through_the_server_idempotently(served: Running) -> None:
    code, out, err = await run_cli("import", "--exchange", "binance", "--target", served.target, str(UM_TRADES))
    assert code == 0, err
    assert "BTCUSDT on binance: 21313 accepted, 0 duplicates" in out

    code, out, _ = await run_cli("import", "--exchange", "binance", "--target", served.target, str(UM_TRADES))
    assert code == 0
    assert "0 accepted, 21313 duplicates" in out
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
    assert "BTCUSDT on binance: 100 accepted, 0 duplicates" in out


async def test_a_bad_row_is_reported_and_nothing_of_its_batch_is_sent(served: Running, tmp_path: Path) -> None:
    source = tmp_path / "ETHUSDT-trades.csv"
    source.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,2683.80,0.002,5.3676,1723161255611,maybe\n")

    code, _, err = await run_cli("import", "--exchange", "binance", "--target", served.target, str(source))

    assert code == 1
    assert "trades[0].side" in err
    assert (await served.client.list_symbols()).symbols == []
