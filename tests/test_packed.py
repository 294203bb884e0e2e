"""Packed pending entries: the byte layout; a join that packs acts as one that never packs."""

from __future__ import annotations

import math
import struct
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream import packed
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import (
    EventStatus,
    JoinResult,
    JoinStore,
    Sequence,
    _Deadlines,
    identity_hash,
)

A = ModelKey("ns", "dep", "default", "a")
B = ModelKey("ns", "dep", "default", "b")
SHADOW = ModelKey("ns", "dep", "shadow", "a")
ANY = ModelKey("ns", "dep", "", "")
NAMES = ("t:0", "t:1", "t:2")

_times = st.floats(min_value=0.0, max_value=4e9, allow_nan=False)
_ids = st.integers(min_value=0, max_value=packed.NO_ID - 1)


@given(
    deadline=_times,
    requests=st.lists(st.tuples(_ids, _times), max_size=4),
    responses=st.lists(
        st.tuples(_times, st.integers(0, 2**64 - 1), _ids, _ids, st.integers(0, packed.NO_ID)),
        max_size=4,
    ),
    seen=st.lists(st.integers(0, 2**64 - 1), max_size=6),
)
def test_pack_then_unpack_gives_every_field_back(
    deadline: float,
    requests: list[packed.PackedRequest],
    responses: list[packed.PackedResponse],
    seen: list[int],
) -> None:
    raw = struct.pack(f"<{len(seen)}Q", *seen)
    data = packed.pack(deadline, requests, responses, raw)
    assert packed.unpack(data) == (deadline, requests, responses, raw)
    assert packed.deadline(data) == deadline
    assert packed.counts(data) == (len(requests), len(responses))
    for ident in seen:
        assert packed.seen(data, ident.to_bytes(8, "little"))


@given(
    parts=st.lists(
        st.one_of(
            st.tuples(_ids, _times),
            st.tuples(_times, st.integers(0, 2**64 - 1), _ids, _ids, _ids),
        ),
        min_size=1,
        max_size=8,
    ),
    deadlines=st.lists(_times, min_size=8, max_size=8),
)
def test_adding_parts_one_at_a_time_equals_packing_them_at_once(
    parts: list[packed.PackedRequest | packed.PackedResponse], deadlines: list[float]
) -> None:
    requests: list[packed.PackedRequest] = []
    responses: list[packed.PackedResponse] = []
    data = packed.pack(deadlines[0], [], [], b"")
    for i, part in enumerate(parts):
        ident = (i * 7919).to_bytes(8, "little")
        if len(part) == 2:
            requests.append(part)
            data = packed.with_request(data, deadlines[i], part, ident)
        else:
            responses.append(part)
            data = packed.with_response(data, deadlines[i], part, ident)
        seen = b"".join((j * 7919).to_bytes(8, "little") for j in range(i + 1))
        assert data == packed.pack(deadlines[i], requests, responses, seen)
    for key in range(3):
        assert packed.has_response(data, key) == any(r[2] == key for r in responses)


def test_an_identity_is_found_only_at_its_own_offset() -> None:
    first, second = (1).to_bytes(8, "little"), (2).to_bytes(8, "little")
    data = packed.pack(5.0, [(0, 1.0)], [], first + second)
    straddling = first[4:] + second[:4]  # bytes that occur in the data, across two hashes
    assert straddling in data
    assert not packed.seen(data, straddling)
    assert packed.seen(data, second)
    # header and parts never count as identities, even when they hold the same bytes
    head = struct.pack("<d", 5.0)
    assert not packed.seen(packed.pack(5.0, [], [], b""), head)


def test_the_interned_table_gives_no_id_past_its_limit() -> None:
    table: packed.Interned[tuple[str, ...]] = packed.Interned(2)
    assert table.id(("a",)) == 0
    assert table.id(("b",)) == 1
    assert table.id(("c",)) == packed.NO_ID
    assert table.id(("a",)) == 0
    assert len(table) == 2


def _event(kind: EventKind, puid: str, key: ModelKey, time: float, ident: str, **kw: Any) -> Event:
    return Event(kind, puid, key, time, (kind.value, ident), **kw)


