"""Debian's chromium as the browser tests launch it (Playwright's own browser download cannot run here)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")  # `make chromium` (run by `make test`) installs it
# These flags keep Debian's chromium quiet and offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
