"""Resume tokens of trade streams: a StreamPosition, signed like page tokens (services/page_tokens.py).

A stream's subscribers at the same position get the same token, so a bounded cache saves re-signing it
for each of them (the signature is computed once per distinct position).
"""

from __future__ import annotations

from collections import OrderedDict

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.stream_position import StreamPosition
from wadm_grpc.services.page_tokens import PageTokens

FIELD = "resume_token"
_QUERY = "trades-stream"
DEFAULT_CACHE_POSITIONS = 4096


class ResumeTokens:
    """Issues and opens resume tokens with one secret key (WADM_PAGE_TOKEN_KEY: the same on every server)."""

    def __init__(self, key: bytes, *, cache_positions: int = DEFAULT_CACHE_POSITIONS) -> None:
        self._tokens = PageTokens(key)
        self._cache: OrderedDict[StreamPosition, str] = OrderedDict()
        self._limit = cache_positions

    def issue(self, position: StreamPosition) -> str:
        """The token of `position`."""
        token = self._cache.get(position)
        if token is None:
            stream_ms, stream_seq = position.stream_id
            seen = [[origin, seq] for origin, seq in position.seen]
            token = self._tokens.issue(_QUERY, [position.epoch, stream_ms, stream_seq, seen])
            self._cache[position] = token
            if len(self._cache) > self._limit:
                self._cache.popitem(last=False)
        return token

    def open(self, token: str, *, field: str = FIELD) -> StreamPosition:
        """The position in `token`; InvalidArgumentError naming `field` if it is not a resume token of ours."""
        try:
            epoch, stream_ms, stream_seq, seen = self._tokens.open(token, _QUERY, field=field)
            position = StreamPosition(
                str(epoch), (int(stream_ms), int(stream_seq)), tuple((str(o), int(s)) for o, s in seen)
            )
        except InvalidArgumentError:
            raise InvalidArgumentError.of(
                field,
                "is not a resume token issued by this service (edited or truncated? servers that share "
                "streams must share WADM_PAGE_TOKEN_KEY)",
            ) from None
        except (TypeError, ValueError):
            raise InvalidArgumentError.of(field, "is not a resume token issued by this service") from None
        return position