def test_a_pending_puid_is_one_bytes_object_of_at_most_96_bytes() -> None:
    store = JoinStore()
    store.add(_event(EventKind.REQUEST, "p", A, 10.0, "r"))
    store.add(_event(EventKind.RESPONSE, "p", A, 10.5, "s", classes=("t:1",), names=NAMES))
    held = store._entries["p"]
    assert isinstance(held, bytes)
    assert sys.getsizeof(held) <= 96
    rank = identity_hash(("response", "s"))
    assert store.dump_entry("p") == [
        "p",
        10.5 + 3600.0,
        [identity_hash(("request", "r")), rank],
        [[["ns", "dep", "default", "a"], 10.0]],
        [[["ns", "dep", "default", "a"], ["t:1"], 10.5, False, list(NAMES), None, rank]],
        [],
        [],
        [],
        [],
    ]
    joined = store.add(_event(EventKind.FEEDBACK, "p", ANY, 20.0, "f", classes=("t:1",)))
    assert [o.correct for o in joined.applied] == [True]
    assert joined.labelled == ((A, 9.5),)
    assert not isinstance(store._entries["p"], bytes)  # joined: amendable, held in full


def test_past_the_label_bound_entries_stay_unpacked_and_still_join() -> None:
    store = JoinStore()
    n = 5000  # more distinct classes than the store gives ids to
    for i in range(n):
        store.add(_event(EventKind.RESPONSE, f"p{i}", A, float(i), f"s{i}", classes=(f"c{i}",)))
    held = list(store._entries.values())
    assert 0 < sum(isinstance(e, bytes) for e in held) < n
    correct = 0
    for i in range(n):
        truth = (f"c{i}",) if i % 2 else ("other",)
        result = store.add(
            _event(EventKind.FEEDBACK, f"p{i}", ANY, i + 1.0, f"f{i}", classes=truth)
        )
        correct += sum(bool(o.correct) for o in result.applied)
    assert correct == n // 2


def test_expiry_counts_the_parts_of_packed_entries() -> None:
    store = JoinStore(ttl=10.0)
    store.add(_event(EventKind.REQUEST, "r", A, 1.0, "r1"))
    store.add(_event(EventKind.REQUEST, "rs", A, 1.0, "r2"))
    store.add(_event(EventKind.RESPONSE, "rs", A, 2.0, "s2", classes=("x",)))
    store.add(_event(EventKind.RESPONSE, "rs", SHADOW, 2.0, "s3", classes=("y",)))
    assert all(isinstance(e, bytes) for e in store._entries.values())
    assert store.expire(11.5) == {
        EventKind.REQUEST: 1,
        EventKind.RESPONSE: 0,
        EventKind.FEEDBACK: 0,
    }
    assert store.expire(13.0) == {
        EventKind.REQUEST: 1,
        EventKind.RESPONSE: 2,
        EventKind.FEEDBACK: 0,
    }
    assert store.pending == 0


