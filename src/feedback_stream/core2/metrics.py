"""Prometheus counter of failed inferences read from Core 2's errors topic."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from feedback_stream.core2.records import ModelError
from feedback_stream.partition import PartitionState
from feedback_stream.prometheus import MODEL_LABELS, LabelGuard

__all__ = ["ModelErrorMetrics"]


class ModelErrorMetrics:
    """``feedback_stream_model_errors_total{namespace, deployment, predictor, model}``.

    One increment per record of a namespace's ``errors.errors`` topic, under
    the model the record names (within the service's cardinality caps).
    """

    def __init__(self, registry: CollectorRegistry, guard: LabelGuard) -> None:
        self._guard = guard
        self.errors = Counter(
            "feedback_stream_model_errors",
            "Failed inferences Seldon Core 2 wrote to its errors topic, by model.",
            list(MODEL_LABELS),
            registry=registry,
        )

    def on_model_error(self, error: ModelError) -> None:
        self.errors.labels(*self._guard.model_labels(error.key)).inc()

    def adopt(self, state: PartitionState, sign: int = 1) -> None:
        """Add (restored) or take away (released) a state's counts, as ServiceMetrics does."""
        for key, n in state.events.model_errors.items():
            if n:
                child: Any = self.errors.labels(*self._guard.model_labels(key))
                child._value.inc(sign * n)
