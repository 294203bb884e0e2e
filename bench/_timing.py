"""Small measuring helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator, Sequence

__all__ = ["percentile", "pinned", "process_cpu_seconds", "rss_bytes"]


@contextlib.contextmanager
def pinned(cpu: int | None = None) -> Iterator[int]:
    """Run the block on one CPU (the last one by default), then restore the mask.

    "One core" means it: the interpreter cannot spread its threads (the
    garbage collector, orjson) over the second core while we time it.
    """
    before = os.sched_getaffinity(0)
    target = cpu if cpu is not None else max(before)
    os.sched_setaffinity(0, {target})
    try:
        yield target
    finally:
        os.sched_setaffinity(0, before)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (from /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[11..14] = utime, stime, cutime, cstime (stat fields 14-17)
    return sum(int(v) for v in fields[11:15]) / ticks


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm", encoding="ascii") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE")
