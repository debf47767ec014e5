"""When and how long a live stream waits before it reconnects: exponential backoff with full jitter."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from wadm_client.errors import WadmError, from_rpc_error

# Transport trouble and server restarts (UNAVAILABLE), and a server that cut a slow reader off (RESOURCE_EXHAUSTED,
# with RetryInfo): worth reconnecting. Anything else (a bad request, a missing key) would fail again the same way.
log = logging.getLogger("wadm_client")
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
OnReconnect = Callable[[WadmError, float], None]  # (why, seconds until the next attempt)


@dataclass
class Backoff:
    """Delays of successive reconnects: `initial_seconds` doubling up to `max_seconds`, each drawn in [0, delay]
    (full jitter, so many clients cut off at once do not come back at once), never below the server's RetryInfo."""

    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    max_attempts: int | None = None  # consecutive failed attempts before giving up (None: never)
    attempts: int = 0
    random: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def reset(self) -> None:
        """The stream delivered something: start again from the initial delay."""
        self.attempts = 0

    def next_delay(self, error: WadmError) -> float | None:
        """Seconds to wait before reconnecting after `error`; None to give up and raise it."""
        if error.code not in RECONNECT_CODES:
            return None
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            return None
        ceiling = min(self.max_seconds, self.initial_seconds * 2**self.attempts)
        self.attempts += 1
        delay = self.random(0.0, ceiling)
        return max(delay, error.retry_after_seconds or 0.0)


def delay_before_reconnect(
    error: grpc.RpcError, backoff: Backoff, *, reconnect: bool, on_reconnect: OnReconnect | None
) -> float:
    """Seconds to wait before reconnecting after `error`, told to `on_reconnect` and logged; raises the typed error
    instead when it is not worth reconnecting (or `reconnect` is off, or the attempts are spent). OUT_OF_RANGE (a
    resume token past the server's retention) is raised as ResumeExpiredError: reconnecting would not close the gap."""
    failure = from_rpc_error(error)
    delay = backoff.next_delay(failure) if reconnect else None
    if delay is None:
        raise failure from error
    log.warning("stream ended (%s); reconnecting in %.2f s, resuming where it stopped", failure, delay)
    if on_reconnect is not None:
        on_reconnect(failure, delay)
    return delay


class Counts(Protocol):
    """What counts reconnects (the client: `client.reconnects`)."""

    reconnects: int


def _token(event: Any, previous: str | None) -> str | None:
    return str(event.resume_token) or previous


async def resuming_async(
    open_call: Callable[[str | None], Any],
    counts: Counts,
    *,
    resume_token: str | None,
    reconnect: bool,
    backoff: Backoff | None,
    on_reconnect: OnReconnect | None,
) -> AsyncIterator[Any]:
    """The messages of a live stream opened by `open_call(resume_token)` (a grpc.aio server-streaming call whose
    messages carry `resume_token`), reopened with the last message's token after UNAVAILABLE or
    RESOURCE_EXHAUSTED (see `delay_before_reconnect`): one endless iterator, shared by every resumable stream."""
    backoff = backoff or Backoff()
    while True:
        call = open_call(resume_token)
        try:
            async for event in call:
                backoff.reset()
                yield event
                resume_token = _token(event, resume_token)  # after the caller handed the message on
            return
        except grpc.RpcError as error:
            await asyncio.sleep(delay_before_reconnect(error, backoff, reconnect=reconnect, on_reconnect=on_reconnect))
            counts.reconnects += 1
        finally:
            call.cancel()


def resuming(
    open_call: Callable[[str | None], Any],
    counts: Counts,
    *,
    resume_token: str | None,
    reconnect: bool,
    backoff: Backoff | None,
    on_reconnect: OnReconnect | None,
) -> Iterator[Any]:
    """`resuming_async` for the synchronous client (a grpc server-streaming call)."""
    backoff = backoff or Backoff()
    while True:
        call = open_call(resume_token)
        try:
            for event in call:
                backoff.reset()
                yield event
                resume_token = _token(event, resume_token)
            return
        except grpc.RpcError as error:
            time.sleep(delay_before_reconnect(error, backoff, reconnect=reconnect, on_reconnect=on_reconnect))
            counts.reconnects += 1
        finally:
            call.cancel()
