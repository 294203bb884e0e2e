"""What a benchmark hands the report: figures, each a number beside its baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Context", "Figure", "Skipped"]


@dataclass(slots=True)
class Figure:
    """One measured number, the baseline measured beside it, and its target.

    ``ratio`` is ``value / baseline`` (for "lower is better" figures, such as
    a latency, it is still that quotient: the report says which way is good
    through ``target``). ``met`` is ``None`` when the figure has no target.
    """

    benchmark: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    target: str | None = None
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


class Skipped(Exception):
    """A benchmark could not run here (a missing piece); the report says why."""


@dataclass(slots=True)
class Context:
    """What every benchmark gets: the size class, where to write, the broker.

    ``scale`` is 1.0 for ``make bench``, smaller for ``--quick`` and smaller
    still for the test smoke; each benchmark multiplies its sizes by it.
    ``bootstrap`` is a callable so that only benchmarks that need Kafka pay
    for starting a broker.
    """

    scale: float
    results: Path
    quick: bool = False
    profile: bool = True
    bootstrap_address: str | None = None
    broker_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def size(self, full: int, minimum: int = 1) -> int:
        return max(minimum, int(full * self.scale))
