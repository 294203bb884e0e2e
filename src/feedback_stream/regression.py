"""Regression quality: MAE, MSE, RMSE, R², mean error (bias) and MAPE.

Every number is a ratio of sums that a window adds to and takes back from
exactly: predictions and truths are fixed point integers (multiples of
2**-64, :mod:`feedback_stream._fixed`), errors and squares are computed on
those integers, so a sum after any sequence of additions and retractions
equals the sum of the outcomes the window holds, bit for bit. A float of
magnitude 2**-12 or more is exact in fixed point; finer digits of smaller
values are truncated to multiples of 2**-64 (5.4e-20).

Definitions are scikit-learn's (``mean_absolute_error``,
``mean_squared_error``, ``root_mean_squared_error``, ``r2_score`` with
``force_finite=True``, ``mean_absolute_percentage_error``); the error is
``prediction - truth``, so a positive mean error means over-prediction.
MAPE is reported only while no truth in the window is 0 (scikit-learn
would divide by machine epsilon and report about 1e15); the window's count
of zero truths says why it is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from feedback_stream._fixed import FIXED_ONE, fixed, unfixed

__all__ = [
    "MAX_MAGNITUDE",
    "RegressionMetrics",
    "RegressionSums",
    "RegressionTerm",
    "regression_term",
]

_EPS: Final = 2.220446049250313e-16
"""sklearn's floor for a MAPE denominator (float64 machine epsilon)."""

MAX_MAGNITUDE: Final = 1e200
"""Predictions and truths beyond this magnitude are refused (squares would overflow floats)."""


@dataclass(frozen=True, slots=True)
class RegressionTerm:
    """One regression outcome: its prediction and truth, and what it adds to sums."""

    prediction: float
    truth: float
    error: int
    truth_fixed: int
    ape: int | None

    def to_list(self) -> list[Any]:
        return ["regression", self.prediction, self.truth]


def regression_term(prediction: float, truth: float) -> RegressionTerm:
    """The term of one (prediction, truth) pair; both finite and within :data:`MAX_MAGNITUDE`.

    Raises:
        ValueError: a value is not finite or is too large.
    """
    for value in (prediction, truth):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"{value!r} is not a finite number within ±{MAX_MAGNITUDE:g}")
    truth_fixed = fixed(truth)
    ape = None if truth == 0.0 else fixed(abs(prediction - truth) / max(abs(truth), _EPS))
    return RegressionTerm(prediction, truth, fixed(prediction) - truth_fixed, truth_fixed, ape)


@dataclass(frozen=True, slots=True)
class RegressionMetrics:
    """The regression numbers of one window (``None``: not defined for it)."""

    scored: int
    mae: float | None
    mse: float | None
    rmse: float | None
    r2: float | None
    mean_error: float | None
    mape: float | None
    zero_truths: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "mae": self.mae,
            "mse": self.mse,
            "rmse": self.rmse,
            "r2": self.r2,
            "mean_error": self.mean_error,
            "mape": self.mape,
            "zero_truths": self.zero_truths,
        }


_SUMS_FIELDS: Final = ("abs_error", "ape", "count", "error", "error_sq", "truth", "truth_sq",
                      "zero_truths")  # fmt: skip
"""The attributes of :class:`RegressionSums`, in dump order (its ``__slots__``)."""


class RegressionSums:
    """The window aggregate of :class:`RegressionTerm`: exact integer sums.

    ``error_sq`` and ``truth_sq`` are in units of 2**-128.
    """

    __slots__ = ("abs_error", "ape", "count", "error", "error_sq", "truth", "truth_sq",
                 "zero_truths")  # fmt: skip

    def __init__(self) -> None:
        self.count = 0
        self.error = 0
        self.abs_error = 0
        self.error_sq = 0
        self.truth = 0
        self.truth_sq = 0
        self.ape = 0
        self.zero_truths = 0

    def __len__(self) -> int:
        return self.count

    def add(self, term: RegressionTerm) -> None:
        error, truth = term.error, term.truth_fixed
        self.count += 1
        self.error += error
        self.abs_error += abs(error)
        self.error_sq += error * error
        self.truth += truth
        self.truth_sq += truth * truth
        if term.ape is None:
            self.zero_truths += 1
        else:
            self.ape += term.ape

    def remove(self, term: RegressionTerm) -> None:
        error, truth = term.error, term.truth_fixed
        self.count -= 1
        self.error -= error
        self.abs_error -= abs(error)
        self.error_sq -= error * error
        self.truth -= truth
        self.truth_sq -= truth * truth
        if term.ape is None:
            self.zero_truths -= 1
        else:
            self.ape -= term.ape

    def merge(self, other: RegressionSums) -> None:
        for name in _SUMS_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def copy(self) -> RegressionSums:
        twin = RegressionSums()
        twin.merge(self)
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegressionSums):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _SUMS_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def result(self) -> RegressionMetrics:
        n = self.count
        if not n:
            return RegressionMetrics(0, None, None, None, None, None, None, 0)
        mse = self.error_sq / (n * FIXED_ONE * FIXED_ONE)
        # n * SS_tot and n * SS_res, both exact integers in units of 2**-128.
        total = n * self.truth_sq - self.truth * self.truth
        residual = n * self.error_sq
        r2: float | None
        if n < 2:
            r2 = None
        elif total == 0:
            r2 = 1.0 if residual == 0 else 0.0
        else:
            r2 = 1.0 - residual / total
        return RegressionMetrics(
            scored=n,
            mae=unfixed(self.abs_error, n),
            mse=mse,
            rmse=math.sqrt(mse),
            r2=r2,
            mean_error=unfixed(self.error, n),
            mape=None if self.zero_truths else unfixed(self.ape, n),
            zero_truths=self.zero_truths,
        )

    def to_list(self) -> list[Any]:
        return [str(getattr(self, name)) for name in _SUMS_FIELDS]

    @classmethod
    def from_list(cls, data: list[Any]) -> RegressionSums:
        sums = cls()
        for name, value in zip(_SUMS_FIELDS, data, strict=True):
            setattr(sums, name, int(value))
        return sums
