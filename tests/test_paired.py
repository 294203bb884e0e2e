"""Paired comparisons end to end against a brute-force reference, statsmodels and scipy.

Random Seldon streams (disorder, duplicates, amendments, multi-row batches,
unknown-truth feedback, expiries; :mod:`tests._oracle`) go through the
engine. The reference pairs the live outcomes of two predictors of one
puid by definition (same puid, same join entry, same row), cuts each
window from those pairs, and the 2x2 table, McNemar's exact p-value
(statsmodels) and the binomial test (scipy) must equal the engine's.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar

from feedback_stream import snapshot
from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.outcomes import Outcome
from feedback_stream.paired import Comparison, comparisons_of, parse_pair_rules
from feedback_stream.paired_statistics import PairTable
from feedback_stream.replay import replay
from feedback_stream.windows import WindowSpec
from tests._oracle import RefOutcome, Stream, assert_p_close, reference, streams, window_outcomes

WINDOWS = ("total", "30s", "2m", "5", "1")
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reference_pairs(live: list[RefOutcome]) -> dict[Comparison, list[RefOutcome]]:
    """Every pair of live outcomes of two compared predictors, by definition."""
    by_slot: dict[tuple[str, int, int], dict[ModelKey, RefOutcome]] = {}
    for outcome in live:
        by_slot.setdefault((outcome.puid, outcome.life, outcome.row), {})[outcome.key] = outcome
    pairs: dict[Comparison, list[RefOutcome]] = {}
    for held in by_slot.values():
        keys = sorted(held)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                for comparison in comparisons_of(a, b, ()):
                    base, cand = held[comparison.baseline], held[comparison.candidate]
                    known = base.correct is not None and cand.correct is not None
                    pairs.setdefault(comparison, []).append(
                        RefOutcome(
                            cand.key,
                            "1" if cand.correct else "0",
                            ("1" if base.correct else "0") if known else None,
                            (base.correct == cand.correct) if known else None,
                            None,
                            max(base.time, cand.time),
                            max(base.stamp, cand.stamp),
                        )
                    )
    return pairs


def _table(pairs: list[RefOutcome]) -> PairTable:
    cells = [(p.truth, p.predicted) for p in pairs if p.truth is not None]
    return PairTable(
        cells.count(("1", "1")),
        cells.count(("1", "0")),
        cells.count(("0", "1")),
        cells.count(("0", "0")),
    )


def _check(stream: Stream, ttl: float, basis: str) -> dict[str, Any]:
    engine = Engine(WINDOWS, ttl=ttl, time_basis=basis)
    result = replay(stream.lines(), engine)
    ref = reference(stream, ttl, basis)
    expected = _reference_pairs(ref.live())
    report = engine.report(result.clock)
    assert engine.comparison_keys() == sorted(expected)
    assert len(report["comparisons"]) == len(expected)
    for comparison, entry in zip(engine.comparison_keys(), report["comparisons"], strict=True):
        for name in WINDOWS:
            spec = WindowSpec.parse(name)
            table = _table(window_outcomes(expected[comparison], spec, ref.clock))
            got = entry["windows"][name]
            assert got["table"] == {
                "both_right": table.both_right,
                "baseline_only": table.baseline_only,
                "candidate_only": table.candidate_only,
                "both_wrong": table.both_wrong,
            }, (comparison, name)
            if table.pairs:
                oracle = mcnemar(table.as_matrix(), exact=True).pvalue
                assert_p_close(got["mcnemar_p"], oracle)
            if table.discordant:
                binomial = binomtest(table.candidate_only, table.discordant, 0.5).pvalue
                assert_p_close(got["mcnemar_p"], binomial)
                assert got["difference"] == pytest.approx(
                    (table.candidate_only - table.baseline_only) / table.pairs
                )
    return report


@PROPERTY
@given(stream=streams(), ttl=st.sampled_from([20.0, 90.0, 3600.0]))
def test_tables_and_p_values_equal_the_reference_by_feedback_time(
    stream: Stream, ttl: float
) -> None:
    _check(stream, ttl, "feedback")


@PROPERTY
@given(stream=streams(), ttl=st.sampled_from([20.0, 90.0, 3600.0]))
def test_tables_and_p_values_equal_the_reference_by_request_time(
    stream: Stream, ttl: float
) -> None:
    _check(stream, ttl, "request")


@settings(max_examples=60, deadline=None)
@given(stream=streams(), cut=st.floats(0.0, 1.0), ttl=st.sampled_from([20.0, 3600.0]))
def test_a_restored_snapshot_gives_the_same_comparisons(
    stream: Stream, cut: float, ttl: float
) -> None:
    """Half a stream, a snapshot round trip, the other half: as if never interrupted."""
    lines = stream.lines()
    at = round(cut * len(lines))
    straight = Engine(WINDOWS, ttl=ttl)
    replay(lines, straight)
    first = Engine(WINDOWS, ttl=ttl)
    replay(lines[:at], first)
    data = snapshot.dumps(first.state(ALL_PARTITIONS))
    restored = Engine(WINDOWS, ttl=ttl)
    restored.restore(ALL_PARTITIONS, data)
    if first.clock != float("-inf"):
        assert restored.comparisons_report(first.clock) == first.comparisons_report(first.clock)
    restored.clock = first.clock
    replay(lines[at:], restored)
    clock = straight.clock
    assert restored.comparisons_report(clock) == straight.comparisons_report(clock)


@settings(max_examples=60, deadline=None)
@given(stream=streams(), ttl=st.sampled_from([20.0, 3600.0]))
def test_partitioned_state_merges_to_the_same_comparisons(stream: Stream, ttl: float) -> None:
    """Input keyed by puid over three partitions reads like one state (count windows too)."""
    records = []
    for record, meaning in zip(stream.records, stream.meanings, strict=True):
        keyed = dict(record)
        keyed["partition"] = zlib.crc32(meaning.puid.encode()) % 3
        records.append(keyed)
    keyed_stream = Stream(records, stream.meanings)
    one = Engine(WINDOWS, ttl=ttl, route="puid")
    many = Engine(WINDOWS, ttl=ttl, route="partition")
    first = replay(keyed_stream.lines(), one)
    replay(keyed_stream.lines(), many)
    assert one.comparisons_report(first.clock) == many.comparisons_report(first.clock)


# ---------------------------------------------------------------- which predictors pair


def test_default_is_the_baseline_and_other_pairs_go_by_name() -> None:
    default = ModelKey("ns", "dep", "default", "m")
    shadow = ModelKey("ns", "dep", "shadow", "m")
    alpha = ModelKey("ns", "dep", "alpha", "m")
    assert comparisons_of(shadow, default, ()) == (Comparison(default, shadow),)
    assert comparisons_of(default, alpha, ()) == (Comparison(default, alpha),)
    assert comparisons_of(shadow, alpha, ()) == (Comparison(alpha, shadow),)
    assert comparisons_of(default, ModelKey("ns", "other", "shadow", "m"), ()) == ()
    assert comparisons_of(default, ModelKey("ns", "dep", "default", "n"), ()) == ()


def test_named_rules_choose_the_pairs_and_their_direction() -> None:
    rules = parse_pair_rules(["shadow -> default"])
    default = ModelKey("ns", "dep", "default", "m")
    shadow = ModelKey("ns", "dep", "shadow", "m")
    canary = ModelKey("ns", "dep", "canary", "m")
    assert comparisons_of(default, shadow, rules) == (Comparison(shadow, default),)
    assert comparisons_of(default, canary, rules) == ()


@pytest.mark.parametrize("text", ["default", "default->", "->shadow", "a->a", "a-b"])
def test_a_malformed_rule_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="baseline->candidate"):
        parse_pair_rules([text])


def _event(kind: EventKind, puid: str, predictor: str, time: float, n: int, **extra: Any) -> Event:
    key = ModelKey("ns", "dep", predictor, "m") if kind is EventKind.RESPONSE else ModelKey()
    return Event(kind, puid, key, time, ("t", str(n)), position=SourcePosition("t", 0, n), **extra)


def test_an_amended_feedback_moves_the_pair_to_its_new_cell() -> None:
    engine = Engine(["total", "10"])
    engine.process_event(_event(EventKind.RESPONSE, "p", "default", 1.0, 1, classes=("a",)))
    engine.process_event(_event(EventKind.RESPONSE, "p", "shadow", 1.0, 2, classes=("b",)))
    engine.process_event(_event(EventKind.FEEDBACK, "p", "", 2.0, 3, classes=("a",)))
    comparison = Comparison(
        ModelKey("ns", "dep", "default", "m"), ModelKey("ns", "dep", "shadow", "m")
    )
    assert engine.comparison(comparison, "total").table == PairTable(baseline_only=1)
    engine.process_event(_event(EventKind.FEEDBACK, "p", "", 3.0, 4, classes=("b",)))
    for window in ("total", "10"):
        assert engine.comparison(comparison, window).table == PairTable(candidate_only=1)
    applied: list[Outcome] = []
    engine.add_outcome_listener(lambda retracted, new: applied.extend(new))
    engine.process_event(_event(EventKind.FEEDBACK, "p", "", 4.0, 5, reward=0.5))
    assert engine.comparison(comparison, "total").table == PairTable()
    assert engine.comparison(comparison, "10").table.pairs == 0
    assert [o.correct for o in applied] == [None, None]
