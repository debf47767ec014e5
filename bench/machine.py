"""The machine and software the figures come from (printed first, stored with every result)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("grpcio", "protobuf", "duckdb", "pyarrow")
ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PATHS = ("wadm_grpc", "clients", "protos", "pyproject.toml")


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False, cwd=ROOT).stdout
    except OSError:
        return ""


def describe() -> dict[str, str]:
    """nproc, CPU model, memory (free -h), kernel, Python and package versions."""
    model = next(
        (line.split(":", 1)[1].strip() for line in _run("lscpu").splitlines() if line.startswith("Model name")),
        platform.processor() or "unknown",
    )
    memory = next((line for line in _run("free", "-h").splitlines() if line.startswith("Mem:")), "")
    fields = memory.split()
    info = {
        "nproc": _run("nproc").strip() or str(os.cpu_count()),
        "cpu_model": model,
        "memory_total": fields[1] if len(fields) > 1 else "unknown",
        "memory_available": fields[6] if len(fields) > 6 else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "source": source(),
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    return info


def source() -> str:
    """The product commit measured, "+ local changes" when its files differ from it."""
    exported = os.environ.get("BENCH_SOURCE")
    if exported:
        return exported
    commit = _run("git", "rev-parse", "--short", "HEAD").strip()
    if not commit:
        return f"{ROOT} (not a git checkout)"
    changed = _run("git", "status", "--porcelain", "--", *PRODUCT_PATHS).strip()
    return f"{commit} + local changes" if changed else commit


def summary(info: dict[str, str]) -> str:
    """One line for the terminal."""
    versions = ", ".join(f"{name} {info[name]}" for name in PACKAGES)
    return (
        f"machine: {info['nproc']} cores ({info['cpu_model']}), {info['memory_total']} RAM "
        f"({info['memory_available']} available); Python {info['python']}; {versions}; product {info['source']}"
    )
