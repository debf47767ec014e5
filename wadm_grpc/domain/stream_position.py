"""Where a trade stream stands: what a resume token encodes, and the chunks the bus positions trades by.

Trades travel the bus in chunks (at most ENTRY_TRADES each), numbered per origin (a process's bus) by `seq`.
Through Redis a chunk also gets a stream id; chunks reach a subscriber of another process in stream-id order,
and a process's own chunks reach its subscribers when published (before they have an id). So "everything up
to here" for one subscriber is: every chunk with a stream id <= `stream_id`, plus, for each origin in `seen`,
its chunks with seq <= the given one (those delivered before their stream id was known, or before a resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wadm_grpc.domain.trade import Trade

StreamId = tuple[int, int]
ZERO_ID: StreamId = (0, 0)
# Origins a position remembers beside the stream id: the serving process and a few it resumed from.
MAX_SEEN_ORIGINS = 4


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A point of the bus's history (see the module docstring). `epoch` names the history itself: a Redis
    stream's incarnation, or one process's in-memory log."""

    epoch: str
    stream_id: StreamId
    seen: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Trades published together: `seq`-th chunk of `origin`, `stream_id` once Redis gave it one."""

    origin: str
    seq: int
    stream_id: StreamId | None
    trades: Sequence[Trade]


class Cursor:
    """One subscriber's position, advanced chunk by chunk; `accept` tells new chunks from ones already had."""

    __slots__ = ("epoch", "seen", "stream_id", "tracked")

    def __init__(self, position: StreamPosition, own_origin: str) -> None:
        self.epoch = position.epoch
        self.stream_id = position.stream_id
        self.seen = dict(position.seen)
        carried = [origin for origin, _ in position.seen if origin != own_origin]
        self.tracked = (own_origin, *carried[: MAX_SEEN_ORIGINS - 1])

    def accept(self, chunk: Chunk) -> bool:
        """True (and the chunk counts as had) if the subscriber has not had `chunk` yet."""
        if chunk.stream_id is not None and chunk.stream_id <= self.stream_id:
            return False
        if chunk.seq <= self.seen.get(chunk.origin, 0):
            return False
        self.seen[chunk.origin] = chunk.seq
        if chunk.stream_id is not None:
            self.stream_id = chunk.stream_id
        return True

    def advance(self, stream_id: StreamId, own_seq: int) -> None:
        """Everything up to `stream_id` and own chunks up to `own_seq` were considered (the subscriber is idle)."""
        self.stream_id = max(self.stream_id, stream_id)
        own = self.tracked[0]
        self.seen[own] = max(self.seen.get(own, 0), own_seq)

    def position(self) -> StreamPosition:
        """The position now, as a token would carry it."""
        seen = self.seen
        return StreamPosition(
            self.epoch, self.stream_id, tuple((origin, seen[origin]) for origin in self.tracked if origin in seen)
        )


def parse_stream_id(text: bytes | str) -> StreamId:
    """A Redis stream id ("ms-seq") as a pair; ValueError if it is not one."""
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_stream_id(stream_id: StreamId) -> str:
    """The Redis form of a stream id."""
    return f"{stream_id[0]}-{stream_id[1]}"
