"""Resume tokens of candle streams: "every final up to bucket B was delivered", bound to the stream's key.

Signed like page tokens (services/page_tokens.py) with WADM_PAGE_TOKEN_KEY. The key (symbol, exchanges,
timeframe) is the token's query, so a token of another candle stream, or of a trade stream, is
INVALID_ARGUMENT on `resume_token`. Streams of one key at the same bucket share a token: a bounded cache
signs each (key, bucket) once.
"""

from __future__ import annotations

from collections import OrderedDict

from wadm_grpc.domain.errors import InvalidArgumentError
from wadm_grpc.domain.timeframe import Timeframe
from wadm_grpc.services.page_tokens import PageTokens

FIELD = "resume_token"
_KIND = "candles-stream"
DEFAULT_CACHE_TOKENS = 4096

CandleKey = tuple[str, tuple[str, ...], Timeframe]  # symbol, exchanges (sorted), timeframe


def _query(key: CandleKey) -> list[object]:
    symbol, exchanges, timeframe = key
    return [_KIND, symbol, list(exchanges), timeframe.label]


class CandleResumeTokens:
    """Issues and opens candle resume tokens with one secret key (the same on every server)."""

    def __init__(self, key: bytes, *, cache_tokens: int = DEFAULT_CACHE_TOKENS) -> None:
        self._tokens = PageTokens(key)
        self._cache: OrderedDict[tuple[CandleKey, int], str] = OrderedDict()
        self._limit = cache_tokens

    def issue(self, key: CandleKey, delivered_through_us: int) -> str:
        """The token saying every final of `key` up to the bucket opening at `delivered_through_us` was sent."""
        token = self._cache.get((key, delivered_through_us))
        if token is None:
            token = self._tokens.issue(_query(key), delivered_through_us)
            self._cache[(key, delivered_through_us)] = token
            if len(self._cache) > self._limit:
                self._cache.popitem(last=False)
        return token

    def open(self, token: str, key: CandleKey) -> int:
        """The bucket open time in `token`; InvalidArgumentError on `resume_token` if it is not a candle
        resume token of ours for this very key."""
        try:
            bucket = self._tokens.open(token, _query(key), field=FIELD)
        except InvalidArgumentError:
            raise InvalidArgumentError.of(
                FIELD,
                "is not a resume token of this candle stream (one of another symbol, exchanges or timeframe, "
                "of a trade stream, edited or truncated? servers that share streams must share "
                "WADM_PAGE_TOKEN_KEY)",
            ) from None
        if isinstance(bucket, bool) or not isinstance(bucket, int):
            raise InvalidArgumentError.of(FIELD, "is not a resume token of this candle stream")
        return bucket
