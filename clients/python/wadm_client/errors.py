"""Typed exceptions for failed calls, carrying the google.rpc status details the server sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call said, beyond its code and message."""

    code: grpc.StatusCode
    message: str
    field_violations: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    request_id: str | None = None
    reason: str | None = None  # google.rpc.ErrorInfo
    metadata: dict[str, str] = field(default_factory=dict)  # google.rpc.ErrorInfo


def _status(error: grpc.RpcError) -> status_pb2.Status | None:
    trailing: Any = getattr(error, "trailing_metadata", lambda: None)()
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Field violations (google.rpc.BadRequest), RetryInfo, RequestInfo and ErrorInfo of a failed call."""
    violations: dict[str, str] = {}
    retry: float | None = None
    request_id: str | None = None
    reason: str | None = None
    metadata: dict[str, str] = {}
    status = _status(error)
    for detail in status.details if status is not None else ():
        if detail.TypeName() == error_details_pb2.BadRequest.DESCRIPTOR.full_name:
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.update({v.field: v.description for v in bad.field_violations})
        elif detail.TypeName() == error_details_pb2.RetryInfo.DESCRIPTOR.full_name:
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry = info.retry_delay.ToNanoseconds() / 1e9
        elif detail.TypeName() == error_details_pb2.RequestInfo.DESCRIPTOR.full_name:
            request = error_details_pb2.RequestInfo()
            detail.Unpack(request)
            request_id = request.request_id
        elif detail.TypeName() == error_details_pb2.ErrorInfo.DESCRIPTOR.full_name:
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason, metadata = error_info.reason, dict(error_info.metadata)
    code: grpc.StatusCode = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    message: str = (error.details() if callable(getattr(error, "details", None)) else None) or ""
    return ErrorDetails(code, message, violations, retry, request_id, reason, metadata)


class WadmError(Exception):
    """A call failed: `code`, `message` and the status details (`field_violations`, `retry_after_seconds`, ...)."""

    def __init__(self, details: ErrorDetails) -> None:
        super().__init__(details.message)
        self.details = details

    @property
    def code(self) -> grpc.StatusCode:
        return self.details.code

    @property
    def message(self) -> str:
        return self.details.message

    @property
    def field_violations(self) -> dict[str, str]:
        return self.details.field_violations

    @property
    def retry_after_seconds(self) -> float | None:
        return self.details.retry_after_seconds

    @property
    def request_id(self) -> str | None:
        return self.details.request_id

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.field_violations and not all(f"{name}:" in self.message for name in self.field_violations):
            text += " (" + "; ".join(f"{name}: {why}" for name, why in self.field_violations.items()) + ")"
        if self.retry_after_seconds is not None:
            text += f" (retry in {self.retry_after_seconds:g} s)"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text


class InvalidArgumentError(WadmError):
    """INVALID_ARGUMENT: `field_violations` names every field that is wrong."""


class ResumeExpiredError(InvalidArgumentError):
    """OUT_OF_RANGE: a stream's resume token is past the server's retention. `available_from` (ErrorInfo metadata,
    RFC 3339) is the oldest point still served: backfill the gap with `list_trades`, then stream again."""

    @property
    def available_from(self) -> str | None:
        return self.details.metadata.get("available_from")


class NotFoundError(WadmError):
    """NOT_FOUND: e.g. no trades of the symbol in the window."""


class ResourceExhaustedError(WadmError):
    """RESOURCE_EXHAUSTED: too fast (rate limit, a stream that does not keep up); see `retry_after_seconds`."""


class UnavailableError(WadmError):
    """UNAVAILABLE: the server is unreachable or shutting down; retry (see `retry_after_seconds`)."""


class DeadlineExceededError(WadmError):
    """DEADLINE_EXCEEDED: the call took longer than its deadline."""


class UnauthenticatedError(WadmError):
    """UNAUTHENTICATED: no API key, or a wrong one."""


class PermissionDeniedError(WadmError):
    """PERMISSION_DENIED: the key may not do this."""


class InternalError(WadmError):
    """INTERNAL (or UNKNOWN): a server fault; quote `request_id`."""


ERRORS: dict[grpc.StatusCode, type[WadmError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: ResumeExpiredError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
}


def from_rpc_error(error: grpc.RpcError) -> WadmError:
    """The typed exception for a failed call."""
    details = error_details(error)
    return ERRORS.get(details.code, WadmError)(details)
