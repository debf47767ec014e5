"""Clients that are not ours: the real `buf curl` (server streaming through reflection) and a client generated from
protos/ alone with grpc_tools.protoc, importing no project code. grpcurl's README session: tests/api/test_grpcurl.py."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from google.api import annotations_pb2
from grpc_tools import protoc

from tests.api.test_reflection import buf  # noqa: F401 - the fixture: the Makefile's pinned buf
from tests.clients.conftest import Seeded
from tests.clients.test_client import fresh_trades, live_streams, publish_once_streaming

ROOT = Path(__file__).resolve().parents[2]


def buf_curl(binary: Path, target: str, method: str, request: dict[str, object]) -> list[str]:
    return [str(binary), "curl", "--protocol", "grpc", "--data", json.dumps(request), f"http://{target}/{method}"]


def test_buf_curl_unary_through_reflection(seeded: Seeded, buf: Path) -> None:  # noqa: F811
    args = buf_curl(
        buf, seeded.server.target, "wadm.market.v1.MarketDataService/GetOrderbook", {"symbol": "SOLUSDT", "depth": 2}
    )
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    book = json.loads(done.stdout)
    assert book["simulated"] is True and len(book["bids"]) == len(book["asks"]) == 2


def test_buf_curl_server_streaming_through_reflection(seeded: Seeded, buf: Path) -> None:  # noqa: F811
    target = seeded.server.target
    trades = fresh_trades("BTCUSDT", 2, first_id=90_000)
    request = {"symbols": ["BTCUSDT"], "heartbeat_interval": "1s"}
    args = buf_curl(buf, target, "wadm.market.v1.MarketDataService/StreamTrades", request)
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as curl:
        try:
            publish_once_streaming(target, trades, streams=live_streams(target) + 1)
            assert curl.stdout is not None
            out, deadline = b"", time.monotonic() + 60
            while b'"90001"' not in out:  # the second trade's id
                assert time.monotonic() < deadline and curl.poll() is None, out.decode() + curl.stderr.read().decode()  # type: ignore[union-attr]
                if select.select([curl.stdout], [], [], 1)[0]:
                    out += os.read(curl.stdout.fileno(), 65536)
        finally:
            curl.kill()
    text = out.decode()
    assert '"90000"' in text and '"price": "150.125"' in text  # each message printed as it arrived


def test_a_client_generated_from_the_protos_alone(seeded: Seeded, tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos" / "wadm").rglob("*.proto"))
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{ROOT / 'protos'}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"-I{Path(annotations_pb2.__file__).parents[2]}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *protos,
    ])  # fmt: skip
    assert code == 0
    (tmp_path / "call.py").write_text(
        "import json, sys\n"
        "import grpc\n"
        "from wadm.market.v1 import market_data_service_pb2 as md, market_data_service_pb2_grpc as rpc\n"
        "stub = rpc.MarketDataServiceStub(grpc.insecure_channel(sys.argv[1]))\n"
        "request = md.GetCandlesRequest(symbol='ETHUSDT', timeframe=md.TIMEFRAME_1M, limit=2)\n"
        "answer = stub.GetCandles(request, timeout=30)\n"
        "ours = sorted(m for m in sys.modules if m.startswith(('wadm_client', 'wadm_grpc')))\n"
        "print(json.dumps({'count': len(answer.candles), 'open': answer.candles[0].open, 'ours': ours}))\n"
    )
    done = subprocess.run([sys.executable, "-s", tmp_path / "call.py", seeded.server.target], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)  # fmt: skip

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["count"] == 2 and answer["ours"] == []
    assert answer["open"]  # a decimal string, as the contract says
