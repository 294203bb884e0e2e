"""Estimated accuracy of unlabelled traffic (CBPE) and the calibration check.

Synthetic streams: each row has a top score ``s``; its label is right with
probability ``s`` (calibrated) or ``s ** 4`` (overconfident). The estimate
must cover the true accuracy of the held-back labels at its stated level
on calibrated streams, and the calibration check on the labelled part
must tell the two streams apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from feedback_stream.cbpe import (
    ConfidenceSums,
    calibration,
    estimate,
    pending_windows,
)
from feedback_stream.engine import Engine
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.model_kinds import ModelKinds
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


def _engine_stream(
    seed: int, n: int, power: float, labelled_share: float
) -> tuple[Engine, float, float]:
    """n responses of a declared classification model with probability rows; a share
    gets feedback. Returns the engine, the true accuracy of the held-back rows and the
    mean top score of those rows."""
    rng = np.random.default_rng(seed)
    kinds = ModelKinds.parse({"model": [{"deployment": "dep", "kind": "classification"}]})
    engine = Engine(["total", "60s", "100"], ttl=10**6, kinds=kinds)
    held_right, held_top = [], []
    for i in range(n):
        top = float(rng.uniform(0.4, 1.0))
        rest = (1.0 - top) / 2
        row = [top, rest, 1.0 - top - rest]
        right = bool(rng.random() < top**power)
        truth = "a" if right else "b"
        at = 1000.0 + i
        engine.process_event(
            Event(
                EventKind.RESPONSE, f"p{i}", KEY, at, ("r", str(i)),
                classes=("a",), names=("a", "b", "c"), values=[row],
            )
        )  # fmt: skip
        if rng.random() < labelled_share:
            engine.process_event(
                Event(
                    EventKind.FEEDBACK, f"p{i}", ModelKey("ns", "dep"), at + 1, ("f", str(i)),
                    classes=(truth,), names=("a", "b", "c"),
                )
            )  # fmt: skip
        else:
            held_right.append(right)
            held_top.append(top)
    return engine, float(np.mean(held_right)), float(np.mean(held_top))


def test_through_the_engine_a_calibrated_model_is_estimated_within_its_error() -> None:
    covered = 0
    for seed in range(20):
        engine, truth, mean_top = _engine_stream(seed, 400, 1.0, 0.5)
        window = engine.unlabelled()[KEY]["total"]
        estimated = window["estimated_accuracy"]
        assert estimated["accuracy"] == pytest.approx(mean_top, abs=1e-12)
        low, high = estimated["accuracy_ci95"]
        covered += low <= truth <= high
        assert window["calibration"]["rows"] + estimated["rows"] == 400
    assert covered >= 17  # nominal 19 of 20


def test_through_the_engine_an_overconfident_model_is_flagged() -> None:
    engine, truth, _ = _engine_stream(7, 600, 4.0, 0.5)
    report = engine.report()
    (model,) = report["models"]
    total = model["windows"]["total"]
    assert total["calibration"]["calibrated"] is False
    assert total["calibration"]["gap"] < -0.1
    low, high = total["estimated_accuracy"]["accuracy_ci95"]
    assert not low <= truth <= high  # the estimate is off, and the check said so
    # The count window holds the newest 100 pending rows, the time window those of the last 60 s.
    assert model["windows"]["100"]["estimated_accuracy"]["rows"] == 100
    assert model["windows"]["60s"]["estimated_accuracy"]["rows"] <= 60
    assert model["windows"]["60s"]["label_delay_s"] == {"p50": 1.0, "p90": 1.0, "p99": 1.0}
