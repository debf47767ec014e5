"""Who the running call is: the authenticated key's name, for other interceptors and log lines."""

from __future__ import annotations

from contextvars import ContextVar

# The name (never the key) of the API key the running call authenticated with; None when anonymous.
# Set by the access interceptor before the handler runs; each gRPC call is a task with its own context.
current_key_name: ContextVar[str | None] = ContextVar("current_key_name", default=None)
