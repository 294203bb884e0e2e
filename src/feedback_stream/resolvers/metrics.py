"""Prometheus series of the orphan-feedback resolvers.

``feedback_stream_orphan_feedback_total{resolver, result, reason}``: feedback
that no logged response answered when it was read, by what the resolver
made of it (``result="resolved"``, or ``"unresolved"`` with the reason:
``timeout``, ``unreachable``, ``status_4xx``/``status_5xx``,
``bad_prediction``, ``no_request``; the Elasticsearch lookup: ``not_found``,
``error``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ResolverCollector", "ResolverCounts"]


class ResolverCounts(Protocol):
    """What a resolver counts: feedback resolved, and unresolved by reason."""

    @property
    def resolved(self) -> int: ...

    @property
    def unresolved(self) -> Counter[str]: ...


class ResolverCollector(Collector):
    """Reads the resolvers' counts at scrape time (no per-call Prometheus cost).

    Args:
        resolvers: by the ``resolver`` label (``prediction_url``, ``elasticsearch``).
    """

    def __init__(self, resolvers: Mapping[str, ResolverCounts]) -> None:
        self._resolvers = dict(resolvers)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "feedback_stream_orphan_feedback",
            "Feedback no logged response answered, by what the resolver made of it.",
            labels=["resolver", "result", "reason"],
        )
        for name, resolver in sorted(self._resolvers.items()):
            family.add_metric([name, "resolved", ""], resolver.resolved)
            for reason, count in sorted(resolver.unresolved.items()):
                family.add_metric([name, "unresolved", reason], count)
        yield family
