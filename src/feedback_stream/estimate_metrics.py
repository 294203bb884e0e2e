"""Prometheus gauges of what the labels do not say yet, read at scrape time.

Per model (labels ``namespace``, ``deployment``, ``predictor``, ``model``)
and ``window``: the confidence-based estimate of the accuracy of the
responses still waiting for feedback, with its 95 % interval, how many rows
it covers, and the mean top score of the labelled rows (compare it with
``feedback_stream_accuracy`` to see whether the scores are calibrated, so
whether to trust the estimate; :mod:`feedback_stream.cbpe`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.core import GaugeMetricFamily, Metric

from feedback_stream.engine import Engine
from feedback_stream.events import ModelKey

__all__ = ["UNLABELLED_GAUGES", "unlabelled_families"]

_LABELS = ("namespace", "deployment", "predictor", "model", "window")

UNLABELLED_GAUGES: Final[dict[str, tuple[str, str]]] = {
    "estimated": (
        "feedback_stream_estimated_accuracy",
        "Accuracy of the responses awaiting feedback, estimated from their top scores (CBPE).",
    ),
    "lower": (
        "feedback_stream_estimated_accuracy_ci_lower",
        "Lower bound of the estimate's 95% interval (valid if the scores are calibrated).",
    ),
    "upper": (
        "feedback_stream_estimated_accuracy_ci_upper",
        "Upper bound of the estimate's 95% interval (valid if the scores are calibrated).",
    ),
    "rows": (
        "feedback_stream_awaiting_feedback_rows",
        "Scored response rows in the window still waiting for feedback.",
    ),
    "confidence": (
        "feedback_stream_labelled_mean_confidence",
        "Mean top score of the labelled rows (calibrated scores match their accuracy).",
    ),
}
"""(name, HELP) of the estimate families, in exposition order (labels: model labels, window)."""


def unlabelled_families(
    engine: Engine, now: float, admits: Callable[[ModelKey], bool]
) -> Iterator[Metric]:
    """The estimate gauges of every model ``admits``."""

    def gauge(field: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(*UNLABELLED_GAUGES[field], labels=list(_LABELS))

    estimated = gauge("estimated")
    lower = gauge("lower")
    upper = gauge("upper")
    rows = gauge("rows")
    confidence = gauge("confidence")
    for key, windows in engine.unlabelled(now).items():
        if not admits(key):
            continue
        for name, values in windows.items():
            labels = [key.namespace, key.deployment, key.predictor, key.model, name]
            estimate = values["estimated_accuracy"]
            rows.add_metric(labels, estimate["rows"] if estimate else 0)
            if estimate:
                estimated.add_metric(labels, estimate["accuracy"])
                lower.add_metric(labels, estimate["accuracy_ci95"][0])
                upper.add_metric(labels, estimate["accuracy_ci95"][1])
            check = values["calibration"]
            if check:
                confidence.add_metric(labels, check["mean_confidence"])
    yield from (estimated, lower, upper, rows, confidence)
