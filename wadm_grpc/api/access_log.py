"""The access log: one line per call on each face (logger `wadm_grpc.access`)."""

from __future__ import annotations

import logging

from wadm_grpc.access import identity

log = logging.getLogger("wadm_grpc.access")


def current_key_name() -> str:
    """The name of the API key the current call was made with, "-" when none (set by the access
    interceptor, wadm_grpc/access/identity.py)."""
    return identity.current_key_name.get() or "-"


def log_forwarded(*, method: str, code: str, ms: float) -> None:
    """The gRPC side of a call the HTTP gateway forwarded (DEBUG: the gateway's line is the access line)."""
    log.debug("forwarded call", extra={"face": "http", "method": method, "code": code, "ms": round(ms, 3)})


def log_call(*, face: str, method: str, code: str, ms: float, bytes_sent: int, **more: object) -> None:
    """One access-log line: method, face (grpc/http), status, duration, key name, bytes sent."""
    log.info(
        "call",
        extra={
            "face": face,
            "method": method,
            "code": code,
            "ms": round(ms, 3),
            "key": current_key_name(),
            "bytes": bytes_sent,
            **more,
        },
    )
