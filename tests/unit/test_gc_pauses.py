"""A started server's heap is frozen out of every later full collection (wadm_grpc/gc_pauses.py)."""

from __future__ import annotations

import gc

from wadm_grpc.gc_pauses import freeze_startup_heap


def test_what_startup_holds_is_out_of_later_collections_and_its_garbage_is_freed() -> None:
    held = [[index] for index in range(1000)]  # containers the collector tracks, alive at "startup"
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle only a collection frees
    collected_before = gc.get_stats()[2]["collected"]
    del garbage
    gc.unfreeze()
    try:
        freeze_startup_heap()
        assert gc.get_stats()[2]["collected"] > collected_before  # startup's garbage was collected first
        assert gc.get_freeze_count() >= len(held)
        tracked = {id(found) for found in gc.get_objects()}  # every generation a collection walks
        assert not any(id(item) in tracked for item in held)
        assert id(held) not in tracked
    finally:
        gc.unfreeze()
