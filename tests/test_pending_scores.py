"""The join store's index of scored responses awaiting feedback equals a scan of its entries.

:meth:`JoinStore.pending_scores` reads an index kept as responses come, are
labelled, replaced by an earlier retry, expire, are evicted or are restored.
The oracle is the definition: every logged response held in the store, with
scores, of a model that is not a regression, without feedback.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.cbpe import pending_windows
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import JoinStore, _items
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.scores import ModelKind
from feedback_stream.windows import WindowSpec

PROBA = ModelKey("ns", "dep", "default", "proba")
BINARY = ModelKey("ns", "dep", "default", "binary")
REGRESSION = ModelKey("ns", "dep", "default", "regression")
PLAIN = ModelKey("ns", "dep", "shadow", "plain")
ANY = ModelKey("ns", "dep", "", "")
NAMES = ("a", "b", "c")
KINDS = ModelKinds.parse(
    {
        "model": [
            {"model": "proba", "kind": "classification"},
            {"model": "binary", "kind": "binary", "threshold": 0.5},
            {"model": "regression", "kind": "regression"},
        ]
    }
)
_KEYS = (PROBA, BINARY, REGRESSION, PLAIN)
_FEEDBACK_KEYS = (ANY, PROBA, BINARY, ModelKey("ns", "dep", "shadow", ""))
_PROBABILITY_ROWS = ([0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [1.0, 0.0, 0.0])

Row = tuple[ModelKey, float, tuple[float, ...]]


def _scan(store: JoinStore) -> list[Row]:
    """The oracle: every held logged response with scores, not regression, unlabelled."""
    rows: list[Row] = []
    for entry in store._entries.values():
        if isinstance(entry, bytes):
            continue  # packed entries hold no scores
        for response in _items(entry.responses):
            scores = response.scores
            if response.labelled or scores is None or scores.kind is ModelKind.REGRESSION:
                continue
            tops = tuple(scores.confidence(r) for r in range(len(response.classes)))
            rows.append((response.key, response.time, tops))
    return sorted(rows)


def _response(
    draw: st.DrawFn, puid: str, key: ModelKey, time: float, ident: str, rows: int
) -> Event:
    names: tuple[str, ...] | None = None
    if key is PROBA and draw(st.booleans()):
        values: list[Any] = [list(draw(st.sampled_from(_PROBABILITY_ROWS))) for _ in range(rows)]
        names = NAMES
        classes = tuple(NAMES[row.index(max(row))] for row in values)
    elif key is BINARY:
        values = [draw(st.sampled_from([0.1, 0.4, 0.5, 0.9])) for _ in range(rows)]
        classes = tuple("1" if v >= 0.5 else "0" for v in values)
    elif key is REGRESSION:
        values = [draw(st.sampled_from([0.5, 2.25, -3.0])) for _ in range(rows)]
        classes = tuple(repr(v) for v in values)
    else:  # plain classes: no scores (a retry of a scored response may come so)
        values = [draw(st.sampled_from([0, 1, 2])) for _ in range(rows)]
        classes = tuple(NAMES[v] for v in values)
    alias = draw(st.sampled_from([None, None, None, f"v{draw(st.integers(0, 2))}"]))
    return Event(
        EventKind.RESPONSE,
        puid,
        key,
        time,
        ("response", ident),
        classes=classes,
        names=names,
        values=values,
        alias=alias,
    )


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Events, expiries, evictions and restores, in a random order."""
    steps: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 50))):
        what = draw(st.sampled_from(["event"] * 8 + ["expire", "evict", "restore"]))
        if what == "expire":
            steps.append(("expire", float(draw(st.integers(0, 80)))))
            continue
        if what == "evict":
            steps.append(("evict", draw(st.integers(1, 3))))
            continue
        if what == "restore":
            steps.append(("restore", None))
            continue
        puid = draw(st.sampled_from(["p0", "p1", "p2", "p3", "v0", "v1"]))
        kind = draw(st.sampled_from(list(EventKind)))
        time = float(draw(st.integers(0, 40)))
        ident = str(draw(st.integers(0, 8)))  # small: duplicates happen
        rows = draw(st.integers(1, 2))
        if kind is EventKind.REQUEST:
            key = draw(st.sampled_from(_KEYS))
            event = Event(kind, puid, key, time, ("request", ident))
        elif kind is EventKind.RESPONSE:
            event = _response(draw, puid, draw(st.sampled_from(_KEYS)), time, ident, rows)
        else:
            truth = draw(st.sampled_from([None, ("a",) * rows, ("1",) * rows, ("b", "a")]))
            event = Event(
                kind,
                puid,
                draw(st.sampled_from(_FEEDBACK_KEYS)),
                time,
                ("feedback", ident),
                classes=truth,
                reward=draw(st.sampled_from([None, 0.0, 1.0])),
            )
        steps.append(("event", event))
    return steps


