"""Label delay percentiles: how long feedback takes to come, per model and window.

The label delay of a (response, feedback) pair is feedback time minus
response time, in seconds. Two sources, one per kind of window:

* sliding time and count windows hold their outcomes, so their p50 / p90 /
  p99 are exact: the inverted-CDF quantile (``numpy.quantile(...,
  method="inverted_cdf")``, Hyndman & Fan 1996 definition 1) of the delays
  of the responses in the window (each response once, by its row 0);
* the cumulative window keeps no outcomes, so each model counts the delays
  of its standing (response, feedback) pairs in logarithmic buckets
  (:class:`DelayHistogram`): 16 per doubling, so a percentile read from
  them is within 2.2 % of the exact one. Delays of 0 or less (clock skew)
  have a bucket of their own and read as 0.

The Prometheus histogram ``feedback_stream_label_delay_seconds`` has the
same observations with coarse buckets, for PromQL's ``histogram_quantile``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["LABEL_DELAY_BUCKETS", "PERCENTILES", "DelayHistogram", "percentiles"]

LABEL_DELAY_BUCKETS: Final = (
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 604800.0,
)  # fmt: skip
"""Upper bounds (seconds) of the ``feedback_stream_label_delay_seconds`` histogram's buckets."""

PERCENTILES: Final = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_PER_DOUBLING: Final = 16
_LOG_BASE: Final = math.log(2.0) / _PER_DOUBLING
_NOT_POSITIVE: Final = -(10**6)
"""Bucket of delays <= 0 (below every real bucket: 2 ** (-10**6 / 16) s is 0)."""


def _nearest_rank(count: int, q: float) -> int:
    """0-based rank of the inverted-CDF ``q`` quantile of ``count`` sorted values."""
    return max(0, math.ceil(q * count) - 1)


def percentiles(delays: Iterable[float]) -> dict[str, float | None]:
    """Exact p50 / p90 / p99 (inverted CDF) of ``delays``; ``None`` each without any."""
    ordered = sorted(delays)
    if not ordered:
        return {name: None for name, _ in PERCENTILES}
    return {name: ordered[_nearest_rank(len(ordered), q)] for name, q in PERCENTILES}


class DelayHistogram:
    """Delays counted in logarithmic buckets (mergeable, serialisable as a dict)."""

    __slots__ = ("buckets",)

    def __init__(self, buckets: Mapping[int, int] | None = None) -> None:
        self.buckets: Counter[int] = Counter(buckets or {})

    @staticmethod
    def bucket(delay: float) -> int:
        if not delay > 0:
            return _NOT_POSITIVE
        return math.floor(math.log(delay) / _LOG_BASE)

    def add(self, delay: float, count: int = 1) -> None:
        """Count ``delay`` ``count`` times (a negative count takes it back)."""
        bucket = self.bucket(delay)
        left = self.buckets[bucket] + count
        if left:
            self.buckets[bucket] = left
        else:
            del self.buckets[bucket]

    def merge(self, other: DelayHistogram) -> None:
        self.buckets.update(other.buckets)

    def percentiles(self) -> dict[str, float | None]:
        """p50 / p90 / p99: each the geometric middle of the bucket holding it."""
        total = sum(self.buckets.values())
        if not total:
            return {name: None for name, _ in PERCENTILES}
        order = sorted(self.buckets.items())
        out: dict[str, float | None] = {}
        for name, q in PERCENTILES:
            rank = _nearest_rank(total, q)
            seen = 0
            for index, count in order:
                seen += count
                if seen > rank:
                    out[name] = (
                        0.0 if index == _NOT_POSITIVE else math.exp((index + 0.5) * _LOG_BASE)
                    )
                    break
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DelayHistogram):
            return NotImplemented
        return +self.buckets == +other.buckets

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DelayHistogram({dict(self.buckets)})"

    def to_dict(self) -> dict[str, int]:
        return {str(index): count for index, count in self.buckets.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> DelayHistogram:
        return cls({int(index): count for index, count in data.items()})
