"""Windows against their definitions, over random apply / amend / clock sequences."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.events import ModelKey
from feedback_stream.metrics import Counts
from feedback_stream.outcomes import Outcome, to_tick
from feedback_stream.windows import (
    CountWindow,
    CumulativeWindow,
    ModelWindows,
    SlidingWindow,
    WindowKind,
    WindowSpec,
    parse_duration,
)

KEY = ModelKey("ns", "dep", "default", "m")


def _outcome(seq: int, time: float, truth: str | None, pred: str, reward: float | None) -> Outcome:
    correct = None if truth is None and reward is None else (truth == pred if truth else False)
    return Outcome(
        KEY, f"p{seq}", 0, pred, truth, correct, reward, time, to_tick(time), time, time, None, seq
    )


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("apply"),
            st.integers(0, 30),
            st.sampled_from([None, "a", "b"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([None, 0.0, 1.0, 0.3]),
        ),
        st.tuples(
            st.just("amend"), st.integers(0, 1000), st.integers(0, 30), st.sampled_from(["a", "b"])
        ),
        st.tuples(st.just("advance"), st.integers(0, 6)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=operations,
    width=st.integers(1, 8),
    size=st.integers(1, 6),
    start=st.integers(0, 10),
)
def test_windows_hold_exactly_what_their_definitions_say(
    ops: list[tuple[Any, ...]], width: int, size: int, start: int
) -> None:
    specs = [WindowSpec.parse("total"), WindowSpec.parse(f"{width}s"), WindowSpec.parse(str(size))]
    model = ModelWindows(specs)
    clock = float(start)
    model.advance(to_tick(clock))
    applied: list[Outcome] = []
    seq = 0

    def apply(outcome: Outcome) -> None:
        model.advance(to_tick(clock))
        model.apply(outcome)
        applied.append(outcome)

    for op in ops:
        if op[0] == "apply":
            _, time, truth, pred, reward = op
            apply(_outcome(seq, float(time), truth, pred, reward))
            seq += 1
        elif op[0] == "amend":
            live = [o for o in applied if not o.retracted]
            if not live:
                continue
            old = live[op[1] % len(live)]
            model.retract(old)
            apply(_outcome(seq, float(op[2]), op[3], old.predicted, old.reward))
            seq += 1
        else:
            clock += op[1]
            model.advance(to_tick(clock))
    live = [o for o in applied if not o.retracted]
    high = to_tick(clock)
    low = high - width * 1_000_000
    expected = {
        "total": Counts.of(live),
        f"{width}s": Counts.of(o for o in live if low < o.tick <= high),
        str(size): Counts.of(sorted(live, key=lambda o: o.seq)[-size:]),
    }
    for name, counts in expected.items():
        assert model.counts(name, high) == counts, name
    assert sorted(o.seq for o in model.windows[str(size)].live()) == sorted(
        o.seq for o in sorted(live, key=lambda o: o.seq)[-size:]
    )


def test_sliding_window_bounds_are_exclusive_below_inclusive_above() -> None:
    window = SlidingWindow(10.0)
    window.advance(to_tick(100.0))
    at_low = _outcome(0, 90.0, "a", "a", None)
    inside = _outcome(1, 90.001, "a", "a", None)
    at_high = _outcome(2, 100.0, "a", "b", None)
    future = _outcome(3, 100.5, "b", "b", None)
    for outcome in (at_low, inside, at_high, future):
        window.apply(outcome)
    assert window.counts().outcomes == 2
    window.advance(to_tick(100.5))  # (90.5, 100.5]: the future one in, 90.001 out
    assert window.counts().outcomes == 2
    window.retract(future)
    future.retracted = True
    window.retract(at_low)  # never counted: must not be subtracted
    assert window.counts().outcomes == 1
    window.advance(to_tick(110.001))
    assert window.counts().outcomes == 0


def test_retracting_a_future_outcome_keeps_it_out() -> None:
    window = SlidingWindow(10.0)
    window.advance(to_tick(100.0))
    future = _outcome(0, 105.0, "a", "a", None)
    window.apply(future)
    window.retract(future)
    future.retracted = True
    window.advance(to_tick(106.0))
    assert window.counts().outcomes == 0


def test_count_window_gives_back_the_outcome_a_retraction_lets_in() -> None:
    window = CountWindow(2)
    outcomes = [_outcome(i, float(i), "a", "a", None) for i in range(4)]
    for o in outcomes:
        window.apply(o)
    window.retract(outcomes[3])
    outcomes[3].retracted = True
    assert sorted(o.seq for o in window.live()) == [1, 2]


def test_cumulative_window_counts_everything() -> None:
    window = CumulativeWindow()
    a = _outcome(0, 1.0, "a", "b", 1.0)
    window.apply(a)
    window.apply(_outcome(1, 2.0, None, "b", 0.0))
    window.retract(a)
    counts = window.counts()
    assert (counts.outcomes, counts.known, counts.reward_count, counts.reward_sum) == (1, 1, 1, 0.0)


@pytest.mark.parametrize(
    ("text", "kind", "width", "size"),
    [
        ("total", WindowKind.TOTAL, 0.0, 0),
        ("30s", WindowKind.TIME, 30.0, 0),
        ("5m", WindowKind.TIME, 300.0, 0),
        ("1h", WindowKind.TIME, 3600.0, 0),
        ("250ms", WindowKind.TIME, 0.25, 0),
        ("1000", WindowKind.COUNT, 0.0, 1000),
    ],
)
def test_window_spec_parse(text: str, kind: WindowKind, width: float, size: int) -> None:
    spec = WindowSpec.parse(text)
    assert (spec.name, spec.kind, spec.width_s, spec.size) == (text, kind, width, size)


@pytest.mark.parametrize("text", ["0", "-5m", "5x", "", "abc", "0s"])
def test_window_spec_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"window|duration|count|positive"):
        WindowSpec.parse(text)


def test_parse_duration_plain_seconds() -> None:
    assert parse_duration("90") == 90.0
    assert parse_duration("1.5h") == 5400.0
