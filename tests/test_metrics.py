"""Metrics from counts equal scikit-learn's on the same outcomes."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from feedback_stream.events import ModelKey
from feedback_stream.metrics import Counts, compute, wilson_interval
from feedback_stream.outcomes import Outcome, is_conflict, pair_outcomes

KEY = ModelKey("ns", "dep", "p", "m")
LABELS = st.sampled_from(["0", "1", "2", "10", "cat", "t:2"])


def _outcome(truth: str, pred: str, seq: int) -> Outcome:
    return Outcome(KEY, "p", 0, pred, truth, truth == pred, None, 0.0, 0, 0.0, 0.0, None, seq)


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(LABELS, LABELS), min_size=1, max_size=40))
def test_compute_equals_sklearn(pairs: list[tuple[str, str]]) -> None:
    warnings.filterwarnings("ignore", message="A single label", category=UserWarning)
    counts = Counts.of(_outcome(t, p, i) for i, (t, p) in enumerate(pairs))
    metrics = compute(counts)
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    labels = sorted(set(y_true) | set(y_pred))
    assert list(metrics.labels) == labels
    assert metrics.accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert [list(r) for r in metrics.confusion_matrix] == confusion_matrix(
        y_true, y_pred, labels=labels
    ).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = metrics.per_class[label]
        assert (got.precision, got.recall, got.f1) == pytest.approx((p[i], r[i], f[i]), abs=1e-12)
        assert got.support == s[i]
    for name, prf in (
        ("macro", metrics.macro),
        ("micro", metrics.micro),
        ("weighted", metrics.weighted),
    ):
        expected = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=name, zero_division=0
        )[:3]
        assert prf == pytest.approx(expected, abs=1e-12), name


def test_counts_remove_undoes_add_and_drops_empty_cells() -> None:
    counts = Counts()
    a, b = _outcome("a", "b", 0), _outcome("a", "a", 1)
    counts.add(a)
    counts.add(b)
    counts.remove(a)
    assert counts == Counts.of([b])
    assert counts.confusion == {("a", "a"): 1}


def test_empty_window_has_nulls_not_zeros() -> None:
    metrics = compute(Counts()).to_dict()
    assert metrics["accuracy"] is None
    assert metrics["accuracy_ci95"] is None
    assert metrics["labels"] == []
    assert metrics["macro"] == {"precision": None, "recall": None, "f1": None}
    assert metrics["reward"] == {"count": 0, "sum": 0.0, "mean": None}


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.27753279986288),
        (5, 10, 0.23659309051208, 0.76340690948792),
        (10, 10, 0.72246720013712, 1.0),
        (46, 63, 0.6097009078, 0.8241615559),
    ],
)
def test_wilson_interval_known_values(successes: int, trials: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, trials)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=1e-7)


def test_wilson_interval_without_trials() -> None:
    assert wilson_interval(0, 0) is None


def test_pair_outcomes_follow_the_feedback_rules() -> None:
    def results(
        truth: tuple[str, ...] | None, reward: float | None
    ) -> list[tuple[str | None, bool | None]]:
        rows = pair_outcomes(KEY, "p", ("a", "b"), truth, reward, 2.0, 1.0, 2.0, None, 0)
        return [(o.truth, o.correct) for o in rows]

    assert results(("a", "a"), 1.0) == [("a", True), ("a", False)]
    assert results(None, 1.0) == [("a", True), ("b", True)]
    assert results(None, 0.0) == [(None, False), (None, False)]
    assert results(None, 0.5) == [(None, None), (None, None)]
    assert results(None, None) == [(None, None), (None, None)]
    rows = pair_outcomes(KEY, "p", ("a", "b"), None, 0.5, 2.0, 1.0, 2.0, None, 7)
    assert [(o.reward, o.seq) for o in rows] == [(0.5, 7), (None, 8)]


def test_conflict_is_reward_against_truth() -> None:
    assert is_conflict(("a",), ("a",), 0.0)
    assert is_conflict(("a", "b"), ("a", "a"), 1.0)
    assert not is_conflict(("a",), ("a",), 1.0)
    assert not is_conflict(("a",), ("b",), 0.5)
    assert not is_conflict(("a",), None, 0.0)
