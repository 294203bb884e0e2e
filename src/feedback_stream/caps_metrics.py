"""The caps on /metrics: evictions, folded classes, tracked models.

``feedback_stream_evicted_total{type}`` counts the unjoined parts of puids
evicted at the pending cap, ``feedback_stream_folded_classes_total`` the
class values counted as ``__other__``, and
``feedback_stream_tracked_models`` how many models are tracked on their own
(models past the cap are counted by the ``model="__overflow__"`` series of
every model counter). See :mod:`feedback_stream.caps`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedback_stream.caps import Caps

__all__ = ["CapsCollector"]

_KINDS = ("request", "response", "feedback")


class CapsCollector(Collector):
    """Reads an engine's :class:`~feedback_stream.caps.Caps` at every scrape."""

    def __init__(self, caps: Caps) -> None:
        self._caps = caps

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        caps = self._caps
        evicted = CounterMetricFamily(
            "feedback_stream_evicted",
            "Unjoined events dropped because the pending cap evicted their puid, by type.",
            labels=["type"],
        )
        for kind in _KINDS:
            evicted.add_metric([kind], caps.evicted.get(kind, 0))
        classes = CounterMetricFamily(
            "feedback_stream_folded_classes",
            "Class values past a model's max_classes, counted as __other__.",
        )
        classes.add_metric([], caps.folded_classes)
        tracked = GaugeMetricFamily(
            "feedback_stream_tracked_models", "Models tracked on their own (at most max_models)."
        )
        tracked.add_metric([], caps.tracked_models)
        yield from (evicted, classes, tracked)
