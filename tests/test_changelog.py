"""A state written as changelog deltas and rebuilt from them reports and continues as
the original, at any commit point, and the records it leaves stay bounded."""

from __future__ import annotations

from base64 import b64decode
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.caps import Caps
from feedback_stream.changelog import (
    FORMAT,
    Change,
    ChangelogError,
    ChangeTracker,
    Restorer,
    state_prefix,
)
from feedback_stream.decode import DecodeError
from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import ModelKey, SourcePosition
from feedback_stream.generator import GeneratorConfig, generate_records
from feedback_stream.replay import replay
from tests._fidelity_streams import _feedback, _kserve, extras, with_extras
from tests._oracle import Stream, streams
from tests._score_streams import VARIANTS, kinds_for, score_streams

WINDOWS = ("total", "30s", "3")
NAME = "topic/0"


class _Topic:
    """A compacted topic as a reader sees it: records in order; the last value of a key wins."""

    def __init__(self) -> None:
        self.log: list[Change] = []

    def write(self, changes: list[Change]) -> None:
        self.log.extend(changes)

    def compacted(self) -> dict[bytes, bytes]:
        live: dict[bytes, bytes] = {}
        for key, value in self.log:
            if value is None:
                live.pop(key, None)
            else:
                live[key] = value
        return live


def _restore(topic: _Topic, windows: tuple[str, ...], basis: str, compact: bool) -> Engine:
    engine = Engine(windows, ttl=60.0, time_basis=basis)
    restorer = Restorer(NAME)
    records = list(topic.compacted().items()) if compact else topic.log
    for key, value in records:
        restorer.add(key, value)
    state, retained = restorer.build(engine.specs, engine.sequence, engine.ttl, engine.time_basis)
    engine.install(ALL_PARTITIONS, state)
    ChangeTracker(NAME, state, retained, restorer.pair_seqs(), restorer.held_puids())
    return engine


def _tracked(windows: tuple[str, ...], basis: str) -> tuple[Engine, ChangeTracker]:
    engine = Engine(windows, ttl=60.0, time_basis=basis)
    tracker = ChangeTracker(NAME, engine.state(ALL_PARTITIONS))
    return engine, tracker


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    crash=st.integers(0, 5),
    basis=st.sampled_from(["feedback", "request"]),
    compact=st.booleans(),
    windows=st.sampled_from([WINDOWS, ("total", "1s", "1"), ("2s",)]),
)
def test_restore_at_any_commit_then_continue_equals_never_stopping(
    stream: Stream,
    cuts: list[float],
    crash: int,
    basis: str,
    compact: bool,
    windows: tuple[str, ...],
) -> None:
    lines = stream.lines()
    points = sorted({int(len(lines) * c) for c in cuts} | {len(lines)})
    crash_at = points[crash % len(points)]
    topic = _Topic()
    original, tracker = _tracked(windows, basis)
    done = 0
    for point in points:
        if point > crash_at:
            break
        replay(lines[done:point], original)
        topic.write(tracker.changes())
        done = point
    restored = _restore(topic, windows, basis, compact)
    assert restored.report(original.clock) == original.report(original.clock)
    # Both go on from the commit; the restored one keeps writing the same topic.
    state = restored.states[ALL_PARTITIONS]
    assert state.observer is not None
    end = replay(lines[done:], original)
    replay(lines[done:], restored)
    assert isinstance(state.observer, ChangeTracker)
    topic.write(state.observer.changes())
    assert restored.report(end.clock) == original.report(end.clock)
    again = _restore(topic, windows, basis, compact=True)
    assert again.report(end.clock) == original.report(end.clock)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(max_puids=12))
def test_records_of_expired_puids_and_evicted_outcomes_are_deleted(stream: Stream) -> None:
    engine, tracker = _tracked(WINDOWS, "feedback")
    topic = _Topic()
    end = replay(stream.lines(), engine)
    topic.write(tracker.changes())
    later = (end.clock or 0.0) + 3600.0
    engine.expire(later)
    state = engine.states[ALL_PARTITIONS]
    state.advance(later)
    topic.write(tracker.changes())
    live = topic.compacted()
    prefix = NAME.encode() + b"\x00"
    entries = [k for k in live if k.startswith(prefix + b"E")]
    outcomes = [k for k in live if k.startswith(prefix + b"O")]
    assert entries == []
    # Only what the count window of 3 (and its reserve of 3) can still need, per model.
    assert len(outcomes) <= 6 * len(state.models)
    restored = _restore(topic, WINDOWS, "feedback", compact=True)
    assert restored.report(later) == engine.report(later)


