"""The history/live overlap filter: live repeats of history parts are dropped."""

from __future__ import annotations

from feedback_stream.es import HistoryOverlap, history_identity
from feedback_stream.events import Event, EventKind, ModelKey

KEY = ModelKey("seldon", "iris", "default", "classifier")


def history(kind: EventKind, **kw: object) -> Event:
    return Event(kind, "p1", KEY, 100.0, history_identity(kind, "p1", KEY), **kw)  # type: ignore[arg-type]


def live(kind: EventKind, key: ModelKey = KEY, **kw: object) -> Event:
    return Event(kind, "p1", key, 100.5, ("io.seldon", "id-1"), **kw)  # type: ignore[arg-type]


def test_a_live_response_of_a_loaded_puid_and_model_is_a_repeat() -> None:
    overlap = HistoryOverlap()
    overlap.record(history(EventKind.RESPONSE, classes=("a",)))
    assert overlap.is_duplicate(live(EventKind.RESPONSE, classes=("a",)))
    shadow = ModelKey("seldon", "iris", "shadow", "classifier")
    assert not overlap.is_duplicate(live(EventKind.RESPONSE, shadow, classes=("a",)))
    assert not overlap.is_duplicate(live(EventKind.REQUEST))
    assert overlap.dropped == 1


def test_the_same_feedback_is_a_repeat_and_a_different_one_an_amendment() -> None:
    overlap = HistoryOverlap()
    overlap.record(history(EventKind.FEEDBACK, classes=("a",), reward=1.0))
    assert overlap.is_duplicate(live(EventKind.FEEDBACK, classes=("a",), reward=1.0))
    assert not overlap.is_duplicate(live(EventKind.FEEDBACK, classes=("b",), reward=0.0))


def test_feedback_keys_compare_on_what_both_name() -> None:
    overlap = HistoryOverlap()
    overlap.record(history(EventKind.FEEDBACK, reward=1.0))
    deployment_wide = ModelKey("seldon", "iris", "", "")
    assert overlap.is_duplicate(live(EventKind.FEEDBACK, deployment_wide, reward=1.0))
    other = ModelKey("seldon", "iris", "canary", "")
    assert not overlap.is_duplicate(live(EventKind.FEEDBACK, other, reward=1.0))


def test_only_recent_parts_are_kept_and_all_are_forgotten_later() -> None:
    overlap = HistoryOverlap(keep_after=100.0, forget_after=200.0)
    overlap.record(history(EventKind.RESPONSE, classes=("a",)))
    old = Event(EventKind.RESPONSE, "p0", KEY, 50.0, ("x",), classes=("a",))
    overlap.record(old)
    overlap.record(history(EventKind.RESPONSE, classes=("a",)))
    assert len(overlap) == 1
    assert not overlap.expire(150.0)
    assert overlap.expire(250.0)
    assert len(overlap) == 0
    assert not overlap.is_duplicate(live(EventKind.RESPONSE, classes=("a",)))
