"""Every error is a google.rpc.Status as JSON, with the HTTP status of grpc-gateway's table."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.gateway.conftest import Gatewayed
from wadm_grpc.api.http.errors import HTTP_STATUS_OF_CODE, error_response, status_of_rpc_error
from wadm_grpc.api.http.server import start_http

GRPC_GATEWAY_TABLE = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500,
}  # fmt: skip


def test_the_status_table_is_grpc_gateways() -> None:
    assert {code_pb2.Code.Name(code): status for code, status in HTTP_STATUS_OF_CODE.items()} == GRPC_GATEWAY_TABLE


def rpc_error(code: grpc.StatusCode, status: status_pb2.Status | None) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if status is not None:
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details="said the server")


@pytest.mark.parametrize(
    ("code", "retry_seconds", "retry_after"), [(code_pb2.RESOURCE_EXHAUSTED, 1.2, "2"), (code_pb2.UNAVAILABLE, 3, "3")]
)
def test_retry_info_becomes_retry_after_rounded_up(code: int, retry_seconds: float, retry_after: str) -> None:
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(retry_seconds), nanos=int(retry_seconds % 1 * 1e9))
    )
    status = status_pb2.Status(code=code, message="later")
    status.details.add().Pack(info)
    grpc_code = {code_pb2.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED}.get(code, grpc.StatusCode.UNAVAILABLE)

    response = error_response(status_of_rpc_error(rpc_error(grpc_code, status)))

    assert response.status_code == HTTP_STATUS_OF_CODE[code]
    assert response.headers["retry-after"] == retry_after
    assert response.headers["content-type"] == "application/json"


def test_a_status_without_details_keeps_code_and_message() -> None:
    status = status_of_rpc_error(rpc_error(grpc.StatusCode.PERMISSION_DENIED, None))

    assert (status.code, status.message) == (code_pb2.PERMISSION_DENIED, "said the server")
    assert error_response(status).status_code == 403


async def test_bad_queries_are_400_with_every_field_named(gateway: Gatewayed) -> None:
    response = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1h?limit=abc&colour=red&start_time=noon")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code_pb2.INVALID_ARGUMENT
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert {v["field"] for v in body["details"][0]["field_violations"]} == {"limit", "colour", "start_time"}


async def test_the_servers_own_validation_comes_through_unchanged(gateway: Gatewayed) -> None:
    response = await gateway.client.get("/api/v1/market/candles/BTCUSDT/1m?limit=5000")

    assert response.status_code == 400
    assert response.json()["details"][0]["field_violations"][0]["field"] == "limit"


async def test_not_found_unknown_path_and_wrong_method(gateway: Gatewayed) -> None:
    missing = await gateway.client.get("/api/v1/market/stats/DOGEUSDT")
    nowhere = await gateway.client.get("/api/v2/nothing")
    wrong = await gateway.client.delete("/api/v1/market/candles/BTCUSDT/1m")

    assert (missing.status_code, missing.json()["code"]) == (404, code_pb2.NOT_FOUND)
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, code_pb2.NOT_FOUND)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert wrong.json()["code"] == code_pb2.UNIMPLEMENTED
    for response in (missing, nowhere, wrong):
        assert response.headers["content-type"] == "application/json"


async def test_a_wrong_method_on_the_documentation_routes_is_status_json_with_allow(gateway: Gatewayed) -> None:
    wrong = await gateway.client.post("/api/openapi.json")

    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]
    assert wrong.json()["code"] == code_pb2.UNIMPLEMENTED


async def test_the_client_deadline_is_the_calls_deadline(gateway: Gatewayed) -> None:
    expired = await gateway.client.get("/api/v1/market/symbols", headers={"Grpc-Timeout": "1n"})
    malformed = await gateway.client.get("/api/v1/market/symbols", headers={"Grpc-Timeout": "soon"})
    roomy = await gateway.client.get("/api/v1/market/symbols", headers={"Grpc-Timeout": "30S"})

    assert (expired.status_code, expired.json()["code"]) == (504, code_pb2.DEADLINE_EXCEEDED)
    assert (malformed.status_code, malformed.json()["details"][0]["field_violations"][0]["field"]) == (
        400,
        "Grpc-Timeout",
    )
    assert roomy.status_code == 200


async def test_a_gateway_whose_server_is_down_answers_503_json() -> None:
    import httpx

    http = await start_http(target="127.0.0.1:1", host="127.0.0.1", port=0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30) as client:
            down = await client.get("/api/v1/market/symbols", headers={"Grpc-Timeout": "5S"})
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
    finally:
        await http.stop(0)

    assert (down.status_code, down.json()["code"]) == (503, code_pb2.UNAVAILABLE)
    assert (ready.status_code, ready.json()["code"]) == (503, code_pb2.UNAVAILABLE)
    assert alive.status_code == 200
