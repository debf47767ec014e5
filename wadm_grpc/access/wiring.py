"""The access policy and the store gate as settings describe them (called by bootstrap, the composition root)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from wadm_grpc.access.events import NoPolicyEvents, PolicyEvents
from wadm_grpc.access.keys import KeyRing
from wadm_grpc.access.limiter import FailoverRateLimiter, RateLimiter, memory_rate_limiter, redis_rate_limiter
from wadm_grpc.access.policy import AccessPolicy
from wadm_grpc.config import Settings
from wadm_grpc.redis_connection import redis_client

log = logging.getLogger("wadm_grpc.access")


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_access(
    settings: Settings, events: PolicyEvents | None = None
) -> tuple[AccessPolicy, list[Callable[[], Awaitable[None]]]]:
    """The policy (keys, limits, caps), and what to close at shutdown."""
    keys = KeyRing(Path(settings.api_keys_file)) if settings.api_keys_file else None
    closers: list[Callable[[], Awaitable[None]]] = []
    limiter: RateLimiter | None = None
    if settings.effective_rate_limit_per_minute > 0 or keys is not None:
        if settings.redis_url:
            client = redis_client(settings.redis_url)
            limiter = FailoverRateLimiter(
                redis_rate_limiter(client), memory_rate_limiter(), probe_seconds=settings.redis_probe_seconds
            )
            closers.append(client.aclose)
        else:
            limiter = memory_rate_limiter()
    if not settings.auth_required and not is_loopback(settings.host):
        log.warning(
            "AUTH IS OFF ON A NETWORK ADDRESS: anyone who reaches %s can read, stream, ingest and administer; "
            "set WADM_API_KEYS_FILE (python -m wadm_grpc keys add NAME --scopes read,stream)",
            settings.host,
        )
    policy = AccessPolicy(
        keys=keys,
        required=settings.auth_required,
        limiter=limiter,
        default_limit_per_minute=settings.effective_rate_limit_per_minute,
        max_streams_per_key=settings.effective_max_streams_per_key,
        open_services=settings.auth_open_services,
        events=events or NoPolicyEvents(),
    )
    return policy, closers
