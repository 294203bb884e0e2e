"""Metric windows: cumulative, exact sliding time windows, and count windows.

Every window keeps :class:`~feedback_stream.metrics.Counts` up to date by
adding outcomes as they enter and removing them as they leave, so a read is
independent of how many outcomes the window holds and an update is O(1)
amortised (O(log n) only for outcomes that arrive out of time order).

Sliding time window of width W, as of clock T (both in integer µs)::

      dropped          counted                    future (t > T)
    ----------](-------------------------------](-------------->
             T - W                             T
    deque: in-order arrivals, evicted from the left as T moves
    late heap: out-of-order arrivals inside the window
    future heap: outcomes stamped after the clock, counted once T reaches them

The clock only moves forward. A retracted outcome is subtracted at once if
it is counted; its entry stays in the deque or heaps and is skipped (by its
``retracted`` flag) when it would be evicted or admitted.

A count window holds the newest N live outcomes in apply order, plus a
reserve of the N before them: an amendment retracts an outcome that may be
in the window before applying its replacement, and the reserve gives back
the outcome the retraction lets in. Because the join store applies as many
outcomes as it retracts in one step, the reserve never runs dry.
"""

from __future__ import annotations

import heapq
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feedback_stream.metrics import Counts
from feedback_stream.outcomes import TICKS_PER_SECOND, Outcome

__all__ = [
    "CountWindow",
    "CumulativeWindow",
    "ModelWindows",
    "SlidingWindow",
    "Window",
    "WindowKind",
    "WindowSpec",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"250ms"`` or plain seconds, in seconds."""
    match = _DURATION.match(text)
    if match is not None:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a duration: expected a number with a unit, like 30s, 5m or 1h"
            ) from None
    if not seconds > 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


class WindowKind(StrEnum):
    TOTAL = "total"
    TIME = "time"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window as the user named it: ``total``, a duration, or a count."""

    name: str
    kind: WindowKind
    width_s: float = 0.0
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """``"total"``, a duration (``"30s"``, ``"5m"``, ``"1h"``) or an integer count."""
        name = text.strip()
        if name.lower() in ("total", "cumulative"):
            return cls(name, WindowKind.TOTAL)
        if name.isdigit():
            size = int(name)
            if size <= 0:
                raise ValueError(f"{text!r}: a count window needs at least 1 outcome")
            return cls(name, WindowKind.COUNT, size=size)
        if _DURATION.match(name) is None:
            raise ValueError(
                f"{text!r} is not a window: expected 'total', a duration like 30s, 5m or 1h, "
                "or a number of outcomes like 1000"
            )
        return cls(name, WindowKind.TIME, width_s=parse_duration(name))

    def build(self) -> Window:
        if self.kind is WindowKind.TOTAL:
            return CumulativeWindow()
        if self.kind is WindowKind.TIME:
            return SlidingWindow(self.width_s)
        return CountWindow(self.size)


class Window(ABC):
    """Common interface: outcomes in, outcomes out, counts as of a clock."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts = Counts()

    @abstractmethod
    def apply(self, outcome: Outcome) -> None:
        """Count a newly applied outcome, if it falls in the window."""

    @abstractmethod
    def retract(self, outcome: Outcome) -> None:
        """Take back an outcome an amendment replaced, if the window counts it."""

    def advance(self, now_tick: int) -> None:  # noqa: B027 (only time windows have a clock)
        """Move the clock to ``now_tick`` (µs); a clock never moves back."""

    def counts(self) -> Counts:
        """The counts as of the window's clock (call :meth:`advance` first)."""
        return self._counts

    def live(self) -> Iterator[Outcome]:
        """The outcomes currently counted (not for the cumulative window)."""
        return iter(())

    @abstractmethod
    def dump(self) -> dict[str, Any]:
        """Plain data for a snapshot; outcomes by sequence number."""

    @abstractmethod
    def load(self, data: dict[str, Any], outcomes: dict[int, Outcome]) -> None:
        """Refill a fresh window from :meth:`dump` output."""


class CumulativeWindow(Window):
    """Everything since the start (or since the snapshot it was restored from)."""

    __slots__ = ()

    def apply(self, outcome: Outcome) -> None:
        self._counts.add(outcome)

    def retract(self, outcome: Outcome) -> None:
        self._counts.remove(outcome)

    def dump(self) -> dict[str, Any]:
        return {"counts": self._counts.to_list()}

    def load(self, data: dict[str, Any], outcomes: dict[int, Outcome]) -> None:
        self._counts = Counts.from_list(data["counts"])


_NO_CLOCK = -(2**62)


class SlidingWindow(Window):
    """Outcomes with ``T - W < t <= T``, exactly (see the module docstring)."""

    __slots__ = ("_clock", "_future", "_late", "_ordered", "width_tick")

    def __init__(self, width_s: float) -> None:
        super().__init__()
        self.width_tick = round(width_s * TICKS_PER_SECOND)
        self._clock = _NO_CLOCK
        self._ordered: deque[Outcome] = deque()
        self._late: list[tuple[int, int, Outcome]] = []
        self._future: list[tuple[int, int, Outcome]] = []

    @property
    def clock(self) -> int:
        return self._clock

    def apply(self, outcome: Outcome) -> None:
        tick = outcome.tick
        if tick > self._clock:
            heapq.heappush(self._future, (tick, outcome.seq, outcome))
        elif tick > self._clock - self.width_tick:
            self._admit(outcome)

    def _admit(self, outcome: Outcome) -> None:
        self._counts.add(outcome)
        ordered = self._ordered
        if not ordered or outcome.tick >= ordered[-1].tick:
            ordered.append(outcome)
        else:
            heapq.heappush(self._late, (outcome.tick, outcome.seq, outcome))

    def retract(self, outcome: Outcome) -> None:
        tick = outcome.tick
        if self._clock - self.width_tick < tick <= self._clock:
            self._counts.remove(outcome)

    def advance(self, now_tick: int) -> None:
        if now_tick <= self._clock:
            return
        self._clock = now_tick
        low = now_tick - self.width_tick
        future = self._future
        while future and future[0][0] <= now_tick:
            outcome = heapq.heappop(future)[2]
            if not outcome.retracted and outcome.tick > low:
                self._admit(outcome)
        counts = self._counts
        ordered = self._ordered
        while ordered and ordered[0].tick <= low:
            outcome = ordered.popleft()
            if not outcome.retracted:
                counts.remove(outcome)
        late = self._late
        while late and late[0][0] <= low:
            outcome = heapq.heappop(late)[2]
            if not outcome.retracted:
                counts.remove(outcome)

    def live(self) -> Iterator[Outcome]:
        for outcome in self._ordered:
            if not outcome.retracted:
                yield outcome
        for _, _, outcome in self._late:
            if not outcome.retracted:
                yield outcome

    def _pending(self) -> Iterator[Outcome]:
        for _, _, outcome in self._future:
            if not outcome.retracted:
                yield outcome

    def dump(self) -> dict[str, Any]:
        return {
            "clock": self._clock,
            "live": [o.seq for o in self.live()],
            "future": [o.seq for o in self._pending()],
        }

    def load(self, data: dict[str, Any], outcomes: dict[int, Outcome]) -> None:
        self._clock = data["clock"]
        admitted = sorted((outcomes[s] for s in data["live"]), key=lambda o: (o.tick, o.seq))
        for outcome in admitted:
            self._admit(outcome)
        for seq in data["future"]:
            outcome = outcomes[seq]
            heapq.heappush(self._future, (outcome.tick, outcome.seq, outcome))


class CountWindow(Window):
    """The newest ``size`` live outcomes, in apply (sequence) order."""

    __slots__ = ("_live", "_reserve", "_reserve_live", "_window", "size")

    def __init__(self, size: int) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"a count window needs a positive size, got {size}")
        self.size = size
        self._window: deque[Outcome] = deque()
        self._reserve: deque[Outcome] = deque()
        self._live = 0
        self._reserve_live = 0

    def apply(self, outcome: Outcome) -> None:
        self._window.append(outcome)
        self._counts.add(outcome)
        self._live += 1
        if self._live <= self.size:
            return
        window = self._window
        oldest = window.popleft()
        while oldest.retracted:
            oldest = window.popleft()
        self._counts.remove(oldest)
        self._live -= 1
        reserve = self._reserve
        reserve.append(oldest)
        self._reserve_live += 1
        while self._reserve_live > self.size:
            if not reserve.popleft().retracted:
                self._reserve_live -= 1

    def retract(self, outcome: Outcome) -> None:
        window = self._window
        if window and outcome.seq >= window[0].seq:
            self._counts.remove(outcome)
            self._live -= 1
            reserve = self._reserve
            while reserve:
                back = reserve.pop()
                if back.retracted:
                    continue
                self._reserve_live -= 1
                window.appendleft(back)
                self._counts.add(back)
                self._live += 1
                break
        elif self._reserve and outcome.seq >= self._reserve[0].seq:
            self._reserve_live -= 1

    def live(self) -> Iterator[Outcome]:
        return (o for o in self._window if not o.retracted)

    def dump(self) -> dict[str, Any]:
        return {
            "window": [o.seq for o in self.live()],
            "reserve": [o.seq for o in self._reserve if not o.retracted],
        }

    def load(self, data: dict[str, Any], outcomes: dict[int, Outcome]) -> None:
        for seq in data["reserve"]:
            self._reserve.append(outcomes[seq])
            self._reserve_live += 1
        for seq in data["window"]:
            outcome = outcomes[seq]
            self._window.append(outcome)
            self._counts.add(outcome)
            self._live += 1


