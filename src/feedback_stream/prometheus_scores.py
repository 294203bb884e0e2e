"""The score-based window gauges: ROC AUC, log loss, Brier, ECE and regression errors.

One metric family per measure, labelled like the classification gauges
(model labels and ``window``). A family gets a sample only for the windows
of models whose outcomes carry that kind of score, and only while the
number is defined (ROC AUC needs both classes, R² two outcomes, MAPE no
zero truth). ``feedback_stream_window_scored`` counts the outcomes behind
them, for minimum-sample guards in alert rules. Log loss and Brier score
are one family each for binary and probability-row models: a model is one
kind or the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client.core import GaugeMetricFamily, Metric

from feedback_stream.metrics import WindowMetrics
from feedback_stream.scores import ModelKind

__all__ = ["KIND_GAUGE", "SCORE_GAUGES", "ScoreGauges"]

_MODEL: Final = ("namespace", "deployment", "predictor", "model")
_WINDOW: Final = (*_MODEL, "window")

_FAMILIES: Final = (
    ("scored", "feedback_stream_window_scored",
     "Outcomes in the window that carry a score term (binary, probability row or regression)."),
    ("positives", "feedback_stream_window_positives",
     "Scored outcomes of a binary model whose truth is the positive class."),
    ("roc_auc", "feedback_stream_roc_auc", "ROC AUC of a binary model's scores (sklearn)."),
    ("log_loss", "feedback_stream_log_loss",
     "Log loss (cross-entropy) of binary scores or probability rows (sklearn)."),
    ("brier", "feedback_stream_brier_score",
     "Brier score of binary scores or probability rows (sklearn, scale_by_half=auto)."),
    ("ece", "feedback_stream_expected_calibration_error",
     "Expected calibration error of probability rows, 10 equal confidence bins."),
    ("mae", "feedback_stream_mean_absolute_error", "Mean absolute error of a regression model."),
    ("mse", "feedback_stream_mean_squared_error", "Mean squared error of a regression model."),
    ("rmse", "feedback_stream_root_mean_squared_error",
     "Root mean squared error of a regression model."),
    ("r2", "feedback_stream_r2_score", "Coefficient of determination R² of a regression model."),
    ("mean_error", "feedback_stream_mean_error",
     "Mean of prediction - truth (bias) of a regression model."),
    ("mape", "feedback_stream_mean_absolute_percentage_error",
     "Mean absolute percentage error (a ratio) of a regression model; absent while a truth is 0."),
    ("zero_truths", "feedback_stream_window_zero_truths",
     "Regression outcomes in the window whose truth is 0 (MAPE is undefined for them)."),
)  # fmt: skip

SCORE_GAUGES: Final[dict[str, tuple[str, str]]] = {
    field: (name, doc) for field, name, doc in _FAMILIES
}
"""(name, HELP) of each score family by its field in the quality metrics, in exposition order."""

KIND_GAUGE: Final = (
    "feedback_stream_model_kind",
    "1 for the kind a model's outputs are read as, with whether it was declared.",
)
"""(name, HELP) of the model-kind family (labels: model labels, ``kind``, ``declared``)."""


class ScoreGauges:
    """The families of one scrape; :meth:`add` per (model, window), then iterate."""

    def __init__(self) -> None:
        self._families = {
            field: GaugeMetricFamily(name, doc, labels=list(_WINDOW))
            for field, name, doc in _FAMILIES
        }
        self.kind = GaugeMetricFamily(*KIND_GAUGE, labels=[*_MODEL, "kind", "declared"])

    def add_kind(self, labels: Sequence[str], kind: ModelKind, declared: bool) -> None:
        self.kind.add_metric([*labels, kind.value, "true" if declared else "false"], 1.0)

    def add(self, labels: Sequence[str], metrics: WindowMetrics) -> None:
        """Samples of one window of one model; ``labels`` are the model labels and window."""
        families = self._families
        quality = metrics.quality
        scored = 0
        for part in (quality.binary, quality.probability, quality.regression):
            if part is None:
                continue
            scored += part.scored
            for field, value in part.to_dict().items():
                family = families.get(field)
                if family is not None and field != "scored" and value is not None:
                    family.add_metric(list(labels), float(value))
        if quality.binary or quality.probability or quality.regression:
            families["scored"].add_metric(list(labels), float(scored))

    def __iter__(self) -> Iterator[Metric]:
        yield self.kind
        yield from self._families.values()