@given(steps=_steps())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_index_equals_a_scan_of_every_entry(steps: list[tuple[str, Any]]) -> None:
    store = JoinStore(ttl=30.0, kinds=KINDS)
    for what, arg in steps:
        if what == "event":
            store.add(arg)
        elif what == "expire":
            store.expire(arg)
        elif what == "evict":
            store.evict_oldest(arg)
        else:
            outcomes = {o.seq: o for o in store.held_outcomes()}
            store = JoinStore.load(store.dump(), outcomes, store.sequence)
            store.kinds = KINDS
        assert sorted(store.pending_scores()) == _scan(store)
    store.expire(1e9)
    assert list(store.pending_scores()) == []


def test_a_labelled_response_leaves_the_estimate_and_expiry_empties_it() -> None:
    store = JoinStore(ttl=30.0, kinds=KINDS)
    rows = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
    store.add(
        Event(
            EventKind.RESPONSE,
            "p",
            PROBA,
            10.0,
            ("response", "1"),
            classes=("a", "c"),
            names=NAMES,
            values=rows,
        )
    )
    store.add(
        Event(
            EventKind.RESPONSE, "q", BINARY, 11.0, ("response", "2"), classes=("1",), values=[0.8]
        )
    )
    assert sorted(store.pending_scores()) == [(BINARY, 11.0, (0.8,)), (PROBA, 10.0, (0.7, 0.6))]
    store.add(Event(EventKind.FEEDBACK, "p", ANY, 12.0, ("feedback", "3"), classes=("a", "a")))
    assert list(store.pending_scores()) == [(BINARY, 11.0, (0.8,))]
    specs = [WindowSpec.parse(w) for w in ("total", "60s", "1")]
    sums = pending_windows(store.pending_scores(), specs, 20.0)[BINARY]
    assert [sums[s.name].rows for s in specs] == [1, 1, 1]
    store.expire(50.0)
    assert list(store.pending_scores()) == []


def test_a_count_window_takes_the_same_rows_whatever_their_order() -> None:
    rows = [(PROBA, 5.0, (0.9,)), (PROBA, 5.0, (0.6,)), (PROBA, 4.0, (0.8,))]
    specs = [WindowSpec.parse("1")]
    forward = pending_windows(rows, specs, 10.0)[PROBA]["1"]
    backward = pending_windows(rows[::-1], specs, 10.0)[PROBA]["1"]
    assert forward == backward
    assert forward.rows == 1


def test_an_earlier_retry_without_scores_replaces_the_scored_response() -> None:
    store = JoinStore(ttl=30.0, kinds=KINDS)
    store.add(
        Event(
            EventKind.RESPONSE,
            "p",
            PROBA,
            20.0,
            ("response", "1"),
            classes=("a",),
            names=NAMES,
            values=[[0.7, 0.2, 0.1]],
        )
    )
    assert list(store.pending_scores()) == [(PROBA, 20.0, (0.7,))]
    store.add(
        Event(EventKind.RESPONSE, "p", PROBA, 10.0, ("response", "2"), classes=("b",), values=[1])
    )
    assert list(store.pending_scores()) == _scan(store) == []
