"""Server reflection, v1 and v1alpha, at the protocol level (real server, real channel) and through buf curl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as rpb

from tests.conftest import Running
from tests.support import AFTER_DATA_US, MINUTE_US, STORE_KINDS, StoreKind
from wadm_client import make_trade
from wadm_grpc.api.grpc.reflection import ReflectionServicer

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".build" / "node_modules" / ".bin" / "buf"
REFLECTION_SERVICES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
MARKET_FILE = "wadm/market/v1/market_data_service.proto"


@pytest.fixture
def store_kind() -> StoreKind:
    """Reflection does not depend on the store: the embedded one is enough."""
    kind: StoreKind = STORE_KINDS[0].values[0]
    return kind


async def reflect(
    target: str, service: str, requests: Sequence[rpb.ServerReflectionRequest]
) -> list[rpb.ServerReflectionResponse]:
    """Send `requests` on one ServerReflectionInfo stream of `service`; the responses, in order.

    v1 and v1alpha messages are the same bytes, so v1alpha's classes speak both."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString,
        )
        return [response async for response in call(iter(requests), timeout=30)]


def files_of(response: rpb.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response.error_response
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]


def symbol(name: str) -> rpb.ServerReflectionRequest:
    return rpb.ServerReflectionRequest(file_containing_symbol=name)


@pytest.mark.parametrize("service", REFLECTION_SERVICES)
async def test_both_versions_list_every_service_including_both_reflections(served: Running, service: str) -> None:
    (response,) = await reflect(served.target, service, [rpb.ServerReflectionRequest(list_services="")])

    assert [s.name for s in response.list_services_response.service] == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "wadm.market.v1.AdminService",
        "wadm.market.v1.MarketDataService",
        "wadm.market.v1.TradeIngestService",
    ]


@pytest.mark.parametrize("service", REFLECTION_SERVICES)
@pytest.mark.parametrize(
    ("name", "defined_in"),
    [
        ("wadm.market.v1.MarketDataService.GetCandles", MARKET_FILE),  # a method: upb alone misses it
        ("wadm.market.v1.Timeframe.TIMEFRAME_1M", MARKET_FILE),  # an enum value as grpcurl names it
        ("wadm.market.v1.TIMEFRAME_1M", MARKET_FILE),  # an enum value as protobuf scopes it
        ("grpc.health.v1.Health.Watch", "grpc_health/v1/health.proto"),
        ("grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING", "grpc_health/v1/health.proto"),
        ("grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto"),
        ("grpc.reflection.v1.ServerReflection.ServerReflectionInfo", "grpc/reflection/v1/reflection.proto"),
    ],
)
async def test_methods_and_enum_values_resolve_to_their_file(
    served: Running, service: str, name: str, defined_in: str
) -> None:
    (response,) = await reflect(served.target, service, [symbol(name)])

    assert files_of(response)[0].name == defined_in
    assert response.original_request.file_containing_symbol == name


