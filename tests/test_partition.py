"""The engine end to end against the brute-force reference and scikit-learn.

Random streams (disorder, duplicates, amendments, multi-row batches,
unknown-truth feedback, row mismatches, expiries) go through the engine;
every number of the report must equal what the reference and sklearn say.
"""

from __future__ import annotations

import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.outcomes import Outcome
from feedback_stream.replay import replay
from feedback_stream.windows import WindowSpec
from tests._oracle import (
    Stream,
    assert_close,
    expected_metrics,
    reference,
    streams,
    window_outcomes,
)

WINDOWS = ("total", "30s", "2m", "5", "1")
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(stream: Stream, ttl: float, basis: str, route: str = "puid") -> dict[str, Any]:
    engine = Engine(WINDOWS, ttl=ttl, time_basis=basis, route=route)  # type: ignore[arg-type]
    result = replay(stream.lines(), engine)
    assert result.errors == [] or all(e.code == "row_mismatch" for e in result.errors)
    ref = reference(stream, ttl, basis)
    report = engine.report(result.clock)
    events = report["events"]
    assert {k: events[k] for k in ("request", "response", "feedback")} == ref.accepted
    assert events["duplicate"] == ref.duplicate
    assert events["amended"] == ref.amended
    assert events["invalid"] == ref.invalid
    assert events["expired"] == ref.expired
    assert events["pending"] == ref.pending
    live = ref.live()
    keys = sorted(ref.models | {o.key for o in live})
    assert [
        ModelKey(m["namespace"], m["deployment"], m["predictor"], m["model"])
        for m in report["models"]
    ] == keys
    for model in report["models"]:
        key = ModelKey(model["namespace"], model["deployment"], model["predictor"], model["model"])
        mine = [o for o in live if o.key == key]
        for name in WINDOWS:
            spec = WindowSpec.parse(name)
            expected = expected_metrics(window_outcomes(mine, spec, ref.clock))
            assert_close(model["windows"][name], expected, f"{key}/{name}")
        assert model["counters"]["conflicts"] == ref.conflicts.get(key, 0)
        assert model["counters"]["labelled_responses"] == ref.labelled.get(key, 0)
    return report


@PROPERTY
@given(stream=streams(), ttl=st.sampled_from([20.0, 90.0, 3600.0]))
def test_engine_equals_reference_and_sklearn_by_feedback_time(stream: Stream, ttl: float) -> None:
    _check(stream, ttl, "feedback")


@PROPERTY
@given(stream=streams(), ttl=st.sampled_from([20.0, 90.0, 3600.0]))
def test_engine_equals_reference_and_sklearn_by_request_time(stream: Stream, ttl: float) -> None:
    _check(stream, ttl, "request")


def _keyed_by_puid(stream: Stream) -> Stream:
    records = []
    for record, meaning in zip(stream.records, stream.meanings, strict=True):
        keyed = dict(record)
        keyed["partition"] = zlib.crc32(meaning.puid.encode()) % 3
        records.append(keyed)
    return Stream(records, stream.meanings)


@settings(max_examples=200, deadline=None)
@given(stream=streams(), ttl=st.sampled_from([20.0, 3600.0]))
def test_partition_routing_merges_to_the_same_report(stream: Stream, ttl: float) -> None:
    """Keyed input split over partitions reads exactly like one state (count windows too)."""
    keyed = _keyed_by_puid(stream)
    by_puid = Engine(WINDOWS, ttl=ttl, route="puid")
    by_partition = Engine(WINDOWS, ttl=ttl, route="partition")
    first = replay(keyed.lines(), by_puid)
    replay(keyed.lines(), by_partition)
    assert by_puid.report(first.clock) == by_partition.report(first.clock)


def _event(kind: EventKind, puid: str, time: float, n: int, **extra: Any) -> Event:
    key = ModelKey("ns", "dep", "default", "m") if kind is not EventKind.FEEDBACK else ModelKey()
    return Event(kind, puid, key, time, ("t", str(n)), position=SourcePosition("t", 0, n), **extra)


def test_listeners_see_retractions_and_applications_of_an_amendment() -> None:
    engine = Engine(("total",))
    seen: list[tuple[list[Outcome], list[Outcome]]] = []
    engine.add_outcome_listener(lambda r, a: seen.append((list(r), list(a))))
    results: list[str] = []
    engine.add_result_listener(lambda e, r: results.append(r.status.value))
    engine.process_event(_event(EventKind.RESPONSE, "p", 1.0, 1, classes=("a", "b")))
    engine.process_event(_event(EventKind.FEEDBACK, "p", 2.0, 2, classes=("a", "a")))
    engine.process_event(_event(EventKind.FEEDBACK, "p", 3.0, 3, classes=("b", "b")))
    assert results == ["accepted", "accepted", "amended"]
    assert [len(r) for r, _ in seen] == [0, 2]
    assert [o.truth for o in seen[1][1]] == ["b", "b"]
    assert all(o.retracted for o in seen[1][0])
    counters = engine.model_counters(ModelKey("ns", "dep", "default", "m"))
    assert counters.applied == {"correct": 2, "incorrect": 2}
    assert counters.retracted == {"correct": 1, "incorrect": 1}
    assert counters.labelled == 1
    # The delay of the pair that stands (the amendment at 3.0), not of the first feedback.
    assert (counters.label_delay_count, counters.label_delay_sum_us) == (1, 2_000_000)
    assert engine.pending == 1


def test_quiet_model_time_window_empties_on_wall_clock() -> None:
    engine = Engine(("total", "5m"))
    engine.process_event(_event(EventKind.RESPONSE, "p", 100.0, 1, classes=("a",)))
    engine.process_event(_event(EventKind.FEEDBACK, "p", 110.0, 2, reward=1.0))
    key = ModelKey("ns", "dep", "default", "m")
    assert engine.counts(key, "5m", 400.0).outcomes == 1
    assert engine.counts(key, "5m", 410.0).outcomes == 0
    assert engine.counts(key, "total", 410.0).outcomes == 1


def test_decode_errors_are_counted_by_code() -> None:
    engine = Engine()
    error = engine.process_record(
        {"type": "nope", "requestid": "p"}, b"{}", 0, SourcePosition("t", 0, 1)
    )
    assert error is not None
    assert error.code == "unknown_type"
    assert engine.events().invalid == {"unknown_type": 1}
    assert engine.states[ALL_PARTITIONS].events.invalid["unknown_type"] == 1


def test_revoke_forgets_a_partition() -> None:
    engine = Engine(route="partition")
    engine.process_event(_event(EventKind.RESPONSE, "p", 1.0, 1, classes=("a",)))
    assert engine.pending == 1
    assert engine.revoke(("t", 0)) is not None
    assert engine.pending == 0


def test_the_core_imports_no_io_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import feedback_stream.decode, feedback_stream.join, feedback_stream.windows\n"
        "import feedback_stream.metrics, feedback_stream.partition, feedback_stream.engine\n"
        "import feedback_stream.snapshot, feedback_stream.report, feedback_stream.replay\n"
        "bad = [m for m in ('aiokafka', 'aiohttp', 'elasticsearch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
