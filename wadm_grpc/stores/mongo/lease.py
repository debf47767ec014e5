"""The rollup lease: exactly one process (of every worker of every replica) recomputes rollups at a time.

The lease is one state document `{_id: "<trades>:rollup_lease", owner, expires, generation}`. A process takes
it with one atomic `find_one_and_update(upsert=True)` whose filter only matches a free lease (absent or
expired): when another process holds it, the filter matches nothing and the upsert's insert of the same `_id`
fails with E11000, so a lost race is visible, never silent. Taking it raises `generation`; the holder renews
it (filter: its owner and generation, not expired) every refresh pass, well within `lease_seconds`.

Fencing: every rollup and market document the leader writes carries its generation, and replacements only
match documents of an older or equal generation. A stale leader (paused past its expiry, then resumed)
writes with its old generation: the filter matches nothing, the upsert hits the unique index (E11000), and
the write is refused (Commands.replace counts it), so it cannot overwrite what a newer leader wrote.

Expiry is compared on the processes' clocks (UTC datetimes): their skew must stay well below `lease_seconds`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pymongo.errors import DuplicateKeyError

from wadm_grpc.stores.mongo.commands import Commands
from wadm_grpc.stores.mongo.documents import Document

log = logging.getLogger("wadm_grpc.stores.mongo.lease")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """Who holds the lease, for people reading the state document: host, process, and a unique suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(RuntimeError):
    """This process no longer holds the rollup lease (another took it over)."""


class RollupLease:
    """This process's view of the rollup lease."""

    def __init__(self, commands: Commands, *, lease_seconds: float, owner: str, clock: Clock = utc_now) -> None:
        self._commands = commands
        self._ttl = timedelta(seconds=lease_seconds)
        self.owner = owner
        self._clock = clock
        self.generation: int | None = None
        self._expires: datetime | None = None
        self._tried: datetime | None = None
        self.key: Document = {"_id": f"{commands.names.trades}:rollup_lease"}

    def held(self) -> int | None:
        """The generation held, if the lease has not expired on this process's clock."""
        if self.generation is None or self._expires is None or self._clock() >= self._expires:
            return None
        return self.generation

    async def current(self) -> int | None:
        """The generation held, renewing the lease once half of it has run out; without the lease, trying to
        take it at most every sixth of its length (so a process that ingests keeps, or picks up, the lease
        even when no periodic refresh runs)."""
        now = self._clock()
        if self.generation is not None and self._expires is not None and self._expires - now > self._ttl / 2:
            return self.generation
        if self.generation is None and self._tried is not None and now - self._tried < self._ttl / 6:
            return None
        return await self.hold()

    async def hold(self) -> int | None:
        """Renew the lease if held, else take it if free; the generation held, or None (another holds it)."""
        now = self._clock()
        expires = now + self._ttl
        self._tried = now
        if self.generation is not None:
            mine = {**self.key, "owner": self.owner, "generation": self.generation, "expires": {"$gt": now}}
            if await self._commands.find_one_and_update("state", mine, {"$set": {"expires": expires}}) is not None:
                self._expires = expires
                return self.generation
            log.warning("the rollup lease (generation %s) expired or was taken over", self.generation)
            self.generation = None
        free = {**self.key, "expires": {"$lte": now}}
        update = {"$set": {"owner": self.owner, "expires": expires}, "$inc": {"generation": 1}}
        try:
            taken = await self._commands.find_one_and_update("state", free, update, upsert=True)
        except DuplicateKeyError:  # the lease exists and is not free: another process holds it
            return None
        assert taken is not None, "an upsert returns its document"
        self.generation, self._expires = int(taken["generation"]), expires
        log.info("this process now recomputes rollups (lease generation %s, owner %s)", self.generation, self.owner)
        return self.generation

    async def release(self) -> None:
        """Give the lease up (at close), so another process takes over without waiting for the expiry."""
        if self.generation is None:
            return
        mine = {**self.key, "owner": self.owner, "generation": self.generation}
        await self._commands.find_one_and_update("state", mine, {"$set": {"expires": self._clock()}})
        self.generation = self._expires = None
