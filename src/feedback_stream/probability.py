"""Probability quality: ROC AUC, log loss, Brier score, expected calibration error.

Each outcome of a model that sends scores carries a *term* (what it adds to
a window: :class:`BinaryTerm` or :class:`ProbabilityTerm`), built once when
its feedback joins; windows add terms as outcomes enter and take the same
terms back as they leave or are retracted, so every number is exact in
every window kind. Sums are fixed point (:mod:`feedback_stream._fixed`).

Definitions are scikit-learn's (1.5 and later):

* ROC AUC (``roc_auc_score``): the Mann-Whitney statistic, the share of
  (positive, negative) pairs whose positive scores higher, ties counting
  one half. Kept as twice that count (an integer) over sorted lists of the
  window's positive and negative scores (``sortedcontainers.SortedList``):
  O(log n) to add or remove a score.
* log loss (``log_loss``): mean of ``-log(p)``, ``p`` the probability given
  to the true class, clipped to ``[eps, 1 - eps]`` (``eps`` the float64
  machine epsilon).
* Brier score (``brier_score_loss``, ``scale_by_half="auto"``): binary,
  mean of ``(s - y)**2``; score rows of three or more classes, mean of
  ``sum_k (p_k - y_k)**2``; two-column rows, half that sum.
* expected calibration error: confidence (the row's top probability) in
  :data:`ECE_BINS` equal bins ``[i/10, (i+1)/10)`` (1.0 in the last), then
  ``sum_b n_b / N * |accuracy_b - mean confidence_b|`` (Naeini et al. 2015,
  Guo et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sortedcontainers import SortedList

from feedback_stream._fixed import FIXED_ONE, fixed, unfixed

__all__ = [
    "ECE_BINS",
    "EPS",
    "BinaryMetrics",
    "BinaryScores",
    "BinaryTerm",
    "ProbabilityMetrics",
    "ProbabilityScores",
    "ProbabilityTerm",
    "binary_term",
    "probability_term",
    "term_from_list",
]

EPS: Final = 2.220446049250313e-16
"""float64 machine epsilon: sklearn's clip for log loss."""

ECE_BINS: Final = 10


def _clip(p: float) -> float:
    return min(max(p, EPS), 1.0 - EPS)


@dataclass(frozen=True, slots=True)
class BinaryTerm:
    """One outcome of a binary model: its score and whether its truth is positive."""

    score: float
    positive: bool
    log_loss: int
    brier: int

    def to_list(self) -> list[Any]:
        return ["binary", self.score, self.positive]


def binary_term(score: float, positive: bool) -> BinaryTerm:
    """The term of a positive-class ``score`` in [0, 1] whose truth is ``positive``."""
    p = score if positive else 1.0 - score
    y = 1.0 if positive else 0.0
    return BinaryTerm(score, positive, fixed(-math.log(_clip(p))), fixed((score - y) ** 2))


@dataclass(frozen=True, slots=True)
class ProbabilityTerm:
    """One outcome of a model that sends a probability row (predict_proba)."""

    p_true: float
    brier_sum: float
    confidence: float
    correct: bool
    columns: int
    log_loss: int
    brier: int
    confidence_fixed: int
    bin: int

    def to_list(self) -> list[Any]:
        return ["probability", self.p_true, self.brier_sum, self.confidence, self.correct,
                self.columns]  # fmt: skip


def probability_term(row: tuple[float, ...], truth: int) -> ProbabilityTerm:
    """The term of a probability ``row`` whose true class is column ``truth``."""
    confidence = max(row)
    correct = row.index(confidence) == truth
    brier_sum = math.fsum((p - 1.0) ** 2 if k == truth else p * p for k, p in enumerate(row))
    return _probability_term(row[truth], brier_sum, confidence, correct, len(row))


def _probability_term(
    p_true: float, brier_sum: float, confidence: float, correct: bool, columns: int
) -> ProbabilityTerm:
    brier = brier_sum / 2.0 if columns == 2 else brier_sum
    return ProbabilityTerm(
        p_true,
        brier_sum,
        confidence,
        correct,
        columns,
        fixed(-math.log(_clip(p_true))),
        fixed(brier),
        fixed(confidence),
        min(int(confidence * ECE_BINS), ECE_BINS - 1),
    )


def term_from_list(data: list[Any]) -> BinaryTerm | ProbabilityTerm:
    """Rebuild a term from ``to_list`` output (snapshots)."""
    if data[0] == "binary":
        return binary_term(data[1], data[2])
    return _probability_term(data[1], data[2], data[3], data[4], data[5])


def _big(value: int) -> str:
    return str(value)  # orjson writes 64-bit integers only


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    """The binary-score numbers of one window (``None``: not defined yet)."""

    scored: int
    positives: int
    roc_auc: float | None
    log_loss: float | None
    brier: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "positives": self.positives,
            "roc_auc": self.roc_auc,
            "log_loss": self.log_loss,
            "brier": self.brier,
        }


