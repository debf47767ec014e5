"""Fuzzing every RPC with well-typed hostile values and raw bytes: no INTERNAL, no UNKNOWN, no hang, no traceback.

Seeded and bounded (hypothesis with derandomize=True): the same examples every run. The server runs in a
thread of its own, so the test drives it with grpc's blocking (C-core) client, as a collector would.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import make_trades
from wadm_grpc.bootstrap import bootstrap, start_grpc
from wadm_grpc.config import Settings
from wadm_grpc.domain.clock import ManualClock
from wadm_grpc.pb.wadm.market.v1 import admin_service_pb2 as admin_pb
from wadm_grpc.pb.wadm.market.v1 import market_data_service_pb2 as md
from wadm_grpc.pb.wadm.market.v1 import trade_ingest_service_pb2 as ingest_pb
from wadm_grpc.stores.duckdb import DuckDBTradeStore

NOW_US = 1_723_162_200_000_000
NOW_SECONDS = NOW_US // 1_000_000
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
# A unary call that does not answer within this is a hang; a stream is cut here (it may rightly run forever).
UNARY_TIMEOUT_SECONDS = 10.0
STREAM_TIMEOUT_SECONDS = 0.3
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class ServerThread:
    """The real server (embedded store, seeded trades, a clock standing still) on its own event loop."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="fuzzed-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(60), "the server did not start"
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test thread
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        clock = ManualClock(NOW_US)
        app = await bootstrap(
            Settings(page_token_key=b"fuzz"), store=DuckDBTradeStore(self._path / "fuzz.duckdb"), clock=clock
        )
        trades = make_trades(seed=8, count=2000, start_us=NOW_US - 3_600_000_000, spacing_us=1_700_000)
        await app.ingest.store_trades(trades)
        server = await start_grpc(app, "127.0.0.1:0")
        self.port = server.port
        self._ready.set()
        await self._stop.wait()
        await app.bus.close()
        await server.stop(0)
        await app.close()


class ServerLog(logging.Handler):
    """Every record at WARNING or above, and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    with (
        ServerThread(tmp_path_factory.mktemp("fuzz")) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened,
    ):
        yield opened


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    tracebacks = [r for r in handler.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert not [r for r in handler.records if r.levelno >= logging.ERROR], [r.getMessage() for r in handler.records]


# Values that broke or nearly broke something once, mixed with arbitrary ones.
_TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "BTCUSDT",
            "btcusdt",
            "ETHUSDT",
            "binance",
            "BAD!",
            "BTC USDT",
            "NaN",
            "Infinity",
            "-1",
            "0",
            "1e5",
            "0.0000000000000000001",
            "99999999999999999999",
            "9999999999999999.99",
            "61800.30",
            "\x00",
            "é",
            "🚀",
            " 77 ",
            "1",
        ]
    ),
    st.text(max_size=40),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(1_000, 9_000)),
)
_INT32 = st.one_of(
    st.sampled_from([0, 1, -1, 5, 20, 100, 101, 1000, 1001, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
_INT64 = st.one_of(_INT32, st.integers(-(2**63), 2**63 - 1))
_SECONDS = st.one_of(
    st.sampled_from([0, -1, 1, 5, 15, 60, 61, NOW_SECONDS, NOW_SECONDS + 3600, 253_402_300_799, 253_402_300_800]),
    st.sampled_from([-62_135_596_800, -62_135_596_801, 32_503_680_000]),
    st.integers(-(2**63), 2**63 - 1),
)
_NANOS = st.one_of(st.sampled_from([0, 999_999_999, 1_000_000_000, -1, -1000, 500]), st.integers(-(2**31), 2**31 - 1))


def messages(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Well-typed messages of `descriptor` with hostile values in every field."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.builds(cls, seconds=_SECONDS, nanos=_NANOS)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _values(field, depth)
        if field.is_repeated:
            value = st.lists(value, max_size=25 if depth == 0 else 3)
        fields[field.name] = st.none() | value
    return st.fixed_dictionaries(fields).map(lambda values: cls(**{k: v for k, v in values.items() if v is not None}))


def _values(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == field.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == field.TYPE_STRING:
        return _TEXTS
    if field.type == field.TYPE_BOOL:
        return st.booleans()
    if field.type == field.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _INT32)
    if field.type in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
        return _INT32
    if field.type in (field.TYPE_INT64, field.TYPE_SINT64, field.TYPE_SFIXED64):
        return _INT64
    raise AssertionError(f"no strategy for {field.full_name}")


def _served_methods() -> list[tuple[str, pb_descriptor.MethodDescriptor]]:
    """(path, descriptor) of every method served; reflection v1 is v1alpha's protocol under another name."""
    files = (md.DESCRIPTOR, ingest_pb.DESCRIPTOR, admin_pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    found = [
        (f"/{service.full_name}/{method.name}", method)
        for file in files
        for service in file.services_by_name.values()
        for method in service.methods
    ]
    v1alpha = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods[0]
    return [*found, ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", v1alpha)]


METHODS = _served_methods()


def call(
    channel: grpc.Channel, path: str, method: pb_descriptor.MethodDescriptor, requests: list[bytes]
) -> grpc.StatusCode:
    """Send the request bytes; the status the call ended with (OK included)."""
    timeout = STREAM_TIMEOUT_SECONDS if method.server_streaming else UNARY_TIMEOUT_SECONDS
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(path)(iter(requests), timeout=timeout):
                pass
        elif method.client_streaming:
            channel.stream_unary(path)(iter(requests), timeout=timeout)
        elif method.server_streaming:
            for _ in channel.unary_stream(path)(requests[0], timeout=timeout):
                pass
        else:
            channel.unary_unary(path)(requests[0], timeout=timeout)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        details: str = error.details()  # type: ignore[attr-defined]
    else:
        return grpc.StatusCode.OK
    assert code not in NEVER, (method.name, code, details)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        assert method.server_streaming, f"{method.name} hung"
    return code


@pytest.mark.parametrize(("path", "method"), METHODS, ids=[path for path, _ in METHODS])
def test_well_typed_hostile_requests_get_a_clear_status(
    channel: grpc.Channel, server_log: ServerLog, path: str, method: pb_descriptor.MethodDescriptor
) -> None:
    count = st.integers(1, 3) if method.client_streaming else st.just(1)

    @FUZZ
    @given(requests=count.flatmap(lambda n: st.lists(messages(method.input_type), min_size=n, max_size=n)))
    def fuzz(requests: list[Message]) -> None:
        call(channel, path, method, [request.SerializeToString() for request in requests])

    fuzz()


@pytest.mark.parametrize(("path", "method"), METHODS, ids=[path for path, _ in METHODS])
def test_raw_request_bytes_get_a_clear_status(
    channel: grpc.Channel, server_log: ServerLog, path: str, method: pb_descriptor.MethodDescriptor
) -> None:
    @FUZZ
    @given(requests=st.lists(st.binary(max_size=300), min_size=1, max_size=3 if method.client_streaming else 1))
    def fuzz(requests: list[bytes]) -> None:
        call(channel, path, method, requests)

    fuzz()
