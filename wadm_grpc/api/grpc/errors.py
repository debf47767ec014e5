"""The one table from domain errors to gRPC status codes, with google.rpc rich details."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from wadm_grpc.domain.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from wadm_grpc.logs import REQUEST_ID

log = logging.getLogger("wadm_grpc.api")

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]
# google.rpc.ErrorInfo.domain of the reasons this service gives.
ERROR_DOMAIN = "wadm.market.v1"


def _packed(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _retry_info(seconds: float) -> any_pb2.Any:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return _packed(error_details_pb2.RetryInfo(retry_delay=delay))


# Status message and details travel in trailing metadata, which clients cap (a C-core client refuses more
# than 8-16 KB: "received metadata size exceeds hard limit"). Whatever was sent, the message is at most
# 400 bytes (percent-encoded: 1.2 KB) and the details 3 KB (base64, with the message again: 4.6 KB).
MAX_MESSAGE_BYTES = 400
MAX_VIOLATIONS_BYTES = 3000
MAX_LISTED_VIOLATIONS = 20
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 200


def _cut(text: str, limit_bytes: int) -> str:
    """`text`, cut to at most `limit_bytes` of UTF-8 (on a character boundary, marked with "...")."""
    data = text.encode()
    if len(data) <= limit_bytes:
        return text
    return data[: limit_bytes - 3].decode(errors="ignore") + "..."


def _bad_request(error: InvalidArgumentError) -> status_pb2.Status:
    bad = error_details_pb2.BadRequest()
    for violation in error.violations[:MAX_LISTED_VIOLATIONS]:
        listed = error_details_pb2.BadRequest.FieldViolation(
            field=_cut(violation.field, MAX_FIELD_BYTES), description=_cut(violation.description, MAX_DESCRIPTION_BYTES)
        )
        if bad.ByteSize() + listed.ByteSize() > MAX_VIOLATIONS_BYTES:
            break
        bad.field_violations.append(listed)
    message = str(error)
    if len(bad.field_violations) < len(error.violations):
        message = f"{len(error.violations)} problems, the first {len(bad.field_violations)} in the details: {message}"
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=_cut(message, MAX_MESSAGE_BYTES), details=[_packed(bad)]
    )


def status_of(error: Exception, *, rpc: str) -> status_pb2.Status:
    """The google.rpc.Status a caller sees for `error` (unexpected errors become INTERNAL + request id)."""
    if isinstance(error, InvalidArgumentError):
        return _bad_request(error)
    status = _expected_status(error)
    if status is not None:
        status.message = _cut(status.message, MAX_MESSAGE_BYTES)
        return status
    request_id = REQUEST_ID.get() or uuid.uuid4().hex[:16]  # the call's id: in its access line and logs too
    log.error("unexpected error", extra={"rpc": rpc, "request_id": request_id}, exc_info=error)
    info = error_details_pb2.RequestInfo(request_id=request_id)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (request id {request_id})",
        details=[_packed(info)],
    )


def _expected_status(error: Exception) -> status_pb2.Status | None:
    """The status of an error raised on purpose, or None for an unexpected one."""
    if isinstance(error, NotFoundError):
        return status_pb2.Status(code=code_pb2.NOT_FOUND, message=str(error))
    if isinstance(error, FailedPreconditionError):
        return status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=str(error))
    if isinstance(error, UnauthenticatedError):
        return status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=str(error))
    if isinstance(error, PermissionDeniedError):
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=str(error))
    if isinstance(error, ResourceExhaustedError):
        details = [_retry_info(error.retry_after_seconds)]
        if error.quota_subject is not None:
            violation = error_details_pb2.QuotaFailure.Violation(
                subject=error.quota_subject, description=error.quota_description
            )
            details.append(_packed(error_details_pb2.QuotaFailure(violations=[violation])))
        return status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(error), details=details)
    if isinstance(error, OutOfRangeError):
        why = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
        return status_pb2.Status(code=code_pb2.OUT_OF_RANGE, message=str(error), details=[_packed(why)])
    if isinstance(error, UnavailableError):
        details = [_retry_info(error.retry_after_seconds)]
        if error.reason is not None:
            why = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
            details.append(_packed(why))
        return status_pb2.Status(code=code_pb2.UNAVAILABLE, message=str(error), details=details)
    return None


def _kept_metadata(context: Context, status: grpc.Status) -> tuple[tuple[str, str | bytes], ...]:
    """The status's trailing metadata after what the call already set (e.g. X-RateLimit-* values)."""
    earlier = tuple(item for item in context.trailing_metadata() or () if not item[0].startswith("grpc-"))
    return earlier + tuple(status.trailing_metadata)


def end_call(context: Context, error: Exception, *, rpc: str) -> None:
    """Set the status for `error` for when the handler returns, without waiting for it to be sent: a
    stream whose client stopped reading cannot send it before the client reads what is queued."""
    status = rpc_status.to_status(status_of(error, rpc=rpc))
    context.set_code(status.code)
    context.set_details(status.details)
    context.set_trailing_metadata(_kept_metadata(context, status))


async def abort(context: Context, error: Exception, *, rpc: str) -> NoReturn:
    """End the call with the status for `error` (trailing metadata set earlier is kept)."""
    status = rpc_status.to_status(status_of(error, rpc=rpc))
    await context.abort(status.code, status.details, _kept_metadata(context, status))
    raise AssertionError("abort returned")  # pragma: no cover


def unary(
    method: Callable[[S, Req, Context], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    """Map errors of a unary-response handler (unary or client-streaming request)."""

    @functools.wraps(method)
    async def handler(self: S, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort(context, error, rpc=method.__name__)

    return handler
