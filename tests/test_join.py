"""The join store, as tables of events and what each one must do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import EventStatus, JoinResult, JoinStore, identity_hash
from feedback_stream.outcomes import TimeBasis

A = ModelKey("ns", "dep", "default", "a")
B = ModelKey("ns", "dep", "default", "b")
SHADOW = ModelKey("ns", "dep", "shadow", "a")
ANY = ModelKey("ns", "dep", "", "")

_ids = iter(range(1_000_000))


def response(puid: str, time: float, classes: tuple[str, ...], key: ModelKey = A) -> Event:
    return Event(EventKind.RESPONSE, puid, key, time, ("resp", str(next(_ids))), classes=classes)


def feedback(
    puid: str,
    time: float,
    truth: tuple[str, ...] | None = None,
    reward: float | None = None,
    key: ModelKey = ANY,
    ident: str | None = None,
) -> Event:
    identity = ("fb", ident if ident is not None else str(next(_ids)))
    return Event(EventKind.FEEDBACK, puid, key, time, identity, classes=truth, reward=reward)


def request(puid: str, time: float, key: ModelKey = A) -> Event:
    return Event(EventKind.REQUEST, puid, key, time, ("req", str(next(_ids))))


def summary(result: JoinResult) -> dict[str, Any]:
    return {
        "status": result.status.value,
        "retracted": [(o.key.model, o.row, o.truth, o.correct) for o in result.retracted],
        "applied": [(o.key.model, o.row, o.truth, o.correct) for o in result.applied],
    }


def test_feedback_before_response_joins_when_the_response_comes() -> None:
    store = JoinStore()
    assert summary(store.add(feedback("p", 2.0, truth=("x",)))) == {
        "status": "accepted",
        "retracted": [],
        "applied": [],
    }
    result = store.add(response("p", 1.0, ("x",)))
    assert summary(result)["applied"] == [("a", 0, "x", True)]
    assert result.labelled == ((A, 1.0),)


def test_the_same_event_twice_counts_once() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x",)))
    first = feedback("p", 2.0, reward=1.0, ident="same")
    assert len(store.add(first).applied) == 1
    again = store.add(feedback("p", 2.0, reward=1.0, ident="same"))
    assert again.status is EventStatus.DUPLICATE
    assert again.applied == again.retracted == ()


def test_latest_feedback_time_wins_and_a_late_older_one_changes_nothing() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x", "y")))
    store.add(feedback("p", 5.0, truth=("x", "x")))
    newer = store.add(feedback("p", 9.0, truth=("y", "y")))
    assert newer.status is EventStatus.AMENDED
    assert summary(newer)["retracted"] == [("a", 0, "x", True), ("a", 1, "x", False)]
    assert summary(newer)["applied"] == [("a", 0, "y", False), ("a", 1, "y", True)]
    older = store.add(feedback("p", 7.0, truth=("x", "y")))
    assert summary(older) == {"status": "accepted", "retracted": [], "applied": []}


def test_equal_times_tie_break_by_identity_whatever_the_order() -> None:
    winners = set()
    for order in ((0, 1), (1, 0)):
        store = JoinStore()
        store.add(response("p", 1.0, ("x",)))
        tied = [
            feedback("p", 5.0, truth=("x",), ident="one"),
            feedback("p", 5.0, truth=("z",), ident="two"),
        ]
        for index in order:
            store.add(tied[index])
        winners.add(tuple(o.truth for o in store.held_outcomes()))
    expected = "z" if identity_hash(("fb", "two")) > identity_hash(("fb", "one")) else "x"
    assert winners == {(expected,)}


def test_feedback_naming_a_model_joins_only_that_response() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x",), key=A))
    store.add(response("p", 1.0, ("y",), key=B))
    store.add(response("p", 1.0, ("x",), key=SHADOW))
    named = store.add(feedback("p", 2.0, truth=("x",), key=ModelKey("ns", "dep", "default", "b")))
    assert summary(named)["applied"] == [("b", 0, "x", False)]
    by_predictor = store.add(
        feedback("p", 3.0, reward=1.0, key=ModelKey("ns", "dep", "shadow", ""))
    )
    assert [(o.key, o.correct) for o in by_predictor.applied] == [(SHADOW, True)]
    everyone = store.add(feedback("p", 4.0, reward=0.0))
    assert sorted(o.key.model + o.key.predictor for o in everyone.applied) == [
        "adefault",
        "ashadow",
        "bdefault",
    ]
    assert len(everyone.retracted) == 2


def test_row_mismatch_is_an_invalid_pair_reported_once() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x", "y")))
    result = store.add(feedback("p", 2.0, truth=("x",)))
    assert result.applied == ()
    assert [e.code for e in result.errors] == ["row_mismatch"]
    assert "1 truth rows" in result.errors[0].reason
    assert store.add(feedback("p", 3.0, reward=1.0)).errors == ()


def test_a_mismatched_amendment_leaves_the_valid_outcome() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x",)))
    store.add(feedback("p", 2.0, truth=("x",)))
    result = store.add(feedback("p", 3.0, truth=("x", "y")))
    assert result.retracted == result.applied == ()
    assert [e.code for e in result.errors] == ["row_mismatch"]


def test_earliest_response_per_model_wins_in_either_order() -> None:
    late = Event(EventKind.RESPONSE, "p", A, 1.0, ("resp", "late"), classes=("x",))
    early = Event(EventKind.RESPONSE, "p", A, 0.5, ("resp", "early"), classes=("y",))
    for first, second in ((late, early), (early, late)):
        store = JoinStore()
        store.add(feedback("p", 2.0, reward=1.0))
        counted = store.add(first).responses + store.add(second).responses
        assert counted == (A,)  # a retry of the same puid is not a second response
        assert [o.predicted for o in store.held_outcomes()] == ["y"]


def test_a_retry_arriving_after_the_feedback_replaces_the_outcome() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("x",)))
    store.add(feedback("p", 2.0, reward=1.0))
    retry = store.add(response("p", 0.5, ("y",)))
    assert [o.predicted for o in retry.retracted] == ["x"]
    assert [o.predicted for o in retry.applied] == ["y"]
    assert retry.labelled == ()  # the (puid, model) was labelled already


def test_conflict_is_reported_per_pair() -> None:
    store = JoinStore()
    store.add(response("p", 1.0, ("t:2",)))
    result = store.add(feedback("p", 2.0, truth=("t:2",), reward=0.0))
    assert result.conflicts == (A,)
    assert [o.correct for o in result.applied] == [True]


def test_request_time_basis_uses_the_request_and_retimes_when_it_comes_late() -> None:
    store = JoinStore(time_basis=TimeBasis.REQUEST)
    store.add(response("p", 10.0, ("x",)))
    first = store.add(feedback("p", 20.0, reward=1.0))
    assert [o.time for o in first.applied] == [10.0]
    late = store.add(request("p", 9.0))
    assert [o.time for o in late.retracted] == [10.0]
    assert [(o.time, o.request_time) for o in late.applied] == [(9.0, 9.0)]
    assert late.status is EventStatus.ACCEPTED
    other = store.add(request("p", 8.0, key=B))
    assert other.applied == ()  # a request of the same model is preferred


def test_expiry_counts_the_parts_that_never_joined() -> None:
    store = JoinStore(ttl=10.0)
    store.add(request("lonely", 0.0))
    store.add(response("lonely", 0.5, ("x",)))
    store.add(feedback("orphan", 1.0, reward=1.0))
    store.add(response("joined", 1.0, ("x",)))
    store.add(feedback("joined", 2.0, reward=1.0))
    assert store.pending == 3
    assert store.expire(10.5) == {
        EventKind.REQUEST: 0,
        EventKind.RESPONSE: 0,
        EventKind.FEEDBACK: 0,
    }
    expired = store.expire(12.5)
    assert expired == {EventKind.REQUEST: 1, EventKind.RESPONSE: 1, EventKind.FEEDBACK: 1}
    assert store.pending == 0


def test_every_event_extends_the_deadline_and_within_ttl_is_inclusive() -> None:
    store = JoinStore(ttl=10.0)
    store.add(response("p", 0.0, ("x",)))
    store.add(request("p", 8.0))
    assert sum(store.expire(15.0).values()) == 0
    store.expire(18.0)
    assert store.pending == 1
    assert len(store.add(feedback("p", 18.0, reward=1.0)).applied) == 1


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        JoinStore(ttl=0)


def test_identity_hash_is_stable() -> None:
    assert identity_hash(("io.seldon.serving.feedback", "abc")) == identity_hash(
        ("io.seldon.serving.feedback", "abc")
    )
    assert identity_hash(("a", "bc")) != identity_hash(("ab", "c"))
    assert identity_hash(("x",)) == 0x8CDC1683 << 32 | 0x00790079


def _named_response(puid: str, classes: tuple[str, ...]) -> Event:
    return Event(
        EventKind.RESPONSE,
        puid,
        A,
        1.0,
        ("resp", str(next(_ids))),
        classes=classes,
        names=("t:0", "t:1", "t:2"),
    )


def test_a_truth_without_names_is_read_in_the_response_names() -> None:
    store = JoinStore()
    store.add(_named_response("p", ("t:2", "t:0")))
    result = store.add(feedback("p", 2.0, truth=("2", "1")))
    assert [(o.truth, o.correct) for o in result.applied] == [("t:2", True), ("t:1", False)]


def test_a_truth_with_its_own_names_is_taken_as_given() -> None:
    store = JoinStore()
    store.add(_named_response("p", ("t:2",)))
    named = Event(
        EventKind.FEEDBACK, "p", ANY, 2.0, ("fb", "n"), classes=("2",), names=("0", "1", "2")
    )
    assert [(o.truth, o.correct) for o in store.add(named).applied] == [("2", False)]


def test_unscorable_truth_for_a_response_without_classes_is_counted_once() -> None:
    from feedback_stream.outcomes import UNCLASSIFIED

    store = JoinStore()
    store.add(response("p", 1.0, (UNCLASSIFIED,)))
    result = store.add(feedback("p", 2.0, truth=("x",), reward=1.0))
    assert [e.code for e in result.errors] == ["unscorable"]
    assert [(o.truth, o.correct, o.reward) for o in result.applied] == [(None, True, 1.0)]
    again = store.add(feedback("p", 3.0, reward=0.0))
    assert again.errors == ()
    assert [(o.truth, o.correct) for o in again.applied] == [(None, False)]


def _client_feedback(puid: str, time: float, embedded: str, ident: str) -> Event:
    return Event(
        EventKind.FEEDBACK,
        puid,
        A,
        time,
        ("fb", ident),
        classes=("x",),
        reward=None,
        embedded=(embedded,),
    )


def test_embedded_prediction_is_used_until_a_logged_response_comes() -> None:
    store = JoinStore()
    first = store.add(_client_feedback("p", 2.0, "x", "f1"))
    assert [(o.predicted, o.correct) for o in first.applied] == [("x", True)]
    assert first.labelled == ()
    assert first.responses == ()
    logged = store.add(response("p", 1.0, ("y",)))
    assert [o.predicted for o in logged.retracted] == ["x"]
    assert [(o.predicted, o.correct) for o in logged.applied] == [("y", False)]
    assert logged.responses == (A,)
    assert logged.labelled == ((A, 1.0),)
    assert len(list(store.held_outcomes())) == 1  # never counted twice


def test_earliest_embedded_prediction_wins_in_either_order() -> None:
    held = set()
    for order in ((0, 1), (1, 0)):
        store = JoinStore()
        events = [_client_feedback("p", 2.0, "x", "f1"), _client_feedback("p", 1.0, "y", "f2")]
        for index in order:
            store.add(events[index])
        held.add(tuple((o.predicted, o.truth) for o in store.held_outcomes()))
    assert held == {(("y", "x"),)}


# -- shadows: the client's reward, passed on to the shadow ----------------------


def _mirrored_feedback(
    puid: str, key: ModelKey, reward: float, truth: tuple[str, ...], shown: tuple[str, ...] | None
) -> Event:
    """What Seldon's executor of predictor ``key`` logs for a feedback posted to the deployment:
    the client's body (its reward, its truth and, with ``shown``, the default's answer)."""
    return Event(
        EventKind.FEEDBACK,
        puid,
        ModelKey(key.namespace, key.deployment, key.predictor, ""),
        3.0,
        ("fb", f"{puid}-{key.predictor}"),
        classes=truth,
        reward=reward,
        embedded=shown,
    )


def _conflicts(events: list[Event]) -> dict[str, int]:
    store = JoinStore()
    counted: dict[str, int] = {}
    for event in events:
        for key in store.add(event).conflicts:
            counted[key.predictor] = counted.get(key.predictor, 0) + 1
    return counted


def test_a_shadow_inheriting_the_client_reward_is_not_a_conflict_in_any_order() -> None:
    import itertools

    # The default answered x (right: reward 1, truth x); the shadow answered y.
    events = [
        response("p", 1.0, ("x",), A),
        response("p", 1.1, ("y",), SHADOW),
        _mirrored_feedback("p", A, 1.0, ("x",), shown=("x",)),
        _mirrored_feedback("p", SHADOW, 1.0, ("x",), shown=("x",)),
    ]
    for order in itertools.permutations(events):
        assert _conflicts(list(order)) == {}
    store = JoinStore()
    for event in events:
        store.add(event)
    by_predictor = {o.key.predictor: (o.correct, o.conflict) for o in store.held_outcomes()}
    assert by_predictor == {"default": (True, False), "shadow": (False, False)}


def test_a_reward_that_contradicts_the_prediction_it_judged_is_still_a_conflict() -> None:
    # The client said "right" (reward 1) about x, and gave the truth z: a conflict for the
    # default; for the shadow too, as the reward agrees with no prediction it carries.
    events = [
        response("p", 1.0, ("x",), A),
        response("p", 1.1, ("y",), SHADOW),
        _mirrored_feedback("p", A, 1.0, ("z",), shown=("x",)),
        _mirrored_feedback("p", SHADOW, 1.0, ("z",), shown=("x",)),
    ]
    assert _conflicts(events) == {"default": 1, "shadow": 1}


def test_without_the_prediction_in_the_feedback_a_contradiction_counts() -> None:
    # A feedback of reward and truth only cannot say which answer the reward judged.
    events = [
        response("p", 1.0, ("x",), A),
        response("p", 1.1, ("y",), SHADOW),
        _mirrored_feedback("p", A, 1.0, ("x",), shown=None),
        _mirrored_feedback("p", SHADOW, 1.0, ("x",), shown=None),
    ]
    assert _conflicts(events) == {"shadow": 1}


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.sampled_from((0.0, 0.001, 0.002, 5.0))),
        min_size=1,
        max_size=40,
    )
)
def test_the_pending_cap_evicts_in_deadline_then_puid_order_whatever_the_arrival(
    arrivals: list[tuple[str, float]],
) -> None:
    # A restored store knows the entries, not the order they came in, so the
    # live store must not depend on it either: equal deadlines leave by puid.
    store = JoinStore(ttl=10.0)
    store.dropped = []
    last: dict[str, float] = {}
    for puid, time in arrivals:
        store.add(response(puid, time, ("x",)))
        last[puid] = max(time, last.get(puid, time))
    store.evict_oldest(len(last))
    assert store.dropped == sorted(last, key=lambda puid: (last[puid] + 10.0, puid))
