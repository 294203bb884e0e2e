"""Estimated accuracy of unlabelled traffic (CBPE) and the calibration check.

Synthetic streams: each row has a top score ``s``; its label is right with
probability ``s`` (calibrated) or ``s ** 4`` (overconfident). The estimate
must cover the true accuracy of the held-back labels at its stated level
on calibrated streams, and the calibration check on the labelled part
must tell the two streams apart.
"""

from __future__ import annotations

import numpy as np

from feedback_stream.cbpe import (
    ConfidenceSums,
    calibration,
    estimate,
    pending_windows,
)
from feedback_stream.events import ModelKey
from feedback_stream.probability import ProbabilityScores, probability_term
from feedback_stream.windows import WindowSpec

KEY = ModelKey("ns", "dep", "default", "m")


def _stream(rng: np.random.Generator, n: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Top scores of 3-class rows and whether each row's prediction is right."""
    scores = rng.uniform(0.4, 1.0, n)
    right = rng.random(n) < scores**power
    return scores, right


def _labelled(scores: np.ndarray, right: np.ndarray) -> ProbabilityScores:
    sums = ProbabilityScores()
    for s, ok in zip(scores, right, strict=True):
        rest = (1.0 - s) / 2
        row = (float(s), rest, 1.0 - float(s) - rest)
        sums.add(probability_term(row, 0 if ok else 1))
    return sums


def test_the_estimate_covers_the_held_back_accuracy_on_calibrated_scores() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    runs = 300
    for _ in range(runs):
        scores, right = _stream(rng, 500, 1.0)
        sums = ConfidenceSums()
        for s in scores:
            sums.add(float(s))
        result = estimate(sums)
        assert result is not None
        low, high = result.accuracy_ci95
        covered += low <= right.mean() <= high
        assert abs(result.accuracy - scores.mean()) < 1e-9
    # Nominal 95 %; 300 runs leave about 1.3 % of sampling error.
    assert 0.91 <= covered / runs <= 0.99


def test_the_estimate_misses_on_overconfident_scores_and_calibration_says_so() -> None:
    rng = np.random.default_rng(2)
    flagged_calibrated = flagged_overconfident = 0
    missed = 0
    runs = 100
    for _ in range(runs):
        scores, right = _stream(rng, 1000, 1.0)
        check = calibration(_labelled(scores, right))
        assert check is not None
        assert check.rows == 1000
        assert abs(check.observed_accuracy - right.mean()) < 1e-12
        assert abs(check.mean_confidence - scores.mean()) < 1e-9
        flagged_calibrated += not check.calibrated

        scores, right = _stream(rng, 1000, 4.0)
        check = calibration(_labelled(scores, right))
        assert check is not None
        flagged_overconfident += not check.calibrated
        assert check.gap < 0  # observed below the scores' promise
        sums = ConfidenceSums()
        for s in scores:
            sums.add(float(s))
        result = estimate(sums)
        assert result is not None
        low, high = result.accuracy_ci95
        missed += not low <= right.mean() <= high
    assert flagged_calibrated / runs <= 0.1
    assert flagged_overconfident / runs >= 0.95
    assert missed / runs >= 0.95


def test_nothing_pending_or_labelled_gives_no_estimate() -> None:
    assert estimate(ConfidenceSums()) is None
    assert calibration(None) is None
    assert calibration(ProbabilityScores()) is None


def test_each_window_holds_its_pending_rows() -> None:
    other = ModelKey("ns", "dep", "shadow", "m")
    pending = [
        (KEY, 100.0, (0.9,)),
        (KEY, 150.0, (0.6, 0.8)),
        (KEY, 200.0, (0.7,)),
        (other, 199.5, (0.5,)),
        (KEY, 260.0, (0.99,)),  # after the clock: not in the time window yet
    ]
    specs = [WindowSpec.parse(w) for w in ("total", "60s", "2")]
    windows = pending_windows(pending, specs, now=200.0)
    mine = windows[KEY]
    assert mine["total"].rows == 5
    assert abs(mine["total"].confidence - (0.9 + 0.6 + 0.8 + 0.7 + 0.99)) < 1e-12
    assert mine["60s"].rows == 3  # 150 and 200: (140, 200]
    assert abs(mine["60s"].confidence - (0.6 + 0.8 + 0.7)) < 1e-12
    assert mine["2"].rows == 2  # the newest two rows: 260's and 200's
    assert abs(mine["2"].confidence - (0.99 + 0.7)) < 1e-12
    assert windows[other]["60s"].rows == 1