def test_only_changed_records_are_written() -> None:
    engine, tracker = _tracked(("total",), "feedback")
    lines = [orjson.dumps(r) for r in generate_records(GeneratorConfig(seed=1, n_requests=1))]
    replay(lines[:1], engine)
    first = dict(tracker.changes())
    kinds = sorted({k[len(NAME) + 1 : len(NAME) + 2] for k in first})
    assert b"E" in kinds
    assert b"S" in kinds
    assert tracker.changes() == []  # nothing happened: nothing to write


def test_records_of_another_state_are_ignored_and_unknown_kinds_refused() -> None:
    restorer = Restorer(NAME)
    restorer.add(b"other/1\x00Sxyz", b"{}")
    assert restorer.empty
    with pytest.raises(ChangelogError, match="unknown record kind"):
        restorer.add(NAME.encode() + b"\x00Zabc", b"{}")
    restorer.add(NAME.encode() + b"\x00S", b'{"format": "something else"}')
    engine = Engine(("total",))
    with pytest.raises(ChangelogError, match="format"):
        restorer.build(engine.specs, engine.sequence, engine.ttl, engine.time_basis)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), variant=st.sampled_from(VARIANTS), cut=st.floats(0.0, 1.0))
def test_scored_outcomes_survive_the_changelog(
    data: st.DataObject, variant: str, cut: float
) -> None:
    """Binary, probability and regression numbers restore exactly (model kinds' window state)."""
    stream = data.draw(score_streams(variant))
    lines = stream.lines()
    split = int(len(lines) * cut)
    windows = ("total", "30s", "4")
    original = Engine(windows, ttl=1e6, kinds=kinds_for(variant))
    tracker = ChangeTracker(NAME, original.state(ALL_PARTITIONS))
    topic = _Topic()
    replay(lines[:split], original)
    topic.write(tracker.changes())
    restored = Engine(windows, ttl=1e6, kinds=kinds_for(variant))
    restorer = Restorer(NAME)
    for key, value in topic.compacted().items():
        restorer.add(key, value)
    state, retained = restorer.build(
        restored.specs, restored.sequence, restored.ttl, restored.time_basis
    )
    restored.install(ALL_PARTITIONS, state)
    ChangeTracker(NAME, state, retained)
    assert restored.report(original.clock) == original.report(original.clock)
    end = replay(lines[split:], original)
    replay(lines[split:], restored)
    assert end.clock is not None
    assert restored.report(end.clock) == original.report(end.clock)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(max_puids=12), cap=st.integers(1, 6))
def test_evicted_puids_are_deleted_and_a_restore_does_not_revive_them(
    stream: Stream, cap: int
) -> None:
    engine = Engine(WINDOWS, ttl=60.0, caps=Caps(max_pending=cap))
    tracker = ChangeTracker(NAME, engine.state(ALL_PARTITIONS))
    topic = _Topic()
    end = replay([], engine)
    for line in stream.lines():  # a commit after every record
        end = replay([line], engine)
        topic.write(tracker.changes())
    restored = Engine(WINDOWS, ttl=60.0, caps=Caps(max_pending=cap))
    restorer = Restorer(NAME)
    for key, value in topic.compacted().items():
        restorer.add(key, value)
    state, _ = restorer.build(restored.specs, restored.sequence, restored.ttl, restored.time_basis)
    restored.install(ALL_PARTITIONS, state)
    assert restored.pending == engine.pending <= cap
    clock = end.clock if end.clock is not None else 0.0
    assert restored.report(clock) == engine.report(clock)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    more=extras(),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    crash=st.integers(0, 4),
)
def test_aliases_and_embedded_responses_survive_the_changelog(
    stream: Stream, more: list[dict[str, Any]], cuts: list[float], crash: int
) -> None:
    """Responses joined by body id (an alias merges entries) and feedback carrying its response."""
    lines = with_extras(stream, more)
    points = sorted({int(len(lines) * c) for c in cuts} | {len(lines)})
    crash_at = points[crash % len(points)]
    topic = _Topic()
    original, tracker = _tracked(WINDOWS, "feedback")
    done = 0
    for point in points:
        if point > crash_at:
            break
        replay(lines[done:point], original)
        topic.write(tracker.changes())
        done = point
    restored = _restore(topic, WINDOWS, "feedback", compact=True)
    assert restored.report(original.clock) == original.report(original.clock)
    end = replay(lines[done:], original)
    replay(lines[done:], restored)
    assert restored.report(end.clock) == original.report(end.clock)


