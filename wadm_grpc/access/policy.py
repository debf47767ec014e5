"""AccessPolicy: who a call is (key or client IP), whether it may call the method, what its budget says."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from wadm_grpc.access.events import NoPolicyEvents, PolicyEvents
from wadm_grpc.access.keys import KeyRing
from wadm_grpc.access.limiter import Decision, RateLimiter, StreamCounter
from wadm_grpc.access.methods import DEFAULT_OPEN_SERVICES, MethodPolicy, method_policies
from wadm_grpc.domain.errors import PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError

log = logging.getLogger("wadm_grpc.access")

STREAM_CAP_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: `identity` is what limits count against ("key:NAME" or "ip:ADDRESS")."""

    key_name: str | None
    identity: str
    limit_per_minute: int


@dataclass
class AccessPolicy:
    """Keys and scopes, weighted rate limits and stream caps: the same for gRPC and HTTP (the gateway
    forwards over gRPC). `keys` None with `required` False: no keys at all (anonymous, limited per IP)."""

    keys: KeyRing | None = None
    required: bool = False
    limiter: RateLimiter | None = None
    default_limit_per_minute: int = 0  # 0: no rate limit unless a key has its own
    max_streams_per_key: int = 0  # 0: no cap
    open_services: Sequence[str] = DEFAULT_OPEN_SERVICES
    events: PolicyEvents = field(default_factory=NoPolicyEvents)
    methods: dict[str, MethodPolicy] = field(default_factory=method_policies)
    streams: StreamCounter = field(default_factory=StreamCounter)

    def is_open(self, method: str) -> bool:
        """Whether `method` ("/pkg.Service/Method") is served to anyone without checks (health, reflection)."""
        service = method[1:].rsplit("/", 1)[0]
        return service in self.open_services

    def caller(self, method: str, key: str | None, client_ip: str) -> Caller:
        """Who calls `method` with `key`; UnauthenticatedError / PermissionDeniedError when they may not."""
        entry = self.keys.lookup(key) if self.keys is not None and key else None
        if entry is None:
            if self.required:
                if not key:
                    raise UnauthenticatedError(
                        "this server needs an API key: send it as x-api-key metadata (X-API-Key header) "
                        "or authorization: Bearer KEY"
                    )
                raise UnauthenticatedError("unknown or revoked API key")
            return Caller(None, f"ip:{client_ip}", self.default_limit_per_minute)
        needed = self.scope_of(method)
        if needed not in entry.scopes:
            log.info("scope refused", extra={"key_name": entry.name, "rpc": method, "scope": needed})
            raise PermissionDeniedError(
                f"key {entry.name!r} lacks scope {needed!r}, which {method.rsplit('/', 1)[-1]} needs "
                f"(it has {', '.join(sorted(entry.scopes))})"
            )
        limit = entry.limit_per_minute if entry.limit_per_minute is not None else self.default_limit_per_minute
        return Caller(entry.name, f"key:{entry.name}", limit)

    def scope_of(self, method: str) -> str:
        """The scope `method` needs (an RPC outside the table, should one appear, needs admin)."""
        policy = self.methods.get(method)
        return policy.scope if policy is not None else "admin"

    def is_stream(self, method: str) -> bool:
        """Whether `method` is a long-lived stream (capped per key)."""
        policy = self.methods.get(method)
        return policy is not None and policy.streaming

    async def charge(self, caller: Caller, method: str, weight: int) -> Decision | None:
        """Count the call against the caller's budget; ResourceExhaustedError when over it (None: no limit)."""
        if self.limiter is None or caller.limit_per_minute <= 0:
            return None
        decision = await self.limiter.hit(caller.identity, weight, caller.limit_per_minute)
        if not decision.allowed:
            name = method.rsplit("/", 1)[-1]
            self.events.rate_limited(caller.key_name or caller.identity, name)
            log.info("rate limited", extra={"key_name": caller.key_name, "rpc": name, "weight": weight})
            raise RateLimitedError(
                f"rate limit: {caller.limit_per_minute} weight per minute; {name} weighs {weight}; "
                f"the window resets in {decision.reset_seconds:.0f} s",
                retry_after_seconds=max(decision.reset_seconds, 1.0),
                quota_subject=caller.identity,
                quota_description=f"{caller.limit_per_minute} request weight per minute",
                decision=decision,
            )
        return decision

    def open_stream(self, caller: Caller, method: str) -> bool:
        """Count a stream for the caller (True), or ResourceExhaustedError at the cap; False: not counted."""
        if not self.is_stream(method):
            return False
        if not self.streams.try_open(caller.identity, self.max_streams_per_key):
            name = method.rsplit("/", 1)[-1]
            self.events.stream_capped(caller.key_name or caller.identity, name)
            raise ResourceExhaustedError(
                f"{self.max_streams_per_key} streams are open for this caller (WADM_MAX_STREAMS_PER_KEY); "
                "close one first",
                retry_after_seconds=STREAM_CAP_RETRY_SECONDS,
                quota_subject=caller.identity,
                quota_description=f"{self.max_streams_per_key} concurrent streams",
            )
        return True


class RateLimitedError(ResourceExhaustedError):
    """Over the budget; `decision` carries the X-RateLimit-* values to send with the refusal."""

    def __init__(self, message: str, *, decision: Decision, **kwargs: object) -> None:
        self.decision = decision
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
