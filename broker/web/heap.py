"""The process heap and Python's cyclic garbage collector, under a streaming load.

Measured with `broker bench --scenario ingest` (50 runs as fast as the agent
sends): the collector's full (generation 2) collections took 250-300 ms each,
about 40 times a run, and they were the `/healthz` stalls of p99 ~400 ms.
A full collection walks every tracked object, and most of them are the
application itself: modules, pydantic schemas, SQLAlchemy metadata, routes.
`gc.freeze()` (Python 3.7+, the technique Instagram described for forked
servers) moves everything alive once the app has started into a permanent
generation that collections skip; what the streams allocate afterwards is
collected as before. `gc.unfreeze()` at shutdown hands those objects back.

The default thresholds (700, 10, 10) start a young collection every 700
container allocations: at 39,000 ev/s that was hundreds of collections a
second, and a full one every few tenths of a second. `THRESHOLDS` make the
young generation 50,000 objects and full collections 100 times rarer, the
tuning long-running Python servers commonly apply; objects in reference
cycles wait a little longer to be freed, nothing else changes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["THRESHOLDS", "startup_heap_frozen"]


THRESHOLDS = (50_000, 20, 100)
"""`gc.set_threshold` while serving: (generation 0 allocations, 0→1, 1→2 collections)."""


@contextlib.contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """While open, the objects alive at its start are skipped by the cyclic GC, and the
    collector runs on `THRESHOLDS`; both are undone on exit."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
