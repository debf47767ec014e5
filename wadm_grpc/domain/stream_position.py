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
from typing import NamedTuple

from wadm_grpc.domain.trade import Trade

StreamId = tuple[int, int]
ZERO_ID: StreamId = (0, 0)
# Origins a position remembers beside the stream id: the serving process and a few it resumed from.
MAX_SEEN_ORIGINS = 4


class StreamPosition(NamedTuple):
    """A point of the bus's history (see the module docstring). `epoch` names the history itself: a Redis
    stream's incarnation, or one process's in-memory log. (A tuple: built and hashed once per stream message.)"""

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


Mark = tuple[StreamId, int, tuple[tuple[str, int], ...]]  # (stream id, own seq, carried origins' seqs)


class Cursor:
    """One subscriber's position, advanced chunk by chunk; `accept` tells new chunks from ones already had.

    The serving process's own origin is kept apart from `seen` (its chunks are the common case), and the
    other origins a position carries are kept as a ready tuple, rebuilt only when one of them moves.
    """

    __slots__ = ("carried", "carried_origins", "epoch", "own", "own_seq", "seen", "stream_id")

    def __init__(self, position: StreamPosition, own_origin: str) -> None:
        self.epoch = position.epoch
        self.stream_id = position.stream_id
        self.own = own_origin
        seen = dict(position.seen)
        self.own_seq = seen.pop(own_origin, 0)
        self.seen = seen
        self.carried_origins = frozenset(list(seen)[: MAX_SEEN_ORIGINS - 1])
        self.carried = tuple((origin, seq) for origin, seq in seen.items() if origin in self.carried_origins)

    def accept(self, chunk: Chunk) -> bool:
        """True (and the chunk counts as had) if the subscriber has not had `chunk` yet."""
        stream_id = chunk.stream_id
        if stream_id is not None and stream_id <= self.stream_id:
            return False
        origin = chunk.origin
        if origin == self.own:
            if chunk.seq <= self.own_seq:
                return False
            self.own_seq = chunk.seq
        else:
            if chunk.seq <= self.seen.get(origin, 0):
                return False
            self.seen[origin] = chunk.seq
            if origin in self.carried_origins:
                self.carried = tuple((o, self.seen[o]) for o in self.seen if o in self.carried_origins)
        if stream_id is not None:
            self.stream_id = stream_id
        return True

    def advance(self, stream_id: StreamId, own_seq: int) -> None:
        """Everything up to `stream_id` and own chunks up to `own_seq` were considered (the subscriber is idle)."""
        if stream_id > self.stream_id:
            self.stream_id = stream_id
        if own_seq > self.own_seq:
            self.own_seq = own_seq

    def mark(self) -> Mark:
        """The position now, cheaply (`position_of` makes it a StreamPosition)."""
        return self.stream_id, self.own_seq, self.carried

    def position(self) -> StreamPosition:
        """The position now, as a token would carry it."""
        return self.position_of(self.mark())

    def position_of(self, mark: Mark) -> StreamPosition:
        """A `mark` of this cursor as a StreamPosition."""
        stream_id, own_seq, carried = mark
        return StreamPosition(self.epoch, stream_id, ((self.own, own_seq), *carried))


def parse_stream_id(text: bytes | str) -> StreamId:
    """A Redis stream id ("ms-seq") as a pair; ValueError if it is not one."""
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_stream_id(stream_id: StreamId) -> str:
    """The Redis form of a stream id."""
    return f"{stream_id[0]}-{stream_id[1]}"
