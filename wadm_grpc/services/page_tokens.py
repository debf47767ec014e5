"""Opaque, signed page tokens: a cursor plus a fingerprint of the query it belongs to.

Format: base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload)[:16]). A token that fails the
signature (edited, truncated, from a server with another key) or that was issued for a different query
is rejected with INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from wadm_grpc.domain.errors import InvalidArgumentError

_SIGNATURE_BYTES = 16


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Issues and checks page tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def issue(self, query: Any, position: Any) -> str:
        """A token for resuming `query` (any JSON value identifying it) after `position`."""
        payload = json.dumps({"q": query, "p": position}, separators=(",", ":"), sort_keys=True).encode()
        return f"{_encode(payload)}.{_encode(self._sign(payload))}"

    def open(self, token: str, query: Any, *, field: str = "page_token") -> Any:
        """The position stored in `token`; InvalidArgumentError if it is not ours or not for `query`."""
        try:
            body, signature = token.split(".")
            payload = _decode(body)
            valid = hmac.compare_digest(_decode(signature), self._sign(payload))
        except (ValueError, binascii.Error):
            valid = False
        if not valid:
            raise InvalidArgumentError.of(field, "is not a page token issued by this service (edited or truncated?)")
        content = json.loads(payload)
        if content.get("q") != json.loads(json.dumps(query)):
            raise InvalidArgumentError.of(
                field, "was issued for a different query; keep every other field as in the first request"
            )
        return content.get("p")