class ModelWindows:
    """All windows of one model, moved together.

    Retracting sets the outcome's ``retracted`` flag after every window has
    seen the retraction, because the windows decide where the outcome is
    from its time or sequence, not from the flag.
    """

    __slots__ = ("_all", "_timed", "specs", "windows")

    def __init__(self, specs: Sequence[WindowSpec]) -> None:
        self.specs = tuple(specs)
        self.windows: dict[str, Window] = {spec.name: spec.build() for spec in self.specs}
        # Tuples for the per-outcome loops; only time windows have a clock to move.
        self._all = tuple(self.windows.values())
        self._timed = tuple(w for w in self._all if isinstance(w, SlidingWindow))

    def apply(self, outcome: Outcome) -> None:
        for window in self._all:
            window.apply(outcome)

    def retract(self, outcome: Outcome) -> None:
        for window in self._all:
            window.retract(outcome)
        outcome.retracted = True

    def advance(self, now_tick: int) -> None:
        for window in self._timed:
            window.advance(now_tick)

    def counts(self, name: str, now_tick: int) -> Counts:
        window = self.windows[name]
        window.advance(now_tick)
        return window.counts()

    def referenced(self) -> Iterator[Outcome]:
        """Every live outcome a window still holds (for snapshots)."""
        for window in self.windows.values():
            yield from window.live()
            if isinstance(window, SlidingWindow):
                yield from window._pending()
            elif isinstance(window, CountWindow):
                yield from (o for o in window._reserve if not o.retracted)