def test_an_entry_merged_under_an_alias_is_deleted() -> None:
    """Feedback naming a body id waits under it; the response carrying that id takes it in."""
    body = {
        "model_name": "iris",
        "id": "body-0",
        "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}],
    }
    records = [
        _feedback("kfb-0", "body-0", 1000, {"truth": {"predictions": [1]}}),
        _kserve("response", "log-0", 2000, body),
    ]
    lines = with_extras(Stream([], []), records)
    topic = _Topic()
    original, tracker = _tracked(WINDOWS, "feedback")
    for line in lines:  # a commit after each
        replay([line], original)
        topic.write(tracker.changes())
    assert original.pending == 1
    restored = _restore(topic, WINDOWS, "feedback", compact=True)
    assert restored.pending == 1
    assert restored.report(original.clock) == original.report(original.clock)


def test_no_record_grows_with_the_comparison_state() -> None:
    """A default-vs-shadow state whose comparison dump passes 1 MiB: every record stays small.

    The broker refuses records over its ``max.message.bytes`` (1 MiB by default);
    the comparisons are written a pair, a puid and a window aggregate at a time.
    """
    windows = ("total", "1h", "500")
    config = GeneratorConfig(seed=3, n_requests=12_000, feedback_share=0.9, amendment_share=0.05)
    lines = [orjson.dumps(r) for r in generate_records(config)]
    engine = Engine(windows, ttl=3600.0)
    tracker = ChangeTracker(NAME, engine.state(ALL_PARTITIONS))
    topic = _Topic()
    for start in range(0, len(lines), 5_000):
        replay(lines[start : start + 5_000], engine)
        topic.write(tracker.changes())
    state = engine.states[ALL_PARTITIONS]
    assert state.pairing.comparisons(), "the stream has default-vs-shadow pairs"
    whole = len(orjson.dumps(state.pairing.dump()))
    assert whole > 1 << 20, f"the comparison state as one record would be {whole:,} bytes"
    largest = max(len(k) + len(v or b"") for k, v in topic.log)
    assert largest < 4096, f"largest record {largest:,} bytes"
    prefix = NAME.encode() + b"\x00"
    kinds = {k[len(prefix) : len(prefix) + 1] for k in topic.compacted()}
    assert {b"C", b"A", b"Q", b"H"} <= kinds
    for compact in (True, False):
        restored = _restore(topic, windows, "feedback", compact)
        assert restored.report(engine.clock) == engine.report(engine.clock)


def test_counters_outside_the_report_continue_from_a_restore() -> None:
    """Evictions at the pending cap, folded classes, invalid records by type, dead letters
    and the label-delay histogram are state: a restore brings them back (and a revoke
    takes the caps' share away again)."""
    config = GeneratorConfig(seed=4, n_requests=400, feedback_share=0.7, invalid_share=0.05)
    lines = [orjson.dumps(r) for r in generate_records(config)]

    def engine() -> Engine:
        return Engine(WINDOWS, ttl=60.0, caps=Caps(max_pending=50, max_classes=1))

    original = engine()
    tracker = ChangeTracker(NAME, original.state(ALL_PARTITIONS))
    topic = _Topic()
    replay(lines, original)
    state = original.states[ALL_PARTITIONS]
    dead = next(iter(state.events.invalid))
    original.dead_lettered(DecodeError("bad", dead, SourcePosition("t", 0, 1)))
    original.model_error(ModelKey("seldon", "iris", "", "clf"), SourcePosition("t", 0, 2))
    topic.write(tracker.changes())
    caps = original.caps
    assert sum(caps.evicted.values()) > 0
    assert caps.folded_classes > 0
    assert sum(state.events.invalid_types.values()) > 0
    restored = _restore_into(topic, engine())
    again = restored.states[ALL_PARTITIONS]
    assert restored.caps.evicted == caps.evicted
    assert restored.caps.folded_classes == caps.folded_classes
    assert again.events.to_dict() == state.events.to_dict()
    for key, counters in state.model_counters.items():
        assert sum(counters.labelled_delay_buckets) == counters.labelled
        assert again.model_counters[key].to_dict() == counters.to_dict()
    restored.revoke(ALL_PARTITIONS)
    assert sum(restored.caps.evicted.values()) == 0
    assert restored.caps.folded_classes == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), cut=st.floats(0.0, 1.0), read_after_s=st.floats(1.0, 86_400.0))