@given(
    pushes=st.lists(
        st.tuples(st.floats(0.0, 100.0, allow_nan=False), st.booleans()), max_size=3000
    ),
    cut=st.floats(0.0, 101.0),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_deadlines_pop_in_deadline_order_like_a_sorted_list(
    pushes: list[tuple[float, bool]], cut: float
) -> None:
    deadlines, oracle = _Deadlines(), []
    popped: list[float] = []
    for i, (when, pop) in enumerate(pushes):
        deadlines.push(when, f"p{i}")
        oracle.append(when)
        if pop:
            due = deadlines.pop_before(math.inf)
            assert due is not None
            oracle.sort()
            assert due[0] == oracle.pop(0)
            popped.append(due[0])
    oracle.sort()
    while (due := deadlines.pop_before(cut)) is not None:
        assert due[0] == oracle.pop(0)
    assert not oracle or oracle[0] >= cut


# ------------------------------------------------------------------ differential

_KEYS = (A, B, SHADOW)
_FEEDBACK_KEYS = (ANY, A, ModelKey("ns", "dep", "shadow", ""))


@st.composite
def _streams(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for n in range(draw(st.integers(1, 40))):
        puid = f"p{draw(st.integers(0, 4))}"
        kind = draw(st.sampled_from(list(EventKind)))
        time = float(draw(st.integers(0, 30)))
        ident = str(draw(st.integers(0, 6)))  # small: duplicates happen
        rows = draw(st.integers(1, 2))
        classes = tuple(draw(st.sampled_from(NAMES)) for _ in range(rows))
        if kind is EventKind.REQUEST:
            events.append(_event(kind, puid, draw(st.sampled_from(_KEYS)), time, ident))
        elif kind is EventKind.RESPONSE:
            names = draw(st.sampled_from([None, NAMES]))
            events.append(
                _event(
                    kind,
                    puid,
                    draw(st.sampled_from(_KEYS)),
                    time,
                    ident,
                    classes=classes,
                    names=names,
                )
            )
        else:
            truth = draw(st.sampled_from([None, classes]))
            reward = draw(st.sampled_from([None, 0.0, 1.0]))
            events.append(
                _event(
                    kind,
                    puid,
                    draw(st.sampled_from(_FEEDBACK_KEYS)),
                    time,
                    ident,
                    classes=truth,
                    reward=reward,
                )
            )
        if n % 7 == 6:
            events.append(_event(EventKind.REQUEST, "tick", A, time + 100.0, f"t{n}"))
    return events


def _outcomes(result: JoinResult) -> dict[str, Any]:
    def rows(outcomes: tuple[Any, ...]) -> list[Any]:
        return [
            (
                *(o.key, o.puid, o.row, o.predicted, o.truth, o.correct, o.reward, o.time),
                *(o.response_time, o.feedback_time, o.request_time, o.seq, o.conflict),
                o.label_delay,
            )
            for o in outcomes
        ]

    return {
        "status": result.status,
        "responses": result.responses,
        "retracted": rows(result.retracted),
        "applied": rows(result.applied),
        "labelled": result.labelled,
        "conflicts": result.conflicts,
        "errors": [(e.code, e.reason) for e in result.errors],
    }


@given(events=_streams())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_store_that_packs_joins_as_one_that_never_packs(events: list[Event]) -> None:
    packing, full = JoinStore(ttl=50.0), JoinStore(ttl=50.0)
    full._keys = packed.Interned(0)  # no id for any key: nothing is ever packed
    for event in events:
        assert _outcomes(packing.add(event)) == _outcomes(full.add(event))
        if event.puid == "tick":
            assert packing.expire(event.time - 60.0) == full.expire(event.time - 60.0)
    assert not any(isinstance(e, bytes) for e in full._entries.values())
    assert packing.dump() == full.dump()
    for puid in {e.puid for e in events}:
        for key in (*_KEYS, *_FEEDBACK_KEYS):
            assert packing.has_response(puid, key) == full.has_response(puid, key)
    assert packing.evict_oldest(3) == full.evict_oldest(3)
    assert packing.expire(1e9) == full.expire(1e9)


def test_a_pending_entry_restored_from_plain_data_is_packed_and_joins() -> None:
    rank = identity_hash(("response", "s"))
    row = [
        "p",
        3610.5,
        [identity_hash(("request", "r")), rank],
        [[["ns", "dep", "default", "a"], 10.0]],
        [[["ns", "dep", "default", "a"], ["t:1"], 10.5, False, list(NAMES), None, rank]],
        [],
        [],
        [],
        [],
    ]
    data = {"ttl": 3600.0, "time_basis": "feedback", "entries": [row]}
    store = JoinStore.load(data, {}, Sequence())
    assert isinstance(store._entries["p"], bytes)
    assert store.dump_entry("p") == row
    again = store.add(_event(EventKind.RESPONSE, "p", A, 10.5, "s", classes=("t:1",)))
    assert again.status is EventStatus.DUPLICATE
    joined = store.add(_event(EventKind.FEEDBACK, "p", ANY, 20.0, "f", classes=("t:0",)))
    assert [(o.predicted, o.truth, o.correct) for o in joined.applied] == [("t:1", "t:0", False)]
    assert store.expire(3620.6) == {
        EventKind.REQUEST: 0,
        EventKind.RESPONSE: 0,
        EventKind.FEEDBACK: 0,
    }
    assert store.pending == 0
