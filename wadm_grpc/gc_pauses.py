"""Garbage-collection pauses of a serving process: the heap it holds once started is moved out of every
later collection, and young collections run less often.

Why (issue 12, measured with gc.callbacks in the bench's server during PublishTrades): with CPython's
defaults, full collections of the server's heap (modules, protobuf descriptors, DuckDB, Arrow and grpc
bindings, and what ingest and the stream buffers keep) took 45-103 ms each, young ones 6-12 ms, all with
the GIL held, so every call in flight waited for them: GetCandles' p99 during ingest was 2.7-3.6x idle.
Frozen after startup, with young collections every 10,000 allocations instead of 700, one young
collection of 20-24 ms was the only pause over 5 ms left during ingest in the same runs (the p99's other
causes remain: docs/benchmarks.md, section 8).

The cost: an object frozen at startup that later becomes part of a reference cycle is never freed (what
startup builds lives as long as the process), and up to 10,000 new objects wait for a young collection.
"""

from __future__ import annotations

import gc

# gc.set_threshold(young, middle, old): allocations between young collections (CPython: 700), then young
# collections between middle ones and middle ones between old ones (CPython: 10 each).
THRESHOLDS = (10_000, 10, 10)


def settle_after_startup() -> None:
    """Collect once, then freeze what is left (gc.freeze: never traversed again) and space collections out.
    Called by `serve` once the app is built, in each worker."""
    gc.collect()  # what startup left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
