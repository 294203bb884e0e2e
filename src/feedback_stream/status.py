"""The processor's health at a glance: broker, pending joins, caps, refusals.

``GET /api/v1/status`` answers this document and the live page shows it as
one line, so a broker outage (``/readyz`` stays 200 while metrics are still
served) or a flood that evicts pending puids is visible without a
Prometheus query::

    {"broker": {"connected": true, "assigned": 3, "lag": 12},
     "pending": 1840, "max_pending": 200000,
     "evicted": {"request": 0, "response": 0, "feedback": 0},
     "tracked_models": 4, "max_models": 1000, "folded_classes": 0,
     "refused": {"missing_puid": 2}}

``broker`` is ``null`` without a Kafka source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedback_stream.caps import Caps
from feedback_stream.kafka.consumer import KafkaSource

__all__ = ["BrokerCollector", "status_document"]


def _broker(kafka: KafkaSource | None) -> dict[str, Any] | None:
    if kafka is None:
        return None
    lag = kafka.lag()
    return {
        "connected": kafka.connected,
        "assigned": len(kafka.assigned | kafka.restoring),
        "lag": sum(lag.values()),
    }


def status_document(
    kafka: KafkaSource | None, pending: int, caps: Caps, refused: Mapping[str, float]
) -> dict[str, Any]:
    """The ``/api/v1/status`` document (see the module docstring)."""
    return {
        "broker": _broker(kafka),
        "pending": pending,
        "max_pending": caps.max_pending,
        "evicted": {
            kind: caps.evicted.get(kind, 0) for kind in ("request", "response", "feedback")
        },
        "tracked_models": caps.tracked_models,
        "max_models": caps.max_models,
        "folded_classes": caps.folded_classes,
        "refused": dict(refused),
    }


class BrokerCollector(Collector):
    """``feedback_stream_broker_connected`` (1/0) and the total consumer lag, per scrape."""

    def __init__(self, kafka: Any) -> None:
        self._kafka = kafka

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        kafka: KafkaSource | None = self._kafka()
        if kafka is None:
            return
        connected = GaugeMetricFamily(
            "feedback_stream_broker_connected",
            "1 while the Kafka consumer holds a live connection to a broker, else 0.",
        )
        connected.add_metric([], 1.0 if kafka.connected else 0.0)
        lag = GaugeMetricFamily(
            "feedback_stream_consumer_lag_records",
            "Records behind the end, summed over the assigned partitions.",
        )
        lag.add_metric([], float(sum(kafka.lag().values())))
        yield from (connected, lag)
