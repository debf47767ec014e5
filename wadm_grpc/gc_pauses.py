"""Garbage-collection pauses of a serving process: the heap it holds once started is moved out of every
later full collection.

Why (issue 12; measured with gc.callbacks in the bench's server, docs/benchmarks.md section 8): a started
server tracks ~110,000 container objects (modules, functions, protobuf descriptors, the grpc, DuckDB and
Arrow bindings), nearly all of them alive for good. Each uncached read holds ~2,000 short-lived ones (rows,
aggregates) across a few young collections, so some reach the oldest generation, and a full collection ran
every 1-2 s even with no ingest: 35 ms each, 50 ms during ingest, with the GIL held, so every call in flight
waited. Frozen (gc.freeze), the startup heap is never traversed again; a full collection then walks only what
was made since, and costs a few milliseconds. The collector's thresholds are left at CPython's defaults.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once (startup's garbage is freed, not frozen), then freeze what is left. Called by `serve`
    once the app is built and listening, in each worker."""
    gc.collect()
    gc.freeze()
