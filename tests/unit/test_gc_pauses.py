"""A started server's heap is frozen out of later collections, and young collections are spaced out."""

from __future__ import annotations

import gc

from wadm_grpc.gc_pauses import THRESHOLDS, settle_after_startup


def test_settling_freezes_the_heap_and_spaces_collections_out() -> None:
    before = gc.get_threshold()
    held = [[index] for index in range(1000)]  # containers the collector tracks, alive at "startup"
    gc.unfreeze()
    try:
        settle_after_startup()
        assert gc.get_freeze_count() >= len(held)  # never traversed by a collection again
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_count()[0] < THRESHOLDS[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
