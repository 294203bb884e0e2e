"""Classification metrics from confusion counts, exactly as scikit-learn defines them.

Windows keep only :class:`Counts` (a sparse confusion matrix and a few
totals) and update them by adding and removing outcomes; :func:`compute`
turns counts into numbers when someone reads them. The definitions are
``sklearn.metrics``' (``accuracy_score``, ``precision_recall_fscore_support``
with ``zero_division=0``, ``confusion_matrix``), with its default labels:
the sorted union of the true and predicted classes present.

Two populations, as EVENTS.md §4 says: accuracy counts every outcome whose
correctness is known (a reward of 0 without truth is wrong, true class
unknown); the per-class metrics count the outcomes whose true class is
known.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from feedback_stream.outcomes import Outcome
from feedback_stream.scores import Quality, QualityMetrics

__all__ = ["ClassMetrics", "Counts", "WindowMetrics", "compute", "wilson_interval"]

Z_95: Final = 1.959963984540054
"""The 97.5% quantile of the standard normal: a two-sided 95% interval."""


class Counts:
    """Additive sufficient statistics of a set of outcomes.

    ``confusion`` maps (true class, predicted class) to a positive count;
    cells that fall to zero are deleted, so the labels of a window are
    exactly the classes of the outcomes it holds. ``quality`` sums the
    outcomes' score terms (:mod:`feedback_stream.scores`), made when the
    first one arrives.
    """

    __slots__ = ("confusion", "correct", "known", "outcomes", "quality", "reward_count",
                 "reward_sum")  # fmt: skip

    def __init__(self) -> None:
        self.confusion: dict[tuple[str, str], int] = {}
        self.outcomes = 0
        self.known = 0
        self.correct = 0
        self.reward_count = 0
        self.reward_sum = 0.0
        self.quality: Quality | None = None

    def add(self, outcome: Outcome) -> None:
        self.outcomes += 1
        correct = outcome.correct
        if correct is not None:
            self.known += 1
            if correct:
                self.correct += 1
        truth = outcome.truth
        if truth is not None:
            cell = (truth, outcome.predicted)
            confusion = self.confusion
            confusion[cell] = confusion.get(cell, 0) + 1
        reward = outcome.reward
        if reward is not None:
            self.reward_count += 1
            self.reward_sum += reward
        term = outcome.term
        if term is not None:
            quality = self.quality
            if quality is None:
                quality = self.quality = Quality()
            quality.add(term)

    def remove(self, outcome: Outcome) -> None:
        self.outcomes -= 1
        correct = outcome.correct
        if correct is not None:
            self.known -= 1
            if correct:
                self.correct -= 1
        truth = outcome.truth
        if truth is not None:
            cell = (truth, outcome.predicted)
            confusion = self.confusion
            left = confusion[cell] - 1
            if left:
                confusion[cell] = left
            else:
                del confusion[cell]
        reward = outcome.reward
        if reward is not None:
            self.reward_count -= 1
            # Reset at zero so that float residue from add/remove never outlives the data.
            self.reward_sum = self.reward_sum - reward if self.reward_count else 0.0
        term = outcome.term
        if term is not None:
            assert self.quality is not None
            self.quality.remove(term)

    def merge(self, other: Counts) -> None:
        """Add another window's counts (read-time merge of partitions)."""
        self.outcomes += other.outcomes
        self.known += other.known
        self.correct += other.correct
        self.reward_count += other.reward_count
        self.reward_sum += other.reward_sum
        for cell, count in other.confusion.items():
            self.confusion[cell] = self.confusion.get(cell, 0) + count
        if other.quality is not None:
            if self.quality is None:
                self.quality = Quality()
            self.quality.merge(other.quality)

    def copy(self) -> Counts:
        twin = Counts()
        twin.merge(self)
        return twin

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> Counts:
        counts = cls()
        for outcome in outcomes:
            counts.add(outcome)
        return counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        return (
            self.confusion == other.confusion
            and self.outcomes == other.outcomes
            and self.known == other.known
            and self.correct == other.correct
            and self.reward_count == other.reward_count
            and math.isclose(self.reward_sum, other.reward_sum, rel_tol=1e-12, abs_tol=1e-9)
            and _quality_list(self.quality) == _quality_list(other.quality)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Counts(outcomes={self.outcomes}, known={self.known}, correct={self.correct}, "
            f"reward={self.reward_count}/{self.reward_sum}, confusion={self.confusion})"
        )

    def to_list(self) -> list[Any]:
        return [
            self.outcomes,
            self.known,
            self.correct,
            self.reward_count,
            self.reward_sum,
            [[t, p, n] for (t, p), n in self.confusion.items()],
            _quality_list(self.quality),
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Counts:
        counts = cls()
        (
            counts.outcomes,
            counts.known,
            counts.correct,
            counts.reward_count,
            counts.reward_sum,
            cells,
            *more,
        ) = data
        counts.confusion = {(t, p): n for t, p, n in cells}
        if more and more[0] is not None:
            counts.quality = Quality.from_list(more[0])
        return counts


def _quality_list(quality: Quality | None) -> list[Any] | None:
    """A quality's plain data, ``None`` when it holds nothing (so empty equals absent)."""
    if quality is None or quality.is_empty():
        return None
    return quality.to_list()


_NO_QUALITY: Final = QualityMetrics()


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """Everything ``replay --output json`` reports for one window of one model."""

    outcomes: int
    known: int
    correct: int
    accuracy: float | None
    accuracy_ci95: tuple[float, float] | None
    labels: tuple[str, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    per_class: dict[str, ClassMetrics]
    macro: tuple[float, float, float] | None
    micro: tuple[float, float, float] | None
    weighted: tuple[float, float, float] | None
    reward_count: int
    reward_sum: float
    reward_mean: float | None
    quality: QualityMetrics = _NO_QUALITY

    def to_dict(self) -> dict[str, Any]:
        def average(prf: tuple[float, float, float] | None) -> dict[str, float | None]:
            if prf is None:
                return {"precision": None, "recall": None, "f1": None}
            return {"precision": prf[0], "recall": prf[1], "f1": prf[2]}

        return {
            "outcomes": self.outcomes,
            "known": self.known,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "accuracy_ci95": list(self.accuracy_ci95) if self.accuracy_ci95 else None,
            "labels": list(self.labels),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "per_class": {
                label: {
                    "precision": m.precision,
                    "recall": m.recall,
                    "f1": m.f1,
                    "support": m.support,
                }
                for label, m in self.per_class.items()
            },
            "macro": average(self.macro),
            "micro": average(self.micro),
            "weighted": average(self.weighted),
            "reward": {
                "count": self.reward_count,
                "sum": self.reward_sum,
                "mean": self.reward_mean,
            },
            **self.quality.to_dict(),
        }


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; ``None`` without trials.

    Chosen over the normal approximation because windows are often small
    and accuracy often near 1, where the latter leaves [0, 1].
    """
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def compute(counts: Counts, *, matrix: bool = True) -> WindowMetrics:
    """All metrics of one window, from its counts.

    Works on the sparse confusion counts: O(cells + K log K) for K classes.
    The dense K x K ``confusion_matrix`` is built only when ``matrix`` is
    true (the JSON report); otherwise it is empty.
    """
    confusion = counts.confusion
    labels = tuple(sorted({t for t, _ in confusion} | {p for _, p in confusion}))
    size = len(labels)
    true_counts: dict[str, int] = {}
    predicted_counts: dict[str, int] = {}
    hits: dict[str, int] = {}
    for (t, p), n in confusion.items():
        true_counts[t] = true_counts.get(t, 0) + n
        predicted_counts[p] = predicted_counts.get(p, 0) + n
        if t == p:
            hits[t] = n
    support = [true_counts.get(label, 0) for label in labels]
    predicted = [predicted_counts.get(label, 0) for label in labels]
    per_class: dict[str, ClassMetrics] = {}
    precisions: list[float] = []
    recalls: list[float] = []
    f1s: list[float] = []
    for i, label in enumerate(labels):
        tp = hits.get(label, 0)
        precision = _divide(tp, predicted[i])
        recall = _divide(tp, support[i])
        f1 = _divide(2 * tp, support[i] + predicted[i])
        per_class[label] = ClassMetrics(precision, recall, f1, support[i])
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    macro = micro = weighted = None
    if size:
        macro = (
            math.fsum(precisions) / size,
            math.fsum(recalls) / size,
            math.fsum(f1s) / size,
        )
        tp_all = sum(hits.values())
        pred_all = sum(predicted)
        true_all = sum(support)
        micro = (
            _divide(tp_all, pred_all),
            _divide(tp_all, true_all),
            _divide(2 * tp_all, true_all + pred_all),
        )
        weighted = (
            _divide(math.fsum(p * s for p, s in zip(precisions, support, strict=True)), true_all),
            _divide(math.fsum(r * s for r, s in zip(recalls, support, strict=True)), true_all),
            _divide(math.fsum(f * s for f, s in zip(f1s, support, strict=True)), true_all),
        )
    dense: tuple[tuple[int, ...], ...] = ()
    if matrix:
        index = {label: i for i, label in enumerate(labels)}
        rows = [[0] * size for _ in range(size)]
        for (t, p), n in confusion.items():
            rows[index[t]][index[p]] = n
        dense = tuple(tuple(row) for row in rows)
    accuracy = counts.correct / counts.known if counts.known else None
    return WindowMetrics(
        outcomes=counts.outcomes,
        known=counts.known,
        correct=counts.correct,
        accuracy=accuracy,
        accuracy_ci95=wilson_interval(counts.correct, counts.known),
        labels=labels,
        confusion_matrix=dense,
        per_class=per_class,
        macro=macro,
        micro=micro,
        weighted=weighted,
        reward_count=counts.reward_count,
        reward_sum=counts.reward_sum,
        reward_mean=counts.reward_sum / counts.reward_count if counts.reward_count else None,
        quality=_NO_QUALITY if counts.quality is None else counts.quality.result(),
    )
