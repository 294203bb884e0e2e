"""Scores on responses and outcomes: what a model's kind makes of its numbers.

A response's numeric rows (``Event.values``, as decoded) are read once,
by :mod:`feedback_stream.model_kinds`, into a :class:`ResponseScores`:

* ``binary``: the positive-class score of each row, and the two class
  labels ``(negative, positive)`` or the row's column labels;
* ``classification`` with probability rows (predict_proba): each row and
  its column labels;
* ``regression``: the prediction of each row.

When a feedback joins, :meth:`ResponseScores.term` turns a row and its
true class into the *term* the outcome carries into every window
(:mod:`feedback_stream.probability`, :mod:`feedback_stream.regression`);
:class:`Quality` is a window's sum of terms, read by :meth:`Quality.result`.

:func:`top_scores` is the small API for consumers that need only each
row's confidence (the top probability of a probability row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from feedback_stream.probability import (
    BinaryMetrics,
    BinaryScores,
    BinaryTerm,
    ProbabilityMetrics,
    ProbabilityScores,
    ProbabilityTerm,
    binary_term,
    probability_term,
)
from feedback_stream.probability import term_from_list as _probability_from_list
from feedback_stream.regression import (
    RegressionMetrics,
    RegressionSums,
    RegressionTerm,
    regression_term,
)

__all__ = [
    "PROBABILITY_TOLERANCE",
    "ModelKind",
    "Quality",
    "QualityMetrics",
    "ResponseScores",
    "Term",
    "is_probability_row",
    "term_from_list",
    "top_scores",
]

Term = BinaryTerm | ProbabilityTerm | RegressionTerm
"""What one outcome adds to a window's :class:`Quality`."""

PROBABILITY_TOLERANCE: Final = 1e-4
"""How far from 1 a row's sum may be for the row to count as probabilities."""


class ModelKind(StrEnum):
    """What a model's outputs mean (``kind`` in the models configuration)."""

    CLASSIFICATION = "classification"
    BINARY = "binary"
    REGRESSION = "regression"


def is_probability_row(row: Any) -> bool:
    """Whether ``row`` is a list of at least two numbers in [0, 1] that sum to 1."""
    if not isinstance(row, list | tuple) or len(row) < 2:
        return False
    for value in row:
        if type(value) is not float and type(value) is not int:
            return False
        if not 0.0 <= value <= 1.0:
            return False
    return abs(math.fsum(row) - 1.0) <= PROBABILITY_TOLERANCE


def top_scores(values: Any) -> tuple[float, ...] | None:
    """The top probability of each row, if every row is a probability row; else ``None``.

    ``values`` is a decoded response's ``Event.values``. A binary score
    ``s`` (one number per row, in [0, 1]) gives ``max(s, 1 - s)``.
    """
    if not isinstance(values, list) or not values:
        return None
    tops: list[float] = []
    for row in values:
        if isinstance(row, list) and len(row) == 1:
            row = row[0]
        if type(row) is float or type(row) is int:
            if not 0.0 <= row <= 1.0:
                return None
            tops.append(float(max(row, 1.0 - row)))
        elif is_probability_row(row):
            tops.append(float(max(row)))
        else:
            return None
    return tuple(tops)


@dataclass(frozen=True, slots=True)
class ResponseScores:
    """The scores of one response, read in its model's kind.

    ``values``: per row, the positive-class score (binary) or the
    prediction (regression); ``rows``: per row, the probability row
    (classification). ``labels``: binary, ``(negative, positive)``;
    classification, the class of each column.
    """

    kind: ModelKind
    values: tuple[float, ...] = ()
    rows: tuple[tuple[float, ...], ...] = ()
    labels: tuple[str, ...] = ()

    def term(self, row: int, truth: str | None) -> Term | None:
        """The term of ``row`` given its true class (a number's text for regression).

        ``None`` when the truth is unknown or does not fit: a binary truth
        that is neither label, a class that is no column, a regression truth
        that is not a number.
        """
        if truth is None:
            return None
        kind = self.kind
        if kind is ModelKind.BINARY:
            negative, positive = self.labels
            if truth == positive:
                return binary_term(self.values[row], True)
            if truth == negative:
                return binary_term(self.values[row], False)
            return None
        if kind is ModelKind.CLASSIFICATION:
            try:
                column = self.labels.index(truth)
            except ValueError:
                return None
            return probability_term(self.rows[row], column)
        try:
            return regression_term(self.values[row], float(truth))
        except ValueError:
            return None

    def confidence(self, row: int) -> float:
        """The top score of ``row``: its top probability, or ``max(s, 1 - s)`` (binary)."""
        if self.kind is ModelKind.CLASSIFICATION:
            return max(self.rows[row])
        score = self.values[row]
        return max(score, 1.0 - score)

    def to_list(self) -> list[Any]:
        return [self.kind.value, list(self.values), [list(r) for r in self.rows], list(self.labels)]

    @classmethod
    def from_list(cls, data: list[Any]) -> ResponseScores:
        kind, values, rows, labels = data
        return cls(ModelKind(kind), tuple(values), tuple(tuple(r) for r in rows), tuple(labels))


