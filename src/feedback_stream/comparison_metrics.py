"""Prometheus gauges of the paired comparisons, read from the engine at scrape time.

One family per measure; labels ``namespace``, ``deployment``, ``baseline``
and ``candidate`` (predictor names), ``baseline_model`` and
``candidate_model``, and ``window``. The 2x2 table is one family with a
``cell`` label (``both_right``, ``baseline_only``, ``candidate_only``,
``both_wrong``). ``feedback_stream_comparison_decision`` is +1 when the
always-valid test says the candidate is better, -1 worse, 0 not yet; the
alert rules use it with a minimum number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from feedback_stream.engine import Engine
from feedback_stream.events import ModelKey
from feedback_stream.paired_statistics import Decision

__all__ = ["COMPARISON_LABELS", "comparison_families"]

COMPARISON_LABELS = (
    "namespace",
    "deployment",
    "baseline",
    "candidate",
    "baseline_model",
    "candidate_model",
    "window",
)

_DECISION_VALUE = {Decision.BETTER: 1.0, Decision.WORSE: -1.0, Decision.UNDECIDED: 0.0}


def comparison_families(
    engine: Engine, now: float, admits: Callable[[ModelKey], bool]
) -> Iterator[Metric]:
    """The comparison gauges; comparisons of models ``admits`` refuses are left out."""
    labels = list(COMPARISON_LABELS)

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*labels, *extra])

    pairs = gauge(
        "feedback_stream_comparison_pairs",
        "Rows both predictors answered with known correctness, by 2x2 cell.",
        ("cell",),
    )
    difference = gauge(
        "feedback_stream_comparison_accuracy_difference",
        "Accuracy of the candidate minus accuracy of the baseline, on the paired rows.",
    )
    ci_lower = gauge(
        "feedback_stream_comparison_difference_ci_lower",
        "Lower bound of the difference's 95% Newcombe interval (fixed-sample).",
    )
    ci_upper = gauge(
        "feedback_stream_comparison_difference_ci_upper",
        "Upper bound of the difference's 95% Newcombe interval (fixed-sample).",
    )
    mcnemar = gauge(
        "feedback_stream_comparison_mcnemar_p_value",
        "McNemar's exact p-value (valid for one look at a fixed sample size only).",
    )
    always_valid = gauge(
        "feedback_stream_comparison_always_valid_p_value",
        "Mixture SPRT p-value: below alpha at any look at most alpha of the time under no "
        "difference.",
    )
    decision = gauge(
        "feedback_stream_comparison_decision",
        "Always-valid decision: 1 candidate better, -1 worse, 0 no difference yet.",
    )
    needed = gauge(
        "feedback_stream_comparison_pairs_needed",
        "Roughly how many more labelled pairs would detect the configured accuracy difference.",
    )
    for comparison in engine.comparison_keys():
        if not (admits(comparison.baseline) and admits(comparison.candidate)):
            continue
        base, cand = comparison.baseline, comparison.candidate
        for spec in engine.specs:
            result = engine.comparison(comparison, spec.name, now)
            values = [
                comparison.namespace,
                comparison.deployment,
                base.predictor,
                cand.predictor,
                base.model,
                cand.model,
                spec.name,
            ]
            table = result.table
            for cell, count in (
                ("both_right", table.both_right),
                ("baseline_only", table.baseline_only),
                ("candidate_only", table.candidate_only),
                ("both_wrong", table.both_wrong),
            ):
                pairs.add_metric([*values, cell], count)
            if result.difference is not None:
                difference.add_metric(values, result.difference)
            if result.difference_ci95 is not None:
                ci_lower.add_metric(values, result.difference_ci95[0])
                ci_upper.add_metric(values, result.difference_ci95[1])
            mcnemar.add_metric(values, result.mcnemar_p)
            always_valid.add_metric(values, result.always_valid_p)
            decision.add_metric(values, _DECISION_VALUE[result.decision])
            if result.pairs_needed is not None:
                needed.add_metric(values, result.pairs_needed)
    yield from (pairs, difference, ci_lower, ci_upper, mcnemar, always_valid, decision, needed)
