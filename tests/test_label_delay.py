"""Label delay percentiles against numpy: exact for windows, within 2.2 % for the total."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.label_delay import DelayHistogram, percentiles

delays = st.lists(
    st.one_of(st.floats(0.001, 10**6), st.just(0.0), st.floats(-5.0, 0.0)), min_size=1, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(values=delays)
def test_window_percentiles_equal_numpy_inverted_cdf(values: list[float]) -> None:
    got = percentiles(values)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert got[name] == float(np.quantile(values, q, method="inverted_cdf"))


@settings(max_examples=200, deadline=None)
@given(values=delays, split=st.integers(0, 300))
def test_histogram_percentiles_are_within_its_bucket_width(values: list[float], split: int) -> None:
    first, second = DelayHistogram(), DelayHistogram()
    for i, value in enumerate(values):
        (first if i < split else second).add(value)
    first.merge(second)
    restored = DelayHistogram.from_dict(first.to_dict())
    got = restored.percentiles()
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        read = got[name]
        assert read is not None
        if exact <= 0:
            assert read == 0.0
        else:
            assert abs(read - exact) <= 0.0222 * exact


def test_no_delays_no_percentiles() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None}
    assert DelayHistogram().percentiles() == {"p50": None, "p90": None, "p99": None}