def term_from_list(data: list[Any]) -> Term:
    """Rebuild a term from its ``to_list`` output (snapshots)."""
    if data[0] == "regression":
        return regression_term(data[1], data[2])
    return _probability_from_list(data)


@dataclass(frozen=True, slots=True)
class QualityMetrics:
    """The score-based numbers of one window, per kind of term it holds."""

    binary: BinaryMetrics | None = None
    probability: ProbabilityMetrics | None = None
    regression: RegressionMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "binary": None if self.binary is None else self.binary.to_dict(),
            "probability": None if self.probability is None else self.probability.to_dict(),
            "regression": None if self.regression is None else self.regression.to_dict(),
        }


class Quality:
    """A window's sums of terms, one aggregate per kind of term (made when first needed)."""

    __slots__ = ("binary", "probability", "regression")

    def __init__(self) -> None:
        self.binary: BinaryScores | None = None
        self.probability: ProbabilityScores | None = None
        self.regression: RegressionSums | None = None

    def add(self, term: Term) -> None:
        if type(term) is BinaryTerm:
            binary = self.binary
            if binary is None:
                binary = self.binary = BinaryScores()
            binary.add(term)
        elif type(term) is ProbabilityTerm:
            probability = self.probability
            if probability is None:
                probability = self.probability = ProbabilityScores()
            probability.add(term)
        else:
            regression = self.regression
            if regression is None:
                regression = self.regression = RegressionSums()
            regression.add(term)  # type: ignore[arg-type]

    def remove(self, term: Term) -> None:
        if type(term) is BinaryTerm:
            assert self.binary is not None
            self.binary.remove(term)
        elif type(term) is ProbabilityTerm:
            assert self.probability is not None
            self.probability.remove(term)
        else:
            assert self.regression is not None
            self.regression.remove(term)  # type: ignore[arg-type]

    def merge(self, other: Quality) -> None:
        if other.binary is not None:
            if self.binary is None:
                self.binary = other.binary.copy()
            else:
                self.binary.merge(other.binary)
        if other.probability is not None:
            if self.probability is None:
                self.probability = other.probability.copy()
            else:
                self.probability.merge(other.probability)
        if other.regression is not None:
            if self.regression is None:
                self.regression = other.regression.copy()
            else:
                self.regression.merge(other.regression)

    def copy(self) -> Quality:
        twin = Quality()
        twin.merge(self)
        return twin

    def is_empty(self) -> bool:
        return not (self.binary or self.probability or self.regression)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quality):
            return NotImplemented
        return self.to_list() == other.to_list()

    __hash__ = None  # type: ignore[assignment]

    def result(self) -> QualityMetrics:
        """The numbers of each kind of term the window holds (``None`` for kinds it has none of)."""
        binary, probability, regression = self.binary, self.probability, self.regression
        return QualityMetrics(
            binary=binary.result() if binary else None,
            probability=probability.result() if probability else None,
            regression=regression.result() if regression else None,
        )

    def to_list(self) -> list[Any]:
        """Plain data; an aggregate that has emptied is written as absent."""
        binary, probability, regression = self.binary, self.probability, self.regression
        return [
            binary.to_list() if binary else None,
            probability.to_list() if probability else None,
            regression.to_list() if regression else None,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Quality:
        quality = cls()
        binary, probability, regression = data
        if binary is not None:
            quality.binary = BinaryScores.from_list(binary)
        if probability is not None:
            quality.probability = ProbabilityScores.from_list(probability)
        if regression is not None:
            quality.regression = RegressionSums.from_list(regression)
        return quality
