"""Estimated accuracy of responses still waiting for feedback, and how far to trust it.

Feedback often comes hours or days after the prediction, so most recent
traffic has no label yet. Confidence-based performance estimation (CBPE,
as NannyML describes and implements it: ``nannyml/performance_estimation/
confidence_based/metrics.py``, ``MulticlassClassificationAccuracy._estimate``)
estimates the accuracy of unlabelled predictions from the model's own
scores: if the scores are calibrated, a row predicted with top probability
``s`` is right with probability ``s``, so

    estimated accuracy = mean of the rows' top scores

(for a binary score ``s``, the top score is ``max(s, 1 - s)``). Unlike
NannyML, which first recalibrates the scores on a labelled reference set,
the estimate here uses the scores as the model sent them, and the
labelled part of the same window says whether that is safe:

* **calibration**: on the labelled rows of the window, the observed
  accuracy next to the mean top score. Calibrated scores make the two
  agree within sampling error; ``calibrated`` says whether they do, at
  95 %, using ``sqrt(m (1 - m) / n)`` (``m`` the mean top score), which
  bounds the standard deviation of the observed accuracy of ``n``
  calibrated rows (Jensen: ``sum s (1 - s) <= n m (1 - m)``).
* **stated error** of the estimate: with calibrated scores the number of
  right rows among ``n`` pending ones is a sum of independent Bernoulli
  ``s_i`` (Poisson binomial), whose standard deviation is
  ``sqrt(sum s_i (1 - s_i))``; ``accuracy_ci95`` is the estimate plus or
  minus 1.96 of those, over ``n`` (NannyML states a sampling error too,
  from its reference set's spread).

Which pending rows a window holds: ``total`` every response the join store
still holds without feedback; a time window those whose response time is
in ``(T - W, T]``; a count window ``N`` the newest ``N`` pending rows by
response time (among responses of the same time, those with the larger top
scores first). Only what this needs is kept per pending response: its
scores already on the response (:class:`~feedback_stream.scores.ResponseScores`),
read at scrape time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from feedback_stream._fixed import fixed, unfixed
from feedback_stream.events import ModelKey
from feedback_stream.metrics import Z_95
from feedback_stream.outcomes import to_tick
from feedback_stream.probability import ProbabilityScores
from feedback_stream.windows import WindowKind, WindowSpec

__all__ = [
    "AccuracyEstimate",
    "Calibration",
    "ConfidenceSums",
    "calibration",
    "estimate",
    "pending_windows",
]

PendingRows = tuple[ModelKey, float, Sequence[float]]
"""(model, response time in seconds, the top score of each row) of one pending response."""

_NO_ESTIMATE: Final = None


@dataclass(slots=True)
class ConfidenceSums:
    """Top scores of pending rows: count, sum and sum of ``s (1 - s)``.

    The sums are fixed point (:mod:`feedback_stream._fixed`), so they do not
    depend on the order rows are added or partitions merged.
    """

    rows: int = 0
    confidence_fixed: int = 0
    variance_fixed: int = 0

    def add(self, score: float) -> None:
        self.rows += 1
        self.confidence_fixed += fixed(score)
        self.variance_fixed += fixed(score * (1.0 - score))

    @property
    def confidence(self) -> float:
        return unfixed(self.confidence_fixed)

    @property
    def variance(self) -> float:
        return unfixed(self.variance_fixed)

    def merge(self, other: ConfidenceSums) -> None:
        self.rows += other.rows
        self.confidence_fixed += other.confidence_fixed
        self.variance_fixed += other.variance_fixed


@dataclass(frozen=True, slots=True)
class AccuracyEstimate:
    """The CBPE estimate of the accuracy of ``rows`` pending rows."""

    rows: int
    accuracy: float
    standard_error: float
    accuracy_ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.accuracy,
            "standard_error": self.standard_error,
            "accuracy_ci95": list(self.accuracy_ci95),
        }


def estimate(sums: ConfidenceSums) -> AccuracyEstimate | None:
    """Mean top score, with its stated error; ``None`` without pending rows."""
    n = sums.rows
    if n == 0:
        return _NO_ESTIMATE
    accuracy = min(1.0, max(0.0, unfixed(sums.confidence_fixed, n)))
    error = math.sqrt(max(0.0, sums.variance)) / n
    return AccuracyEstimate(
        n, accuracy, error, (max(0.0, accuracy - Z_95 * error), min(1.0, accuracy + Z_95 * error))
    )


@dataclass(frozen=True, slots=True)
class Calibration:
    """Labelled rows of a window: observed accuracy next to the mean top score."""

    rows: int
    mean_confidence: float
    observed_accuracy: float
    gap: float
    """observed accuracy - mean confidence (negative: the scores are overconfident)."""
    calibrated: bool
    """Whether ``|gap|`` is within 1.96 standard deviations of calibrated rows."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "mean_confidence": self.mean_confidence,
            "observed_accuracy": self.observed_accuracy,
            "gap": self.gap,
            "calibrated": self.calibrated,
        }


def calibration(scores: ProbabilityScores | None) -> Calibration | None:
    """From a window's probability-row sums (top score and correctness per labelled row)."""
    if scores is None or scores.count == 0:
        return None
    rows = sum(cell[0] for cell in scores.bins)
    if rows == 0:
        return None
    correct = sum(cell[1] for cell in scores.bins)
    mean = unfixed(sum(cell[2] for cell in scores.bins), rows)
    observed = correct / rows
    gap = observed - mean
    bound = math.sqrt(max(mean * (1.0 - mean), 0.0) / rows)
    return Calibration(rows, mean, observed, gap, abs(gap) <= Z_95 * bound + 1e-12)


def pending_windows(
    pending: Iterable[PendingRows], specs: Sequence[WindowSpec], now: float
) -> dict[ModelKey, dict[str, ConfidenceSums]]:
    """Per model and window, the top-score sums of the pending rows the window holds.

    ``now`` is the clock of time windows (seconds). Models without pending
    scored rows are absent.
    """
    high = to_tick(now)
    by_model: dict[ModelKey, list[tuple[float, tuple[float, ...]]]] = {}
    for key, time, scores in pending:
        by_model.setdefault(key, []).append((time, tuple(scores)))
    out: dict[ModelKey, dict[str, ConfidenceSums]] = {}
    for key, responses in by_model.items():
        windows: dict[str, ConfidenceSums] = {}
        for spec in specs:
            sums = ConfidenceSums()
            if spec.kind is WindowKind.TOTAL:
                for _, scores in responses:
                    for score in scores:
                        sums.add(score)
            elif spec.kind is WindowKind.TIME:
                low = high - round(spec.width_s * 1_000_000)
                for time, scores in responses:
                    if low < to_tick(time) <= high:
                        for score in scores:
                            sums.add(score)
            else:
                # Ties in response time go to the larger scores: the rows taken are a
                # function of the pending rows, not of the order they are read in.
                newest = heapq.nlargest(spec.size, responses)
                left = spec.size
                for _, scores in newest:
                    for score in scores[:left]:
                        sums.add(score)
                    left -= min(left, len(scores))
                    if not left:
                        break
            windows[spec.name] = sums
        out[key] = windows
    return out
