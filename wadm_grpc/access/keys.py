"""API keys: the keys file (hashes only), and the key ring that serves lookups and follows file changes.

A key is 256 random bits (`wadm_` + 43 URL-safe characters). The file keeps SHA-256 of each key, never
the key: for a random key of that entropy a fast hash is as strong as a slow one (nobody can enumerate
2^256 candidates, whereas slow hashes like bcrypt or argon2 exist to protect guessable passwords), and it
costs a microsecond per call instead of the tens of milliseconds a password hash would add to every call.
Hashes are compared with hmac.compare_digest against every entry, so timing says nothing about a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("wadm_grpc.access")

SCOPES = ("read", "stream", "ingest", "admin")
KEY_PREFIX = "wadm_"
FILE_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class KeysFileError(ValueError):
    """The keys file or a keys command's arguments cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as the file keeps it: its name, the SHA-256 of the key, what it may do, its budget."""

    name: str
    sha256: str
    scopes: frozenset[str]
    limit_per_minute: int | None = None  # None: WADM_RATE_LIMIT_PER_MINUTE
    created: str = ""

    def as_json(self) -> dict[str, Any]:
        """The file's form of this entry."""
        entry: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "scopes": sorted(self.scopes)}
        if self.limit_per_minute is not None:
            entry["limit_per_minute"] = self.limit_per_minute
        entry["created"] = self.created
        return entry


def digest(key: str) -> str:
    """SHA-256 of `key`, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str) -> frozenset[str]:
    """ "read,stream" -> {"read", "stream"}; KeysFileError naming an unknown scope."""
    scopes = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise KeysFileError(f"scopes must be a comma-separated list of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def _entry(raw: Any, where: str) -> ApiKey:
    if not isinstance(raw, dict):
        raise KeysFileError(f"{where}: each key must be an object")
    name, hashed, scopes = raw.get("name"), raw.get("sha256"), raw.get("scopes")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeysFileError(f"{where}: name must be 1-64 letters, digits, '_', '.', '-'")
    if not isinstance(hashed, str) or not re.fullmatch(r"[0-9a-f]{64}", hashed):
        raise KeysFileError(f"{where} ({name}): sha256 must be 64 lower-case hex digits")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise KeysFileError(f"{where} ({name}): scopes must be a list of strings")
    limit = raw.get("limit_per_minute")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise KeysFileError(f"{where} ({name}): limit_per_minute must be a positive integer")
    return ApiKey(name, hashed, parse_scopes(",".join(scopes)), limit, str(raw.get("created", "")))


def read_keys(path: Path) -> list[ApiKey]:
    """The keys in the file at `path` (none if it does not exist); KeysFileError if it is malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    try:
        document = json.loads(text)
    except ValueError as error:
        raise KeysFileError(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysFileError(f'{path}: expected {{"version": {FILE_VERSION}, "keys": [...]}}')
    keys = [_entry(raw, f"{path}: keys[{index}]") for index, raw in enumerate(document["keys"])]
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise KeysFileError(f"{path}: key names must be unique")
    return keys


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically (readers see the old or the new file, never half), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": FILE_VERSION, "keys": [key.as_json() for key in keys]}
    handle, temporary = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def add_key(path: Path, name: str, scopes: frozenset[str], limit_per_minute: int | None = None) -> str:
    """Store a new key named `name` and return the key itself (the only time it exists outside the caller)."""
    if not _NAME.fullmatch(name):
        raise KeysFileError(f"name must be 1-64 letters, digits, '_', '.', '-'; got {name!r}")
    keys = read_keys(path)
    if any(key.name == name for key in keys):
        raise KeysFileError(f"a key named {name!r} exists; revoke it first")
    key = new_key()
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_keys(path, [*keys, ApiKey(name, digest(key), scopes, limit_per_minute, created)])
    return key


def revoke_key(path: Path, name: str) -> None:
    """Remove the key named `name`; KeysFileError if there is none."""
    keys = read_keys(path)
    kept = [key for key in keys if key.name != name]
    if len(kept) == len(keys):
        raise KeysFileError(f"no key named {name!r} in {path}")
    write_keys(path, kept)


class KeyRing:
    """The keys of one file, re-read whenever the file changes (checked with a stat per lookup, ~1 us), so a
    revocation applies to the next call without a restart. A file that becomes unreadable or malformed
    keeps the keys last read (logged): a bad edit must neither open the service nor lock everyone out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._keys: list[ApiKey] = []
        self.reload()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def reload(self) -> None:
        """Read the file now (also what a SIGHUP does)."""
        signature = self._stat()
        try:
            keys = read_keys(self.path)
        except (KeysFileError, OSError) as error:
            log.error("keys file not reloaded; the keys read before stay in force", extra={"error": str(error)})
            self._signature = signature
            return
        if signature is None:
            log.warning("keys file does not exist: every key is refused until it does", extra={"path": str(self.path)})
        self._keys = keys
        self._signature = signature
        log.info("keys file read", extra={"path": str(self.path), "keys": len(keys)})

    def _current(self) -> list[ApiKey]:
        if self._stat() != self._signature:
            self.reload()
        return self._keys

    def lookup(self, key: str) -> ApiKey | None:
        """The entry whose hash is the key's, compared in constant time against every entry; None if none."""
        presented = digest(key).encode()
        found: ApiKey | None = None
        for entry in self._current():
            if hmac.compare_digest(presented, entry.sha256.encode()):
                found = entry
        return found

    def keys(self) -> list[ApiKey]:
        """The keys in force now."""
        return list(self._current())
