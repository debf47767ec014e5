"""The one place errors become HTTP answers: google.rpc.Status as JSON, the status by grpc-gateway's table.

Statuses come from the gRPC server (its one error table, api/grpc/errors.py, applies unchanged) or from
the gateway's own checks (a bad query, an unknown path), which reuse that same table.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from starlette.responses import Response

from wadm_grpc.api.grpc.errors import status_of
from wadm_grpc.api.http.render import status_json

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# The server's rate-limit metadata (access/interceptor.py) and the HTTP headers it becomes.
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit": "X-RateLimit-Limit",
    "x-ratelimit-remaining": "X-RateLimit-Remaining",
    "x-ratelimit-reset": "X-RateLimit-Reset",
}
# RFC 9110 11.6.1: a 401 says how to authenticate. Keys go as X-API-Key or as an RFC 6750 bearer token.
WWW_AUTHENTICATE = 'Bearer realm="wadm", charset="UTF-8"'

# grpc-gateway v2 runtime/errors.go HTTPStatusFromCode.
HTTP_STATUS_OF_CODE: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}


def http_status(code: int) -> int:
    """The HTTP status for a google.rpc.Code (500 for codes outside the table)."""
    return HTTP_STATUS_OF_CODE.get(code, 500)


def status_of_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The Status the server sent: its rich details when present, else code and message alone."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a peer's malformed details must not become a 500; the code still holds
                break
    code = error.code()
    return status_pb2.Status(code=code.value[0], message=error.details() or code.name)


def rate_limit_headers(*metadata: object) -> dict[str, str]:
    """X-RateLimit-* headers from the call's initial and/or trailing metadata (empty when unlimited)."""
    headers: dict[str, str] = {}
    for part in metadata:
        for key, value in part or ():  # type: ignore[attr-defined]
            name = RATE_LIMIT_HEADERS.get(key)
            if name is not None and isinstance(value, str):
                headers[name] = value
    return headers


def rpc_error_response(error: grpc.aio.AioRpcError, *, pretty: bool = False) -> Response:
    """The HTTP answer for a failed call: its Status, with the call's X-RateLimit-* headers."""
    headers = rate_limit_headers(error.trailing_metadata())
    return error_response(status_of_rpc_error(error), pretty=pretty, headers=headers)


def status_of_exception(error: Exception, *, where: str) -> status_pb2.Status:
    """A gateway-side error as a Status (domain errors by the gRPC table; anything else INTERNAL, logged)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return status_of_rpc_error(error)
    return status_of(error, rpc=where)


def simple_status(code: int, message: str) -> status_pb2.Status:
    """A Status without details (unknown paths, wrong methods)."""
    return status_pb2.Status(code=code, message=message)


def retry_after_seconds(status: status_pb2.Status) -> int | None:
    """Whole seconds from the Status's google.rpc.RetryInfo, rounded up, or None without one."""
    for detail in status.details:
        descriptor: Any = error_details_pb2.RetryInfo.DESCRIPTOR
        if detail.Is(descriptor):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(0, math.ceil(info.retry_delay.ToNanoseconds() / 1e9))
    return None


def error_response(
    status: status_pb2.Status,
    *,
    pretty: bool = False,
    http_status_code: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The HTTP answer for `status`: its JSON, the mapped HTTP status, Retry-After when the server said,
    WWW-Authenticate with a 401."""
    extra = dict(headers or {})
    retry = retry_after_seconds(status)
    if retry is not None:
        extra["Retry-After"] = str(retry)
    if status.code == code_pb2.UNAUTHENTICATED:
        extra["WWW-Authenticate"] = WWW_AUTHENTICATE
    return Response(
        status_json(status, pretty=pretty),
        status_code=http_status_code or http_status(status.code),
        media_type="application/json",
        headers=extra,
    )
