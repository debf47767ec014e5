"""A real `python -m wadm_grpc serve` process on a free port, seeded with deterministic trades (the client tests)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from wadm_client import WadmSyncClient, make_trade
from wadm_client.pb.wadm.market.v1 import trade_pb2

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
BASE = {"BTCUSDT": Decimal("64000.00"), "ETHUSDT": Decimal("3100.00"), "SOLUSDT": Decimal("150.000")}
TRADES_PER_SYMBOL = 240  # one every 5 s over the last 20 minutes


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    target: str
    log: Path


def seeded_trades(now_us: int, seed: int = 13) -> dict[str, list[trade_pb2.Trade]]:
    """Per symbol, trades every 5 s ending a few seconds before `now_us`, prices a seeded random walk."""
    rng = random.Random(seed)
    out: dict[str, list[trade_pb2.Trade]] = {}
    for symbol in SYMBOLS:
        price, trades = BASE[symbol], []
        for i in range(TRADES_PER_SYMBOL):
            price += Decimal(rng.randint(-50, 50)) / 100
            quantity = Decimal(rng.randint(1, 5000)) / 1000
            time_us = now_us - (TRADES_PER_SYMBOL - i) * 5_000_000
            trades.append(make_trade(exchange="binance", symbol=symbol, trade_id=i + 1, price=price,
                                     quantity=quantity, side=rng.choice(("buy", "sell")), time=time_us))  # fmt: skip
        out[symbol] = trades
    return out


@contextmanager
def wadm_server(
    tmp: Path, *, port: int = 0, store: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """The server, serving once its 'wadm-grpc started' log line is out; killed on exit. `env`: more settings."""
    log = tmp / f"server-{time.monotonic_ns()}.log"
    env = (
        os.environ
        | {
            "WADM_PORT": str(port),
            "WADM_STORE": f"duckdb:{store or tmp / 'wadm.duckdb'}",
            "WADM_DEMO_FEED": "false",
            "WADM_HTTP": "false",
            "WADM_DRAIN_SECONDS": "0",
            "WADM_GRACE_SECONDS": "1",
            "WADM_LOG_FORMAT": "json",
        }
        | (env or {})
    )
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "wadm_grpc", "serve"], env=env, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            for line in log.read_text().splitlines():
                record = json.loads(line) if line.startswith("{") else {}
                if record.get("message") == "wadm-grpc started":
                    found = record["port"]
            time.sleep(0.05)  # polling a log file with a deadline
        yield ServerProcess(process, f"127.0.0.1:{found}", log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def seed(target: str, now_us: int) -> dict[str, list[trade_pb2.Trade]]:
    trades = seeded_trades(now_us)
    with WadmSyncClient.connect(target) as client:
        client.publish_trades(trades.values())
    return trades
