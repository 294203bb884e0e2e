"""Binary, probability and regression numbers equal scikit-learn's, in every window kind.

Streams with amendments (later feedback wins), redeliveries and disorder go
through the engine; the oracle (tests/_score_streams.py) works out the live
outcomes by the rules and computes every number with sklearn.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.replay import replay
from tests._score_streams import (
    KEY,
    VARIANTS,
    ScoreStream,
    assert_numbers,
    expected,
    in_window,
    kinds_for,
    live_outcomes,
    score_streams,
)

WINDOWS = ("total", "30s", "4")
_SECTION = {"binary": "binary", "binary2": "binary", "probability": "probability",
            "regression": "regression"}  # fmt: skip


def _check(engine: Engine, stream: ScoreStream, clock: float) -> None:
    report = engine.report(clock)
    (model,) = [m for m in report["models"] if m["model"] == KEY.model]
    assert model["kind"] == ("classification" if stream.variant == "probability" else
                             _SECTION[stream.variant])  # fmt: skip
    live = live_outcomes(stream)
    for spec in engine.specs:
        window = model["windows"][spec.name]
        wanted = expected(stream.variant, in_window(live, spec, clock))
        got = window[_SECTION[stream.variant]]
        if wanted is None:
            assert got is None, (spec.name, got)
        else:
            assert_numbers(got, wanted, spec.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), variant=st.sampled_from(VARIANTS))
def test_every_number_equals_sklearn_in_every_window(data: st.DataObject, variant: str) -> None:
    stream = data.draw(score_streams(variant))
    engine = Engine(WINDOWS, ttl=1e6, kinds=kinds_for(variant))
    result = replay(stream.lines(), engine)
    assert result.errors == []
    assert result.clock is not None
    _check(engine, stream, result.clock)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), variant=st.sampled_from(VARIANTS), cut=st.floats(0.0, 1.0))
def test_scores_survive_a_snapshot(data: st.DataObject, variant: str, cut: float) -> None:
    stream = data.draw(score_streams(variant))
    lines = stream.lines()
    split = int(len(lines) * cut)
    original = Engine(WINDOWS, ttl=1e6, kinds=kinds_for(variant))
    replay(lines[:split], original)
    restored = Engine(WINDOWS, ttl=1e6, kinds=kinds_for(variant))
    restored.restore(ALL_PARTITIONS, original.snapshot(ALL_PARTITIONS))
    assert restored.report(original.clock) == original.report(original.clock)
    end = replay(lines[split:], original)
    replay(lines[split:], restored)
    assert end.clock is not None
    assert restored.report(end.clock) == original.report(end.clock)
    _check(restored, stream, end.clock)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), variant=st.sampled_from(VARIANTS))
def test_partition_states_merge_to_the_same_numbers(data: st.DataObject, variant: str) -> None:
    """Two states (one per half of the puids) read together equal one state of everything."""
    stream = data.draw(score_streams(variant))
    for index, record in enumerate(stream.records):
        record["partition"] = int(record["headers"]["ce_requestid"][1:]) % 2
        record["offset"] = index
    engine = Engine(WINDOWS[:2], ttl=1e6, route="partition", kinds=kinds_for(variant))
    result = replay(stream.lines(), engine)
    assert result.clock is not None
    assert len(engine.states) <= 2
    whole = Engine(WINDOWS[:2], ttl=1e6, kinds=kinds_for(variant))
    replay(stream.lines(), whole)
    section = _SECTION[variant]
    for name in WINDOWS[:2]:
        split_doc = engine.metrics(KEY, name, result.clock).to_dict()[section]
        whole_doc = whole.metrics(KEY, name, result.clock).to_dict()[section]
        if whole_doc is None:
            assert split_doc is None
        else:
            assert_numbers(split_doc, whole_doc, name)
