"""Garbage-collector settings for a long-running stream processor.

The join store and the windows hold millions of long-lived objects (pending
puids, outcomes), and every record allocates a few more. With CPython's
defaults the collector runs a young collection every 700 net allocations
and, as the heap grows, full collections that walk every held object:
measured at 25-35% of the core's time. Nearly all of that work finds
nothing, because the processor's state has no reference cycles to free.

So: freeze what start-up built (modules, settings, the web app) out of
every later collection, and collect the young generation every 10,000
allocations instead of 700, the middle one every 100 young collections
(every million allocations). Cyclic garbage still gets collected, later.

Each young collection stops the event loop while it walks the young
generation, so its size is a latency: at 50,000 allocations a collection
took about 9 ms (p50; up to 23 ms) on the latency benchmark's stream, at
10,000 about 1 ms (up to 9 ms), for the same total collector time and the
same core throughput (docs/performance.md, "Latency").
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["MIDDLE_THRESHOLD", "YOUNG_THRESHOLD", "tune_collector"]

YOUNG_THRESHOLD: Final = 10_000
"""Net allocations between young collections (CPython's default is 700)."""

MIDDLE_THRESHOLD: Final = 100
"""Young collections between collections of the middle generation (CPython's: 10)."""


def tune_collector() -> None:
    """Apply the settings above; call once, after start-up allocated its objects."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, max(middle, MIDDLE_THRESHOLD), old)