def test_a_restore_resumes_the_newest_event_time_not_the_clock_reads_moved(
    stream: Stream, cut: float, read_after_s: float
) -> None:
    """Reads move a state's clock to the wall clock (windows slide with it); the join
    TTL of a restored state must resume from the newest event time processed, or a
    stream read behind the wall clock expires at the restart."""
    lines = stream.lines()
    done = int(len(lines) * cut)
    original, tracker = _tracked(WINDOWS, "feedback")
    newest = replay(lines[:done], original).clock
    if newest is None:  # no event yet
        newest = float("-inf")
    else:
        original.report(newest + read_after_s)  # a read (the ticker, a scrape) later on
    topic = _Topic()
    topic.write(tracker.changes())
    state = original.states[ALL_PARTITIONS]
    assert state.event_clock == newest
    assert not state.models or state.clock > newest
    from_snapshot = Engine(WINDOWS, ttl=60.0)
    from_snapshot.restore(ALL_PARTITIONS, original.snapshot(ALL_PARTITIONS))
    for restored in (_restore(topic, WINDOWS, "feedback", compact=True), from_snapshot):
        again = restored.states[ALL_PARTITIONS]
        assert (again.event_clock, again.clock) == (state.event_clock, state.clock)


def test_a_state_saved_without_an_event_clock_resumes_from_its_clock() -> None:
    original = Engine(WINDOWS, ttl=60.0)
    lines = [orjson.dumps(r) for r in generate_records(GeneratorConfig(seed=3, n_requests=20))]
    newest = replay(lines, original).clock
    assert newest is not None
    original.report(newest + 600.0)
    state = original.states[ALL_PARTITIONS]
    assert (state.event_clock, state.clock) == (newest, newest + 600.0)
    document = orjson.loads(original.snapshot(ALL_PARTITIONS))
    del document["event_clock"]
    restored = Engine(WINDOWS, ttl=60.0)
    restored.restore(ALL_PARTITIONS, orjson.dumps(document))
    assert restored.states[ALL_PARTITIONS].event_clock == newest + 600.0


def _restore_into(topic: _Topic, engine: Engine) -> Engine:
    restorer = Restorer(NAME)
    for key, value in topic.compacted().items():
        restorer.add(key, value)
    state, _ = restorer.build(engine.specs, engine.sequence, engine.ttl, engine.time_basis)
    engine.install(ALL_PARTITIONS, state)
    return engine


def _without_held_clocks(topic: _Topic) -> dict[bytes, Any]:
    """The compacted records, an ``H`` record's clock (the time it was written) left out."""
    held = NAME.encode() + b"\x00H"
    return {
        key: orjson.loads(value)[1] if key.startswith(held) else value
        for key, value in topic.compacted().items()
    }


def _sliced_and_whole(
    lines: list[bytes], takes: list[int], commits: set[int], windows: tuple[str, ...]
) -> None:
    """Run a stream twice: one commit per point of ``commits`` taken whole, and taken in
    slices (a take at every point of ``takes``, as a state store does between
    batches, then the commit's own take); after every commit both
    topics hold the same records (but for the clock an ``H`` record notes when it was
    taken), and a restore from either is the state then."""
    whole, whole_tracker = _tracked(windows, "feedback")
    sliced, sliced_tracker = _tracked(windows, "feedback")
    whole_topic, sliced_topic = _Topic(), _Topic()
    unsent: dict[bytes, bytes | None] = {}
    done = 0
    for point in sorted(set(takes) | commits):
        replay(lines[done:point], whole)
        replay(lines[done:point], sliced)
        done = point
        if point not in commits:
            unsent.update(sliced_tracker.changes())
            continue
        unsent.update(sliced_tracker.changes())
        sliced_topic.write(list(unsent.items()))
        unsent = {}
        whole_topic.write(whole_tracker.changes())
        assert _without_held_clocks(sliced_topic) == _without_held_clocks(whole_topic)
        restored = _restore(sliced_topic, windows, "feedback", compact=False)
        # A report advances the windows it reads: read both runs alike.
        assert restored.report(sliced.clock) == whole.report(whole.clock)
        assert sliced.report(sliced.clock) == whole.report(whole.clock)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    takes=st.lists(st.floats(0.0, 1.0), max_size=8),
    commits=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
    windows=st.sampled_from([WINDOWS, ("total", "1s", "1"), ("2s",)]),
)
def test_a_commit_taken_in_slices_writes_what_one_taken_whole_writes(
    stream: Stream, takes: list[float], commits: list[float], windows: tuple[str, ...]
) -> None:
    lines = stream.lines()
    at = {int(len(lines) * c) for c in commits} | {len(lines)}
    _sliced_and_whole(lines, [int(len(lines) * t) for t in takes], at, windows)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    slice_size=st.integers(7, 300),
    amendments=st.sampled_from([0.0, 0.2]),
)
def test_a_commit_taken_in_slices_keeps_the_comparisons(
    seed: int, slice_size: int, amendments: float
) -> None:
    """Default-vs-shadow pairs: formed, amended and dropped across slices."""
    config = GeneratorConfig(
        seed=seed, n_requests=300, feedback_share=0.8, amendment_share=amendments
    )
    lines = [orjson.dumps(r) for r in generate_records(config)]
    commits = set(range(0, len(lines), 400)) | {len(lines)}
    _sliced_and_whole(lines, list(range(0, len(lines), slice_size)), commits, WINDOWS)