class BinaryScores:
    """The window aggregate of :class:`BinaryTerm`: sorted scores and fixed-point sums."""

    __slots__ = ("brier", "log_loss", "negatives", "positives", "twice_u")

    def __init__(self) -> None:
        self.positives: SortedList[float] = SortedList()
        self.negatives: SortedList[float] = SortedList()
        self.twice_u = 0
        self.log_loss = 0
        self.brier = 0

    def __len__(self) -> int:
        return len(self.positives) + len(self.negatives)

    def _twice_pairs(self, score: float, positive: bool) -> int:
        """Twice the ordered (positive > negative) pairs ``score`` makes, ties counting half."""
        if positive:
            negatives = self.negatives
            below = negatives.bisect_left(score)
            return 2 * below + (negatives.bisect_right(score) - below)
        positives = self.positives
        below = positives.bisect_left(score)
        upto = positives.bisect_right(score)
        return 2 * (len(positives) - upto) + (upto - below)

    def add(self, term: BinaryTerm) -> None:
        self.twice_u += self._twice_pairs(term.score, term.positive)
        (self.positives if term.positive else self.negatives).add(term.score)
        self.log_loss += term.log_loss
        self.brier += term.brier

    def remove(self, term: BinaryTerm) -> None:
        (self.positives if term.positive else self.negatives).remove(term.score)
        self.twice_u -= self._twice_pairs(term.score, term.positive)
        self.log_loss -= term.log_loss
        self.brier -= term.brier

    def merge(self, other: BinaryScores) -> None:
        self.positives.update(other.positives)
        self.negatives.update(other.negatives)
        self.twice_u = _twice_u(self.positives, self.negatives)
        self.log_loss += other.log_loss
        self.brier += other.brier

    def copy(self) -> BinaryScores:
        twin = BinaryScores()
        twin.positives = self.positives.copy()
        twin.negatives = self.negatives.copy()
        twin.twice_u, twin.log_loss, twin.brier = self.twice_u, self.log_loss, self.brier
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinaryScores):
            return NotImplemented
        return (
            list(self.positives) == list(other.positives)
            and list(self.negatives) == list(other.negatives)
            and self.twice_u == other.twice_u
            and self.log_loss == other.log_loss
            and self.brier == other.brier
        )

    __hash__ = None  # type: ignore[assignment]

    def result(self) -> BinaryMetrics:
        n = len(self)
        p, q = len(self.positives), len(self.negatives)
        return BinaryMetrics(
            scored=n,
            positives=p,
            roc_auc=self.twice_u / (2 * p * q) if p and q else None,
            log_loss=unfixed(self.log_loss, n) if n else None,
            brier=unfixed(self.brier, n) if n else None,
        )

    def to_list(self) -> list[Any]:
        return [list(self.positives), list(self.negatives), _big(self.log_loss), _big(self.brier)]

    @classmethod
    def from_list(cls, data: list[Any]) -> BinaryScores:
        scores = cls()
        positives, negatives, log_loss, brier = data
        scores.positives.update(positives)
        scores.negatives.update(negatives)
        scores.twice_u = _twice_u(scores.positives, scores.negatives)
        scores.log_loss, scores.brier = int(log_loss), int(brier)
        return scores


def _twice_u(positives: Iterable[float], negatives: SortedList[float]) -> int:
    """Twice the Mann-Whitney U of two sorted score lists, in one merge pass."""
    total = 0
    below = upto = 0
    n = len(negatives)
    for score in positives:  # ascending
        while below < n and negatives[below] < score:
            below += 1
        if upto < below:
            upto = below
        while upto < n and negatives[upto] <= score:
            upto += 1
        total += 2 * below + (upto - below)
    return total


@dataclass(frozen=True, slots=True)
class ProbabilityMetrics:
    """The probability-row numbers of one window."""

    scored: int
    log_loss: float | None
    brier: float | None
    ece: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "log_loss": self.log_loss,
            "brier": self.brier,
            "ece": self.ece,
        }


class ProbabilityScores:
    """The window aggregate of :class:`ProbabilityTerm`: fixed-point sums and ECE bins.

    ``bins[b]`` is ``[outcomes, correct, sum of confidence (fixed point)]``.
    """

    __slots__ = ("bins", "brier", "count", "log_loss")

    def __init__(self) -> None:
        self.count = 0
        self.log_loss = 0
        self.brier = 0
        self.bins = [[0, 0, 0] for _ in range(ECE_BINS)]

    def __len__(self) -> int:
        return self.count

    def add(self, term: ProbabilityTerm) -> None:
        self.count += 1
        self.log_loss += term.log_loss
        self.brier += term.brier
        cell = self.bins[term.bin]
        cell[0] += 1
        cell[1] += term.correct
        cell[2] += term.confidence_fixed

    def remove(self, term: ProbabilityTerm) -> None:
        self.count -= 1
        self.log_loss -= term.log_loss
        self.brier -= term.brier
        cell = self.bins[term.bin]
        cell[0] -= 1
        cell[1] -= term.correct
        cell[2] -= term.confidence_fixed

    def merge(self, other: ProbabilityScores) -> None:
        self.count += other.count
        self.log_loss += other.log_loss
        self.brier += other.brier
        for mine, theirs in zip(self.bins, other.bins, strict=True):
            for i in range(3):
                mine[i] += theirs[i]

    def copy(self) -> ProbabilityScores:
        twin = ProbabilityScores()
        twin.merge(self)
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProbabilityScores):
            return NotImplemented
        return self.to_list() == other.to_list()

    __hash__ = None  # type: ignore[assignment]

    def result(self) -> ProbabilityMetrics:
        n = self.count
        if not n:
            return ProbabilityMetrics(0, None, None, None)
        gap = sum(abs(conf - correct * FIXED_ONE) for _, correct, conf in self.bins)
        return ProbabilityMetrics(
            scored=n,
            log_loss=unfixed(self.log_loss, n),
            brier=unfixed(self.brier, n),
            ece=unfixed(gap, n),
        )

    def to_list(self) -> list[Any]:
        return [
            self.count,
            _big(self.log_loss),
            _big(self.brier),
            [[c, k, _big(s)] for c, k, s in self.bins],
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> ProbabilityScores:
        scores = cls()
        count, log_loss, brier, bins = data
        scores.count, scores.log_loss, scores.brier = count, int(log_loss), int(brier)
        scores.bins = [[c, k, int(s)] for c, k, s in bins]
        return scores