async def test_the_v1_file_describes_the_v1_protocol(served: Running) -> None:
    (response,) = await reflect(served.target, REFLECTION_SERVICES[0], [symbol("grpc.reflection.v1.ServerReflection")])

    (file,) = files_of(response)
    method = file.service[0].method[0]
    assert (file.package, method.input_type, method.output_type) == (
        "grpc.reflection.v1",
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert {f.type_name for m in file.message_type for f in m.field if f.type_name} <= {
        f".grpc.reflection.v1.{m.name}" for m in file.message_type
    }


@pytest.mark.parametrize("service", REFLECTION_SERVICES)
async def test_what_cannot_be_found_is_an_error_response_and_the_stream_goes_on(served: Running, service: str) -> None:
    requests = [
        symbol("wadm.market.v1.Nope"),
        symbol("wadm.market.v1.Timeframe.TIMEFRAME_2M"),
        symbol("x" * 100_000),
        rpb.ServerReflectionRequest(file_by_filename="wadm/market/v1/nope.proto"),
        rpb.ServerReflectionRequest(
            file_containing_extension=rpb.ExtensionRequest(
                containing_type="google.protobuf.MethodOptions", extension_number=9
            )
        ),
        rpb.ServerReflectionRequest(all_extension_numbers_of_type="wadm.market.v1.Nope"),
        rpb.ServerReflectionRequest(),  # asks nothing
        symbol("wadm.market.v1.Candle"),
    ]

    responses = await reflect(served.target, service, requests)

    codes = [r.error_response.error_code for r in responses[:-1]]
    assert codes == [grpc.StatusCode.NOT_FOUND.value[0]] * 6 + [grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    assert responses[0].error_response.error_message == "symbol not found: wadm.market.v1.Nope"
    assert len(responses[2].error_response.error_message) < 300
    assert [r.original_request for r in responses] == requests
    assert files_of(responses[-1])[0].name == MARKET_FILE


async def test_extensions_resolve(served: Running) -> None:
    http_rule = rpb.ExtensionRequest(containing_type="google.protobuf.MethodOptions", extension_number=72295728)
    by_number, numbers = await reflect(
        served.target,
        REFLECTION_SERVICES[0],
        [
            rpb.ServerReflectionRequest(file_containing_extension=http_rule),
            rpb.ServerReflectionRequest(all_extension_numbers_of_type="google.protobuf.MethodOptions"),
        ],
    )

    assert files_of(by_number)[0].name == "google/api/annotations.proto"
    assert 72295728 in numbers.all_extension_numbers_response.extension_number


async def test_a_stream_sends_each_dependency_once_and_the_asked_file_always(served: Running) -> None:
    first, again, sibling = await reflect(
        served.target,
        REFLECTION_SERVICES[0],
        [symbol("wadm.market.v1.Candle"), symbol("wadm.market.v1.GetCandlesRequest"), symbol("wadm.market.v1.Side")],
    )

    first_files = [f.name for f in files_of(first)]
    assert first_files[0] == MARKET_FILE
    assert {"google/protobuf/timestamp.proto", "wadm/market/v1/trade.proto", "google/api/http.proto"} <= set(
        first_files
    )
    assert len(first_files) == len(set(first_files))
    assert [f.name for f in files_of(again)] == [MARKET_FILE]
    assert [f.name for f in files_of(sibling)] == ["wadm/market/v1/trade.proto"]  # its imports went out already


@pytest.fixture(scope="module")
def buf() -> Path:
    """The Makefile's pinned buf, installed through npm when missing."""
    if not BUF.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: no buf curl")
        subprocess.run(["make", str(BUF.relative_to(ROOT))], cwd=ROOT, check=True, timeout=600, capture_output=True)
    return BUF


async def test_buf_curl_calls_get_candles_through_reflection_v1(served: Running, buf: Path) -> None:
    minute = AFTER_DATA_US - 5 * MINUTE_US
    trades = [
        make_trade(
            exchange="binance", symbol="BTCUSDT", trade_id=i, price=p, quantity="0.5", side="buy", time=minute + i
        )
        for i, p in enumerate(("61800.30", "61850.00", "61790.10"), start=1)
    ]
    await served.client.publish_trades([trades])
    request = {"symbol": "BTCUSDT", "timeframe": "TIMEFRAME_1M", "limit": 1}
    process = await asyncio.create_subprocess_exec(
        str(buf),
        "curl",
        "--protocol",
        "grpc",
        "--reflect-protocol",
        "grpc-v1",  # no fallback to v1alpha
        "--data",
        json.dumps(request),
        f"http://{served.target}/wadm.market.v1.MarketDataService/GetCandles",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0, err.decode()
    (candle,) = json.loads(out)["candles"]
    assert (candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"]) == (
        "61800.30",
        "61850.00",
        "61790.10",
        "61790.10",
        "1.5",
    )


class BrokenPool:
    """A pool whose symbol lookup fails unexpectedly (as a descriptor it cannot render would)."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, name: str) -> Any:
        if name == "wadm.market.v1.Broken":
            raise RuntimeError("cannot render")
        return self._pool.FindFileContainingSymbol(name)


async def test_an_unexpected_failure_answers_internal_and_the_stream_goes_on() -> None:
    servicer = ReflectionServicer(BrokenPool(descriptor_pool.Default()), ["wadm.market.v1.MarketDataService"])  # type: ignore[arg-type]

    async def requests() -> AsyncIterator[rpb.ServerReflectionRequest]:
        yield symbol("wadm.market.v1.Broken")
        yield symbol("wadm.market.v1.Candle")

    broken, fine = [r async for r in servicer.ServerReflectionInfo(requests(), None)]  # type: ignore[arg-type]

    assert broken.error_response.error_code == grpc.StatusCode.INTERNAL.value[0]
    assert broken.original_request.file_containing_symbol == "wadm.market.v1.Broken"
    assert files_of(fine)[0].name == MARKET_FILE