FORMAT_2 = Path(__file__).parent / "fixtures" / "changelog" / "format2.json"


def _format_2_stream() -> list[bytes]:
    """The records the format-2 fixture's processor read (see its ``written_by``)."""
    config = GeneratorConfig(
        seed=11,
        n_requests=80,
        request_rate=5.0,
        feedback_share=0.8,
        feedback_delay_mean_s=4.0,
        amendment_share=0.2,
        duplicate_share=0.1,
    )
    return [orjson.dumps(r) for r in generate_records(config)]


@pytest.mark.parametrize("compact", [False, True])
def test_a_state_topic_written_by_the_previous_format_restores_and_continues(
    compact: bool,
) -> None:
    fixture = orjson.loads(FORMAT_2.read_bytes())
    topic = _Topic()
    topic.write(
        [(b64decode(k), None if v is None else b64decode(v)) for k, v in fixture["records"]]
    )
    scalars = orjson.loads(topic.compacted()[state_prefix(NAME) + b"S"])
    assert scalars["format"] == "feedback-stream/changelog/2"
    kinds = {key[len(state_prefix(NAME)) :][:1] for key in topic.compacted()}
    assert kinds >= {b"E", b"O", b"M", b"W", b"C", b"A", b"Q", b"H"}
    lines = _format_2_stream()
    done = fixture["records_applied"]
    original = Engine(WINDOWS, ttl=60.0)
    clock = replay(lines[:done], original).clock
    restored = _restore(topic, WINDOWS, "feedback", compact)
    assert restored.report(clock) == original.report(clock)
    # The restored processor goes on writing this format over the old records.
    state = restored.states[ALL_PARTITIONS]
    assert isinstance(state.observer, ChangeTracker)
    end = replay(lines[done:], original).clock
    replay(lines[done:], restored)
    topic.write(state.observer.changes())
    assert restored.report(end) == original.report(end)
    again = _restore(topic, WINDOWS, "feedback", compact)
    assert again.report(end) == original.report(end)
    live = topic.compacted()
    assert orjson.loads(live[state_prefix(NAME) + b"S"])["format"] == FORMAT


def test_join_entries_name_each_model_once_and_outcomes_carry_no_second_key() -> None:
    lines = _format_2_stream()
    engine, tracker = _tracked(WINDOWS, "feedback")
    replay(lines[: len(lines) // 2], engine)
    changes = tracker.changes()
    prefix = state_prefix(NAME)
    entries = [v for k, v in changes if k.startswith(prefix + b"E") and v is not None]
    outcomes = [v for k, v in changes if k.startswith(prefix + b"O") and v is not None]
    assert entries
    assert outcomes
    models = {b'"default"', b'"shadow"'}
    for value in entries:
        row = orjson.loads(value)
        named = [m for m in models if m in value]
        assert named
        assert all(value.count(m) == 1 for m in named)
        assert len(row[9]) == len(named)
        assert isinstance(row[2], str)  # the seen hashes, base64
    for value in outcomes:
        row = orjson.loads(value)
        assert isinstance(row[0], int)  # the outcome row alone: its model is row[1]
        assert sum(value.count(m) for m in models) == 1
