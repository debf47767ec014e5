"""StreamTrades on the wire: each trade is encoded once, however many streams carry it.

A StreamTradesResponse holding a TradeBatch is, in protobuf's wire format, the concatenation of its
trades' encodings, each framed as field 1 (length-delimited), framed again as field 1. So a stream's
message is built by joining cached byte strings instead of building and serialising messages per
subscriber, which is the per-message Python work that limits grpc.aio streaming (../shared/STACK.md).
The message's resume_token (a field outside the batch) is appended as its own field: protobuf fields
concatenate, so the batch bytes stay shared and only the token's few bytes are per position.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence

from google.protobuf.message import Message

from wadm_grpc.api.grpc import convert
from wadm_grpc.domain.trade import Trade

_FIELD_1_LENGTH_DELIMITED = b"\x0a"
_FIELD_2_LENGTH_DELIMITED = b"\x12"
_STREAM_TOKEN_TAG = b"\x1a"  # StreamTradesResponse.resume_token = 3
_SUBSCRIBE_TOKEN_TAG = b"2"  # SubscribeTradesResponse.resume_token = 6 (0x32)
_CANDLE_TOKEN_TAG = b"*"  # StreamCandlesResponse.resume_token = 5 (0x2a)
# Enough for every trade of a second or two of heavy ingest; older ones are re-encoded if ever needed.
DEFAULT_CACHE_TRADES = 65_536
TOKEN_CACHE_ENTRIES = 4_096


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_1(payload: bytes) -> bytes:
    return _FIELD_1_LENGTH_DELIMITED + _varint(len(payload)) + payload


class TradeBatchEncoder:
    """Serialised StreamTradesResponse(trades=TradeBatch(...)) messages, from a per-trade cache."""

    def __init__(self, *, cache_trades: int = DEFAULT_CACHE_TRADES) -> None:
        self._cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._limit = cache_trades
        self._tokens: dict[tuple[bytes, str], bytes] = {}  # a token field's bytes: one per position

    def _framed(self, trade: Trade) -> bytes:
        key = (trade.exchange, trade.symbol, trade.trade_id)
        framed = self._cache.get(key)
        if framed is None:
            framed = _field_1(convert.trade(trade).SerializeToString())
            self._cache[key] = framed
            if len(self._cache) > self._limit:
                self._cache.popitem(last=False)
        return framed

    def encode(self, trades: Sequence[Trade], resume_token: str = "") -> bytes:
        """The bytes of StreamTradesResponse(trades=TradeBatch(trades=trades), resume_token=resume_token)."""
        return _field_1(b"".join([self._framed(trade) for trade in trades])) + self._token(
            _STREAM_TOKEN_TAG, resume_token
        )

    def encode_subscribed(self, trades: Sequence[Trade], resume_token: str = "") -> bytes:
        """The bytes of SubscribeTradesResponse(trades=TradeBatch(trades=trades), resume_token=...): the
        batch is its field 2, the token field 6."""
        batch = b"".join([self._framed(trade) for trade in trades])
        return _FIELD_2_LENGTH_DELIMITED + _varint(len(batch)) + batch + self._token(_SUBSCRIBE_TOKEN_TAG, resume_token)

    def _token(self, tag: bytes, token: str) -> bytes:
        field = self._tokens.get((tag, token))
        if field is None:
            raw = token.encode()
            field = tag + _varint(len(raw)) + raw if raw else b""
            if len(self._tokens) >= TOKEN_CACHE_ENTRIES:
                self._tokens.clear()
            self._tokens[(tag, token)] = field
        return field


def serialize_response(message: bytes | Message) -> bytes:
    """Response serializer: pre-encoded bytes (stream batches, cached answers) pass through, messages
    serialise."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


@functools.lru_cache(maxsize=TOKEN_CACHE_ENTRIES)
def candle_token_field(token: str) -> bytes:
    """StreamCandlesResponse.resume_token as wire bytes, appended to a candle message rendered once for
    every stream of its key (the token is per stream)."""
    if not token:
        return b""
    data = token.encode()
    return _CANDLE_TOKEN_TAG + _varint(len(data)) + data
