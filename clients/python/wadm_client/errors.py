"""Reading google.rpc rich error details off a failed call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call said, beyond its code and message."""

    code: grpc.StatusCode
    message: str
    field_violations: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    request_id: str | None = None


def error_details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """Field violations (google.rpc.BadRequest), RetryInfo and RequestInfo of `error`."""
    violations: dict[str, str] = {}
    retry: float | None = None
    request_id: str | None = None
    status = rpc_status.from_call(cast(grpc.Call, error))
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.update({v.field: v.description for v in bad.field_violations})
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry = info.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            request = error_details_pb2.RequestInfo()
            detail.Unpack(request)
            request_id = request.request_id
    return ErrorDetails(error.code(), error.details() or "", violations, retry, request_id)
