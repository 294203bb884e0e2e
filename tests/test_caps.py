"""Tracking caps: models and classes fold into one overflow, pending puids are evicted.

Below the caps every number is what scikit-learn says; past them memory and
a reader's work stay bounded, accuracy stays exact, and every fold and
eviction is counted.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from feedback_stream.caps import OTHER_CLASS, OVERFLOW_KEY, Caps
from feedback_stream.changelog import ChangeTracker, Restorer
from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.metrics import Counts, compute
from feedback_stream.snapshot import dumps

KEY = ModelKey("ns", "dep", "default", "clf")


def _pair(
    engine: Engine, puid: str, key: ModelKey, predicted: str, truth: str, at: float = 100.0
) -> None:
    position = SourcePosition("t", 0, 0)
    response = Event(EventKind.RESPONSE, puid, key, at, ("r", puid), (predicted,), None, position)
    feedback = Event(EventKind.FEEDBACK, puid, key, at + 1, ("f", puid), (truth,), None, position)
    engine.process_event(response)
    engine.process_event(feedback)


def _response(engine: Engine, puid: str, at: float, partition: int = 0) -> None:
    position = SourcePosition("t", partition, 0)
    engine.process_event(
        Event(EventKind.RESPONSE, puid, KEY, at, ("r", puid), ("a",), None, position)
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=80))
def test_below_the_class_cap_numbers_are_sklearn_exact(pairs: list[tuple[int, int]]) -> None:
    engine = Engine(("total",), caps=Caps(max_models=2, max_classes=8))
    for i, (truth, predicted) in enumerate(pairs):
        _pair(engine, f"p{i}", KEY, f"c{predicted}", f"c{truth}")
    m = engine.metrics(KEY, "total")
    y_true = [f"c{t}" for t, _ in pairs]
    y_pred = [f"c{p}" for _, p in pairs]
    assert m.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    for average, mine in (("macro", m.macro), ("micro", m.micro), ("weighted", m.weighted)):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=0
        )
        assert mine == pytest.approx((p, r, f))
    assert engine.caps.folded_classes == 0


def test_classes_past_the_cap_fold_into_other_and_accuracy_stays_exact() -> None:
    engine = Engine(("total", "10"), caps=Caps(max_models=5, max_classes=3))
    truths = [f"c{i}" for i in range(10)]
    for i, truth in enumerate(truths):
        predicted = truth if i % 2 == 0 else "c0"
        _pair(engine, f"p{i}", KEY, predicted, truth)
    m = engine.metrics(KEY, "total")
    assert set(m.labels) == {"c0", "c1", "c2", OTHER_CLASS}
    assert (m.known, m.correct) == (10, 5)  # correctness is decided before folding
    assert engine.caps.folded_classes > 0
    counters = engine.model_counters(KEY)
    assert {c for cell in counters.confusion_applied for c in cell} <= set(m.labels)


def test_an_allowlisted_class_is_always_tracked() -> None:
    engine = Engine(("total",), caps=Caps(max_classes=1, class_allowlist=["vip"]))
    _pair(engine, "p1", KEY, "a", "a")
    _pair(engine, "p2", KEY, "b", "b")
    _pair(engine, "p3", KEY, "vip", "vip")
    assert set(engine.metrics(KEY, "total").labels) == {"a", OTHER_CLASS, "vip"}


def test_models_past_the_cap_fold_into_one_overflow_model() -> None:
    engine = Engine(("total", "5m"), caps=Caps(max_models=10, max_classes=5))
    for i in range(2_000):
        key = ModelKey("ns", f"dep{i}", "default", "clf")
        _pair(engine, f"p{i}", key, "a", "a" if i % 4 else "b")
    keys = engine.model_keys()
    assert len(keys) == 11
    assert OVERFLOW_KEY in keys
    assert len(engine.states[ALL_PARTITIONS].models) == 11
    assert engine.caps.tracked_models == 10
    assert engine.model_counters(OVERFLOW_KEY).responses == 1990
    overflow = engine.metrics(OVERFLOW_KEY, "total")
    assert overflow.known == 1990
    assert overflow.correct == sum(1 for i in range(10, 2000) if i % 4)


def test_a_restored_snapshot_keeps_what_it_tracked() -> None:
    engine = Engine(("total",), caps=Caps(max_models=2, max_classes=2))
    for i in range(3):
        _pair(engine, f"p{i}", ModelKey("ns", f"d{i}", "", "m"), "a", "a")
    data = dumps(engine.state(ALL_PARTITIONS))
    restored = Engine(("total",), caps=Caps(max_models=2, max_classes=2))
    restored.restore(ALL_PARTITIONS, data)
    assert restored.model_keys() == engine.model_keys()
    _pair(restored, "p9", ModelKey("ns", "d9", "", "m"), "a", "a")
    assert len(restored.model_keys()) == 3  # the new model folds into the overflow


_LABELS = st.sampled_from(["a", "b", "c", "d", "e"])


def _capped(max_classes: int, allowlist: tuple[str, ...]) -> Engine:
    return Engine(("total", "3"), caps=Caps(max_classes=max_classes, class_allowlist=allowlist))


def _outcome(engine: Engine, i: int, predicted: str, truth: str | None) -> None:
    """A response and its feedback: a true class, or only a reward (no true class)."""
    position = SourcePosition("t", 0, i)
    puid = f"p{i}"
    engine.process_event(
        Event(EventKind.RESPONSE, puid, KEY, 2.0 * i, ("r", puid), (predicted,), None, position)
    )
    classes = None if truth is None else (truth,)
    reward = 0.5 if truth is None else None
    engine.process_event(
        Event(EventKind.FEEDBACK, puid, KEY, 2.0 * i + 1, ("f", puid), classes, reward, position)
    )


def _from_changelog(tracker: ChangeTracker, fresh: Engine) -> Engine:
    restorer = Restorer("t/0")
    for key, value in tracker.changes():
        if value is not None:
            restorer.add(key, value)
    state, _ = restorer.build(fresh.specs, fresh.sequence, fresh.ttl, fresh.time_basis)
    fresh.install(ALL_PARTITIONS, state)
    return fresh


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.tuples(_LABELS, st.one_of(st.none(), _LABELS)), min_size=1, max_size=12),
    cut=st.integers(0, 12),
    max_classes=st.integers(1, 3),
    allowlist=st.sampled_from([(), ("b",), ("a", "c")]),
    changelog=st.booleans(),
)
def test_a_restored_state_folds_the_classes_an_uninterrupted_run_folds(
    outcomes: list[tuple[str, str | None]],
    cut: int,
    max_classes: int,
    allowlist: tuple[str, ...],
    changelog: bool,
) -> None:
    """Live, the class cap tracks every class an outcome names, the predicted class of a
    reward-only outcome too, and allowlisted classes take no place; a state restored
    from a snapshot or its changelog tracks the same classes."""
    cut = min(cut, len(outcomes))
    plain = _capped(max_classes, allowlist)
    for i, (predicted, truth) in enumerate(outcomes):
        _outcome(plain, i, predicted, truth)
    before = _capped(max_classes, allowlist)
    tracker = ChangeTracker("t/0", before.state(ALL_PARTITIONS))
    for i, (predicted, truth) in enumerate(outcomes[:cut]):
        _outcome(before, i, predicted, truth)
    fresh = _capped(max_classes, allowlist)
    if changelog:
        restored = _from_changelog(tracker, fresh)
    else:
        fresh.restore(ALL_PARTITIONS, before.snapshot(ALL_PARTITIONS))
        restored = fresh
    for i, (predicted, truth) in enumerate(outcomes[cut:], start=cut):
        _outcome(restored, i, predicted, truth)
    assert restored.caps.folded_classes == plain.caps.folded_classes
    assert restored.report(plain.clock) == plain.report(plain.clock)


def test_at_the_pending_cap_the_oldest_puids_are_evicted_and_counted() -> None:
    engine = Engine(("total",), ttl=3600.0, caps=Caps(max_pending=100))
    for i in range(1_000):
        _response(engine, f"p{i}", 1000.0 + i)
    assert engine.pending == 100
    assert engine.caps.evicted["response"] == 900
    held = engine.states[ALL_PARTITIONS].join._entries
    assert sorted(held, key=lambda p: int(p[1:]))[0] == "p900"  # the newest stayed


def test_the_pending_cap_holds_across_partition_states() -> None:
    engine = Engine(("total",), route="partition", caps=Caps(max_pending=50))
    for i in range(600):
        _response(engine, f"p{i}", 1000.0 + i, partition=i % 3)
    assert engine.pending == 50
    assert engine.caps.evicted["response"] == 550


def test_sparse_compute_equals_the_dense_one_and_the_matrix_is_optional() -> None:
    counts = Counts()
    counts.confusion = {("a", "a"): 3, ("a", "b"): 1, ("c", "b"): 2}
    counts.known = counts.outcomes = 6
    counts.correct = 3
    full = compute(counts)
    light = compute(counts, matrix=False)
    assert full.confusion_matrix == ((3, 1, 0), (0, 0, 0), (0, 2, 0))
    assert light.confusion_matrix == ()
    assert (light.per_class, light.macro, light.micro, light.weighted) == (
        full.per_class,
        full.macro,
        full.micro,
        full.weighted,
    )
