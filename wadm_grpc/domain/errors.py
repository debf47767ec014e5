"""Domain errors: the one exception hierarchy services raise; api/grpc maps it to status codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: its path in the request ("trades[3].price") and what is wrong."""

    field: str
    description: str


class WadmError(Exception):
    """Root of every error this service raises on purpose."""


# What a request sent is echoed in error texts at most this long, so a huge value cannot make a huge error.
QUOTED_CHARACTERS = 40
# An error message names at most this many violations (the rest are counted).
SUMMARISED_VIOLATIONS = 5


def quoted(raw: str) -> str:
    """`raw` as error texts show it: repr()'d, and cut short when long ("'BTCUSD...' (8192 characters)")."""
    if len(raw) <= QUOTED_CHARACTERS:
        return repr(raw)
    return f"{raw[:QUOTED_CHARACTERS]!r}... ({len(raw)} characters)"


def summary(violations: Sequence[FieldViolation]) -> str:
    """One bounded line naming the first violations and counting the others."""
    text = "; ".join(f"{v.field}: {v.description}" for v in violations[:SUMMARISED_VIOLATIONS])
    more = len(violations) - SUMMARISED_VIOLATIONS
    return f"{text}; and {more} more" if more > 0 else text


class InvalidArgumentError(WadmError):
    """The request is malformed; `violations` name each bad field."""

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        self.violations = tuple(violations)
        super().__init__(message or summary(self.violations))

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgumentError:
        """A single-violation error."""
        return cls([FieldViolation(field, description)])


class NotFoundError(WadmError):
    """The request is well formed but names data that does not exist."""


class FailedPreconditionError(WadmError):
    """The request is valid but the system is not in a state to perform it (e.g. a read-only replica)."""


class UnauthenticatedError(WadmError):
    """The call carries no valid credentials (no API key, or an unknown or revoked one)."""


class PermissionDeniedError(WadmError):
    """The caller is known but may not do this (its key lacks the scope)."""


class ResourceExhaustedError(WadmError):
    """A limit was hit; the caller may retry after `retry_after_seconds`. `quota_subject` (e.g. "key:NAME")
    and `quota_description` name the quota that was exhausted (google.rpc.QuotaFailure), when it is one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float,
        quota_subject: str | None = None,
        quota_description: str = "",
    ) -> None:
        self.retry_after_seconds = retry_after_seconds
        self.quota_subject = quota_subject
        self.quota_description = quota_description
        super().__init__(message)


class UnavailableError(WadmError):
    """The service cannot serve now (shutting down, a dependency down); retrying later may work.

    `reason` (UPPER_SNAKE_CASE) and `metadata` say more to programs (google.rpc.ErrorInfo), e.g. what a
    call did before it was ended.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class OutOfRangeError(WadmError):
    """The request points past what can be served (e.g. a resume token older than the retention).

    `reason` and `metadata` go to google.rpc.ErrorInfo (e.g. `available_from`: what can still be served).
    """

    def __init__(self, message: str, *, reason: str, metadata: Mapping[str, str] | None = None) -> None:
        self.reason = reason
        self.metadata = dict(metadata or {})
        super().__init__(message)


class Violations:
    """Collects field violations so a request reports every problem at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record that `field` is wrong."""
        self._items.append(FieldViolation(field, description))

    def extend(self, error: InvalidArgumentError) -> None:
        """Record every violation of `error`."""
        self._items.extend(error.violations)

    def raise_if_any(self) -> None:
        """Raise InvalidArgumentError if anything was recorded."""
        if self._items:
            raise InvalidArgumentError(self._items)
