"""Structured logs: one JSON object per line on stderr (or plain text for people)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The id of the call being served (gRPC or HTTP), in every log line written while serving it.
REQUEST_ID: ContextVar[str | None] = ContextVar("wadm_request_id", default=None)
# A client's x-request-id is kept when it looks like an id (a UUID, a trace id...), else replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id_from(sent: str | None) -> str:
    """`sent` when it is a sane id, else a new random one (32 hex digits)."""
    if sent is not None and _SANE_REQUEST_ID.fullmatch(sent):
        return sent
    return os.urandom(16).hex()  # uuid4's randomness without building a UUID (one per call)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records logged while a call is served (unless they name one themselves)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class _TextFormatter(logging.Formatter):
    """The plain line, then the record's extra fields (request_id, an access line's figures) as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        return f"{text} {fields}" if fields else text


# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", ...extra fields, "error"}."""

    # One encoder for every line (json.dumps with `default` builds a new one per call).
    _encoder = json.JSONEncoder(default=str)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry)


def configure(*, level: str, json_lines: bool) -> None:
    """Route the root logger to stderr. Records skip what no line shows: the caller's file and line (a
    walk up the stack per record), thread and process names (the logging HOWTO's "Optimization"): one
    access line per call made them ~5% of a cached answer's cost (issue 12 profile)."""
    logging._srcfile = None  # the documented switch for caller lookups
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_lines else _TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
