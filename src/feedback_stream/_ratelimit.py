"""Rate limits for log lines: a flood of one message shows as a few lines and a count.

A broker outage makes aiokafka log the same connection error for every
retry, and a hostile client can make every request log a refusal. A
:class:`RateLimitFilter` on the log handler lets the first ``burst``
records of one kind (same logger, level and message template) through per
``interval_s`` and drops the rest; the first record let through after that
says how many were dropped::

    WARNING aiokafka: Unable connect to node ... (1,337 similar lines suppressed in 60 s)

Records are told apart by their *template* (``record.msg``), not by the
formatted text, so that lines differing only in an address or a count are
one kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimitFilter", "install_rate_limit"]

_MAX_KINDS = 1024
"""Kinds of line remembered at once; past that, the longest-quiet ones are forgotten."""


@dataclass(slots=True)
class _Window:
    start: float
    passed: int
    suppressed: int


class RateLimitFilter(logging.Filter):
    """Pass ``burst`` records of each kind per ``interval_s`` seconds; count the rest.

    Args:
        interval_s: length of a rate window, seconds (monotonic clock).
        burst: records of one kind let through per window.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if interval_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive interval and a burst of at least 1")
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self.suppressed_total = 0
        """Records dropped since the filter was made (for tests and diagnostics)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval_s:
            dropped = window.suppressed if window is not None else 0
            if window is None and len(self._windows) >= _MAX_KINDS:
                self._forget(now)
            self._windows[key] = _Window(now, 1, 0)
            if dropped:
                # Appended to the template, so %-arguments still format as before.
                suffix = f" ({dropped:,} similar lines suppressed in {self.interval_s:g} s)"
                record.msg = str(record.msg) + suffix.replace("%", "%%")
            return True
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        self.suppressed_total += 1
        return False

    def _forget(self, now: float) -> None:
        stale = [k for k, w in self._windows.items() if now - w.start >= self.interval_s]
        for key in stale or list(self._windows)[: _MAX_KINDS // 2]:
            del self._windows[key]


def install_rate_limit(
    logger: logging.Logger | None = None, interval_s: float = 60.0, burst: int = 5
) -> RateLimitFilter:
    """Add one :class:`RateLimitFilter` to every handler of ``logger`` (default: the root)."""
    target = logger if logger is not None else logging.getLogger()
    limit = RateLimitFilter(interval_s, burst)
    for handler in target.handlers:
        handler.addFilter(limit)
    return limit
