"""`python -m wadm_grpc keys add|list|revoke`: manage the keys file (WADM_API_KEYS_FILE or --file)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wadm_grpc.access.keys import KeysFileError, add_key, parse_scopes, read_keys, revoke_key


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `keys` command and its subcommands."""
    keys = commands.add_parser("keys", help="manage API keys (the file WADM_API_KEYS_FILE names)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    add = actions.add_parser("add", help="make a key; prints it once, alone on the last line")
    add.add_argument("name", help="the key's name (logs and limits name it; the key itself is never logged)")
    add.add_argument("--scopes", required=True, help="comma-separated: read, stream, ingest, admin")
    add.add_argument("--limit-per-minute", type=int, help="this key's weight budget per minute (default: server's)")
    listing = actions.add_parser("list", help="names, scopes and limits (never keys: the file has none)")
    revoke = actions.add_parser("revoke", help="remove a key; running servers refuse it from their next call")
    revoke.add_argument("name")
    for sub in (add, listing, revoke):
        sub.add_argument("--file", help="keys file (default: WADM_API_KEYS_FILE)")


def run(args: argparse.Namespace) -> int:
    """Run one keys subcommand; 2 with a one-line message on bad arguments or a bad file."""
    path_text = args.file or os.environ.get("WADM_API_KEYS_FILE")
    if not path_text:
        print("error: no keys file: pass --file PATH or set WADM_API_KEYS_FILE", file=sys.stderr)
        return 2
    path = Path(path_text)
    try:
        if args.keys_command == "add":
            limit = args.limit_per_minute
            if limit is not None and limit < 1:
                raise KeysFileError("--limit-per-minute must be a positive integer")
            key = add_key(path, args.name, parse_scopes(args.scopes), limit)
            print(f"added key {args.name!r} to {path}; it is shown once, now (the file keeps its SHA-256 only):")
            print(key)
        elif args.keys_command == "list":
            for entry in read_keys(path):
                limit = entry.limit_per_minute if entry.limit_per_minute is not None else "default"
                print(f"{entry.name}\tscopes={','.join(sorted(entry.scopes))}\tlimit={limit}\tcreated={entry.created}")
        else:
            revoke_key(path, args.name)
            print(f"revoked key {args.name!r}")
    except (KeysFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
