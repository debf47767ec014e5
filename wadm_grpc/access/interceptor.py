"""The gRPC server interceptor that applies the AccessPolicy to every call, before any handler runs.

Per call: the deadline and the method go into contextvars (the store gate honours the deadline); then,
for every service but the open ones (health, reflection): the key from `x-api-key` or `authorization:
Bearer`, its scope, its weighted budget (X-RateLimit-* sent as initial and trailing metadata), and the
stream cap. The name of the key, never the key, is in `current_key_name` for whatever runs after.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from wadm_grpc.access.identity import current_key_name
from wadm_grpc.access.limiter import Decision
from wadm_grpc.access.methods import weight
from wadm_grpc.access.policy import AccessPolicy, Caller, RateLimitedError
from wadm_grpc.api.grpc.errors import Context, abort
from wadm_grpc.api.grpc.wrapping import WrappingInterceptor, behavior_attribute
from wadm_grpc.domain.errors import WadmError
from wadm_grpc.services.shedding import call_deadline, call_method

log = logging.getLogger("wadm_grpc.access")

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

RATE_LIMIT_KEYS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def rate_limit_metadata(decision: Decision | None) -> tuple[tuple[str, str], ...]:
    """X-RateLimit-Limit/Remaining/Reset (whole seconds until the window resets), as gRPC metadata."""
    if decision is None:
        return ()
    reset = str(max(0, round(decision.reset_seconds + 0.499)))
    return tuple(zip(RATE_LIMIT_KEYS, (str(decision.limit), str(decision.remaining), reset), strict=True))


def presented_key(metadata: Any) -> str | None:
    """The key from `x-api-key`, else from `authorization: Bearer KEY`."""
    bearer = None
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == "x-api-key" and value.strip():
            return value.strip()
        if key == "authorization" and value[:7].lower() == "bearer ":
            bearer = value[7:].strip() or None
    return bearer


def client_ip(context: Context) -> str:
    """The caller's address. Calls through this process's own HTTP gateway (a unix socket peer, which no
    remote client can be) are credited to the address the gateway saw: the last x-forwarded-for entry,
    which the gateway appends. From any TCP peer x-forwarded-for is ignored: anyone could write one."""
    peer = context.peer() or ""
    if peer.startswith("unix"):
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for" and isinstance(value, str):
                return value.rsplit(",", 1)[-1].strip()[:64] or "local"
        return "local"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer[:64]


class _Context:
    """The call's context, with X-RateLimit-* added to the initial metadata the handler sends."""

    def __init__(self, context: Context, extra: tuple[tuple[str, str], ...]) -> None:
        self._context = context
        self._extra = extra

    async def send_initial_metadata(self, metadata: Any) -> None:
        await self._context.send_initial_metadata(tuple(metadata) + self._extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class AccessInterceptor(WrappingInterceptor):
    """Wraps every handler once with the policy's checks."""

    def __init__(self, policy: AccessPolicy) -> None:
        super().__init__()
        self.policy = policy

    def wrap(self, handler: Handler, method: str) -> Handler:
        attribute = behavior_attribute(handler)
        behavior = getattr(handler, attribute)
        wrapped = self._guard(method, behavior, request_streaming=handler.request_streaming)
        replaced: Handler = handler._replace(**{attribute: wrapped})  # type: ignore[attr-defined]
        return replaced

    async def _admit(self, method: str, request: Any, context: Context) -> tuple[Caller | None, Any, bool]:
        """(the caller, the context to hand the handler, whether a stream was counted); aborts when refused."""
        remaining = context.time_remaining()
        call_deadline.set(None if remaining is None else time.monotonic() + remaining)
        call_method.set(method.rsplit("/", 1)[-1])
        if self.policy.is_open(method):
            return None, context, False
        decision: Decision | None = None
        try:
            metadata = context.invocation_metadata()
            caller = self.policy.caller(method, presented_key(metadata), client_ip(context))
            current_key_name.set(caller.key_name)
            decision = await self.policy.charge(caller, method, weight(method.rsplit("/", 1)[-1], request))
            counted = self.policy.open_stream(caller, method)
        except WadmError as error:
            if isinstance(error, RateLimitedError):
                decision = error.decision
            context.set_trailing_metadata((*(context.trailing_metadata() or ()), *rate_limit_metadata(decision)))
            await abort(context, error, rpc=method.rsplit("/", 1)[-1])
        extra = rate_limit_metadata(decision)
        if not extra:
            return caller, context, counted
        context.set_trailing_metadata((*(context.trailing_metadata() or ()), *extra))
        return caller, _Context(context, extra), counted

    def _done(self, caller: Caller | None, context: Any, counted: bool) -> None:
        if counted and caller is not None:
            self.policy.streams.close(caller.identity)
        if isinstance(context, _Context):  # a handler may have set its own trailing metadata: add ours again
            earlier = tuple(item for item in context.trailing_metadata() or () if item[0] not in RATE_LIMIT_KEYS)
            context.set_trailing_metadata(earlier + context._extra)

    def _guard(self, method: str, behavior: Callable[..., Any], *, request_streaming: bool) -> Callable[..., Any]:
        admit, done = self._admit, self._done
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                caller, ctx, counted = await admit(method, None if request_streaming else request, context)
                try:
                    async for response in behavior(request, ctx):
                        yield response
                finally:
                    done(caller, ctx, counted)

            return streaming

        async def unary(request: Any, context: Context) -> Any:
            caller, ctx, counted = await admit(method, None if request_streaming else request, context)
            try:
                return await behavior(request, ctx)
            finally:
                done(caller, ctx, counted)

        return unary
