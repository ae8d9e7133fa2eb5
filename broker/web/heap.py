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
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["startup_heap_frozen"]


@contextlib.contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """While open, the objects alive at its start are skipped by the cyclic GC."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
