"""PolicyEvents: what the access policy rejects, reported to whoever counts it (metrics), no-op by default."""

from __future__ import annotations

from typing import Protocol


class PolicyEvents(Protocol):
    """Receives each rejection; must be cheap and must not raise (it runs on every rejected call)."""

    def rate_limited(self, key_name: str, method: str) -> None:
        """A call of `method` by `key_name` (or "ip:<address>" when anonymous) was over its budget."""
        ...

    def shed(self, method: str) -> None:
        """A call of `method` was refused because the store was saturated."""
        ...

    def stream_capped(self, key_name: str, method: str) -> None:
        """A stream of `method` was refused because `key_name` has its maximum of streams open."""
        ...


class NoPolicyEvents:
    """The default: rejections are not counted anywhere."""

    def rate_limited(self, key_name: str, method: str) -> None:
        """Nothing."""

    def shed(self, method: str) -> None:
        """Nothing."""

    def stream_capped(self, key_name: str, method: str) -> None:
        """Nothing."""
