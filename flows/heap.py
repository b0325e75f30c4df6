"""Keep the cyclic collector off the process's long-lived objects while a batch runs (`gc.freeze`).

A flow process holds Prefect, pydantic and httpx: ~170 000 tracked objects before the first edit. Each full
collection walks all of them (~70 ms of CPU here), and a batch of 200 edits allocates enough to trigger one
(bench/). Freezing moves the objects alive at the start of a batch out of the collector's sight; the batch's
own garbage is still collected, and `gc.unfreeze()` hands the frozen objects back when the last batch of the
process ends, so a cycle that died meanwhile is collected then.

Example:
    ```python
    with frozen_heap():
        await run_the_batch()
    ```
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]

_lock = threading.Lock()
_active = 0


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects alive now for the duration of the block; nests and overlaps across threads."""
    global _active
    with _lock:
        _active += 1
        gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.unfreeze()
