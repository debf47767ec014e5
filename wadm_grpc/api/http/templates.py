"""Path templates of google.api.http rules (google/api/http.proto), parsed and matched.

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`{name}` is short for `{name=*}`; `**` matches zero or more segments and may only come last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# http.proto: LITERAL is any run of URL path characters other than the template's own syntax.
_LITERAL = re.compile(r"[^/{}=*:]+")

# Specificity ranks, higher wins: a literal beats a one-segment wildcard, which beats `**`.
_RANK_LITERAL = 2
_RANK_ONE = 1
_RANK_MANY = 0


class TemplateError(ValueError):
    """A path template that does not follow http.proto's grammar."""


class PathEncodingError(ValueError):
    """A request path segment that is not valid percent-encoded UTF-8."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One template segment: a literal, `*` or `**`, and the variable it belongs to (if any)."""

    literal: str | None  # None for a wildcard
    many: bool = False  # `**`
    variable: str | None = None  # dotted field path bound by this segment

    @property
    def rank(self) -> int:
        """How specific this segment is (see the _RANK_ constants)."""
        if self.literal is not None:
            return _RANK_LITERAL
        return _RANK_MANY if self.many else _RANK_ONE


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A parsed template: its segments, its verb, and the field paths its variables bind."""

    text: str
    segments: tuple[Segment, ...]
    verb: str | None

    @property
    def variables(self) -> tuple[str, ...]:
        """Field paths bound by the path, in order of appearance."""
        seen: list[str] = []
        for segment in self.segments:
            if segment.variable is not None and segment.variable not in seen:
                seen.append(segment.variable)
        return tuple(seen)

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: among templates matching one path, the greatest is the most specific."""
        return (*(s.rank for s in self.segments), 1 if self.verb is not None else 0)

    def match(self, segments: list[str], verb: str | None) -> dict[str, str] | None:
        """Variable values (percent-decoded) if the raw path `segments` and `verb` match, else None."""
        if verb != self.verb:
            return None
        bound: dict[str, list[str]] = {}
        position = 0
        for segment in self.segments:
            if segment.many:
                # `**` is last: it takes everything left (zero or more segments); `/` stays encoded in it.
                taken = segments[position:]
                position = len(segments)
                if segment.variable is not None:
                    bound.setdefault(segment.variable, []).extend(_decode(s, keep_slash=True) for s in taken)
                break
            if position >= len(segments):
                return None
            raw = segments[position]
            position += 1
            if segment.literal is not None:
                if _decode(raw, keep_slash=True) != segment.literal:
                    return None
            elif raw == "":
                return None  # a wildcard never matches an empty segment
            if segment.variable is not None:
                bound.setdefault(segment.variable, []).append(_decode(raw, keep_slash=False))
        if position != len(segments):
            return None
        return {name: "/".join(parts) for name, parts in bound.items()}


def split_path(raw_path: str) -> tuple[list[str], str | None]:
    """A raw request path as segments and a verb (`/a/b:verb`); the verb is None without a colon in the
    last segment."""
    if not raw_path.startswith("/"):
        raise PathEncodingError("the path must start with '/'")
    segments = raw_path[1:].split("/")
    last = segments[-1]
    if ":" in last:
        head, _, verb = last.rpartition(":")
        return [*segments[:-1], head], verb
    return segments, None


def _decode(raw: str, *, keep_slash: bool) -> str:
    """Percent-decode a path segment; `keep_slash` leaves %2F encoded (multi-segment values, as
    grpc-gateway does), and invalid UTF-8 is an error, never a replacement character."""
    if keep_slash:
        raw = raw.replace("%2F", "%252F").replace("%2f", "%252f")
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise PathEncodingError(f"path segment {raw[:40]!r} is not percent-encoded UTF-8") from None


def parse_template(text: str) -> PathTemplate:
    """Parse `text` (e.g. "/api/v1/market/candles/{symbol}/{timeframe}" or "/v1/{name=shelves/*}:get")."""
    parser = _Parser(text)
    return parser.template()


class _Parser:
    """Recursive descent over http.proto's grammar, one character of lookahead."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._at = 0

    def template(self) -> PathTemplate:
        self._expect("/")
        segments = self._segments(variable=None)
        verb = None
        if self._peek(":"):
            self._at += 1
            verb = self._match(_LITERAL, "a verb")
        if self._at != len(self._text):
            self._fail("unexpected text")
        for segment in segments[:-1]:
            if segment.many:
                self._fail("'**' may only be the last segment")
        return PathTemplate(self._text, tuple(segments), verb)

    def _segments(self, variable: str | None) -> list[Segment]:
        segments = self._segment(variable)
        while self._peek("/"):
            self._at += 1
            segments += self._segment(variable)
        return segments

    def _segment(self, variable: str | None) -> list[Segment]:
        if self._text.startswith("**", self._at):
            self._at += 2
            return [Segment(None, many=True, variable=variable)]
        if self._peek("*"):
            self._at += 1
            return [Segment(None, variable=variable)]
        if self._peek("{"):
            if variable is not None:
                self._fail("variables cannot nest")
            return self._variable()
        return [Segment(self._match(_LITERAL, "a literal segment"), variable=variable)]

    def _variable(self) -> list[Segment]:
        self._expect("{")
        names = [self._match(_IDENT, "a field name")]
        while self._peek("."):
            self._at += 1
            names.append(self._match(_IDENT, "a field name"))
        path = ".".join(names)
        segments = [Segment(None, variable=path)]
        if self._peek("="):
            self._at += 1
            segments = self._segments(variable=path)
        self._expect("}")
        return segments

    def _peek(self, char: str) -> bool:
        return self._text.startswith(char, self._at)

    def _expect(self, char: str) -> None:
        if not self._peek(char):
            self._fail(f"expected {char!r}")
        self._at += 1

    def _match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self._text, self._at)
        if found is None:
            self._fail(f"expected {what}")
        self._at = found.end()
        return found.group()

    def _fail(self, why: str) -> NoReturn:
        raise TemplateError(f"{self._text!r} at {self._at}: {why}")
