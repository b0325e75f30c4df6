"""prefect_stablestudio.flows.heap: the collector keeps off what was alive before a batch, and gets it back after the last one."""

from __future__ import annotations

import gc
import weakref

from prefect_stablestudio.flows.heap import frozen_heap


def test_a_frozen_heap_hides_older_objects_until_the_last_overlapping_block_ends() -> None:
    assert gc.get_freeze_count() == 0
    # Frozen objects freed by their reference count leave the count as they go: only "some" is stable.
    with frozen_heap():
        assert gc.get_freeze_count() > 0  # everything tracked at the start, this test's own objects included
        with frozen_heap():  # a second batch in the same process
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # still frozen: the outer batch runs on
    assert gc.get_freeze_count() == 0


def test_a_cycle_that_dies_while_frozen_is_collected_after() -> None:
    class Node:
        other: object = None

    collected: list[bool] = []
    a, b = Node(), Node()
    a.other, b.other = b, a
    weakref.finalize(a, collected.append, True)
    with frozen_heap():
        del a, b
        gc.collect()
        assert not collected  # frozen: out of the collector's sight
    gc.collect()
    assert collected == [True]
