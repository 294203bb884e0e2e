"""A partition's state survives bytes: restored, it reports and continues as the original."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.partition import PartitionState
from feedback_stream.replay import replay
from feedback_stream.snapshot import SnapshotError, dumps, loads
from feedback_stream.windows import WindowSpec
from tests._fidelity_streams import extras, with_extras
from tests._oracle import Stream, streams

WINDOWS = ("total", "30s", "3")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), cut=st.floats(0.0, 1.0), basis=st.sampled_from(["feedback", "request"]))
def test_round_trip_then_continue_equals_never_stopping(
    stream: Stream, cut: float, basis: str
) -> None:
    lines = stream.lines()
    split = int(len(lines) * cut)
    original = Engine(WINDOWS, ttl=60.0, time_basis=basis)
    replay(lines[:split], original)
    data = original.snapshot(ALL_PARTITIONS)
    restored = Engine(WINDOWS, ttl=60.0, time_basis=basis)
    restored.restore(ALL_PARTITIONS, data)
    assert restored.report(original.clock) == original.report(original.clock)
    end = replay(lines[split:], original)
    replay(lines[split:], restored)
    assert restored.report(end.clock) == original.report(end.clock)


def test_restore_with_different_windows_keeps_the_common_ones() -> None:
    state = PartitionState([WindowSpec.parse("total"), WindowSpec.parse("5")])
    restored = loads(dumps(state), windows=[WindowSpec.parse("total"), WindowSpec.parse("1h")])
    assert [s.name for s in restored.specs] == ["total", "1h"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not a snapshot"),
        (b"{}", "not a feedback-stream"),
        (b'{"format": "feedback-stream/partition-state", "version": 99}', "version 99"),
        (b'{"format": "feedback-stream/partition-state", "version": 1}', "version 1"),
        (b'{"format": "feedback-stream/partition-state", "version": 2}', "version 2"),
        (b'{"format": "feedback-stream/partition-state", "version": 3}', "corrupt"),
    ],
)
def test_bad_snapshots_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        loads(data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), more=extras(), cut=st.floats(0.0, 1.0))
def test_embedded_predictions_and_body_ids_survive_a_round_trip(
    stream: Stream, more: list[dict[str, Any]], cut: float
) -> None:
    """Join state of client feedback (embedded responses), V2 aliases and marks round-trips."""
    lines = with_extras(stream, more)
    split = int(len(lines) * cut)
    original = Engine(WINDOWS, ttl=100_000.0)
    replay(lines[:split], original)
    restored = Engine(WINDOWS, ttl=100_000.0)
    restored.restore(ALL_PARTITIONS, original.snapshot(ALL_PARTITIONS))
    end = replay(lines[split:], original)
    replay(lines[split:], restored)
    assert restored.report(end.clock) == original.report(end.clock)
