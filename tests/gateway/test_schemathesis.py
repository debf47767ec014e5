"""schemathesis against /api/openapi.json of the real gateway and server: generated requests (valid and
invalid, seeded, bounded) get no 5xx and only answers the document describes (status, content type,
headers, body schema).

StreamTrades is left out: its answer never ends (live trades, then heartbeats), so a run could only cut
it at a request timeout, which schemathesis reports as a failure. Its refusals are tested in
test_http_streams.py, its document entry in test_openapi.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.gateway.conftest import Gatewayed

SCHEMATHESIS = Path(sys.executable).with_name("st")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
SEED = 20240808
MAX_EXAMPLES = 10  # fuzzing cases per operation; the coverage phase adds its boundary cases (~700 in all)
RUN_TIMEOUT_SECONDS = 110
STREAM = "GET /api/v1/market/trades:stream"
CANDLE_STREAM = "GET /api/v1/market/candles/{symbol}/{timeframe}:stream"


async def test_generated_requests_get_no_server_error_and_only_documented_answers(
    gateway: Gatewayed, tmp_path: Path
) -> None:
    junit = tmp_path / "schemathesis.xml"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{gateway.base_url}/api/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--exclude-operation-id",
        "StreamTrades",
        "--exclude-operation-id",
        "StreamCandles",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",  # the same cases every run (and no example database)
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    # The CLI runs in its own process; this test's event loop keeps serving its requests meanwhile.
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")

    assert process.returncode == 0, text[-8000:]
    suite = ET.parse(junit).getroot()  # noqa: S314 (schemathesis's own report of this run)
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0"), text[-8000:]
    document = (await gateway.client.get("/api/openapi.json")).json()
    operations = {f"{m.upper()} {path}" for path, item in document["paths"].items() for m in item}
    expected = operations - {STREAM, CANDLE_STREAM}
    assert {case.get("name") for case in suite.iter("testcase")} == expected  # every operation but the streams
