"""Prometheus series of the orphan-feedback resolvers.

``feedback_stream_orphan_feedback_total{resolver, result, reason}``: feedback
that no logged response answered when it was read, by what the resolver
made of it (``result="resolved"``, or ``"unresolved"`` with the reason:
``timeout``, ``unreachable``, ``status_4xx``/``status_5xx``,
``bad_prediction``, ``no_request``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from feedback_stream.resolvers.prediction import PredictionResolver

__all__ = ["ResolverCollector"]


class ResolverCollector(Collector):
    """Reads a resolver's counts at scrape time (no per-call Prometheus cost)."""

    def __init__(self, resolver: PredictionResolver) -> None:
        self._resolver = resolver

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "feedback_stream_orphan_feedback",
            "Feedback no logged response answered, by what the resolver made of it.",
            labels=["resolver", "result", "reason"],
        )
        family.add_metric(["prediction_url", "resolved", ""], self._resolver.resolved)
        for reason, count in sorted(self._resolver.unresolved.items()):
            family.add_metric(["prediction_url", "unresolved", reason], count)
        yield family
