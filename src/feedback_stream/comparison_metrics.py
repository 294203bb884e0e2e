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
from typing import Final

from prometheus_client.core import GaugeMetricFamily, Metric

from feedback_stream.engine import Engine
from feedback_stream.events import ModelKey
from feedback_stream.paired_statistics import Decision, PairedComparison

__all__ = ["COMPARISON_GAUGES", "COMPARISON_LABELS", "comparison_families", "comparison_samples"]

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


COMPARISON_GAUGES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    (
        "feedback_stream_comparison_pairs",
        "Rows both predictors answered with known correctness, by 2x2 cell.",
        ("cell",),
    ),
    (
        "feedback_stream_comparison_accuracy_difference",
        "Accuracy of the candidate minus accuracy of the baseline, on the paired rows.",
        (),
    ),
    (
        "feedback_stream_comparison_difference_ci_lower",
        "Lower bound of the difference's 95% Newcombe interval (fixed-sample).",
        (),
    ),
    (
        "feedback_stream_comparison_difference_ci_upper",
        "Upper bound of the difference's 95% Newcombe interval (fixed-sample).",
        (),
    ),
    (
        "feedback_stream_comparison_mcnemar_p_value",
        "McNemar's exact p-value (valid for one look at a fixed sample size only).",
        (),
    ),
    (
        "feedback_stream_comparison_always_valid_p_value",
        "Mixture SPRT p-value: below alpha at any look at most alpha of the time under no "
        "difference.",
        (),
    ),
    (
        "feedback_stream_comparison_decision",
        "Always-valid decision: 1 candidate better, -1 worse, 0 no difference yet.",
        (),
    ),
    (
        "feedback_stream_comparison_pairs_needed",
        "Roughly how many more labelled pairs would detect the configured accuracy difference.",
        (),
    ),
)
"""(name, HELP, label names after :data:`COMPARISON_LABELS`) of each family, in order."""


def comparison_samples(result: PairedComparison) -> list[list[tuple[tuple[str, ...], float]]]:
    """Per family of :data:`COMPARISON_GAUGES`, (extra label values, value) of one window."""
    table = result.table
    samples: list[list[tuple[tuple[str, ...], float]]] = [[] for _ in COMPARISON_GAUGES]
    for cell, count in (
        ("both_right", table.both_right),
        ("baseline_only", table.baseline_only),
        ("candidate_only", table.candidate_only),
        ("both_wrong", table.both_wrong),
    ):
        samples[0].append(((cell,), count))
    if result.difference is not None:
        samples[1].append(((), result.difference))
    if result.difference_ci95 is not None:
        samples[2].append(((), result.difference_ci95[0]))
        samples[3].append(((), result.difference_ci95[1]))
    samples[4].append(((), result.mcnemar_p))
    samples[5].append(((), result.always_valid_p))
    samples[6].append(((), _DECISION_VALUE[result.decision]))
    if result.pairs_needed is not None:
        samples[7].append(((), result.pairs_needed))
    return samples


def comparison_families(
    engine: Engine, now: float, admits: Callable[[ModelKey], bool]
) -> Iterator[Metric]:
    """The comparison gauges; comparisons of models ``admits`` refuses are left out."""
    families = [
        GaugeMetricFamily(name, doc, labels=[*COMPARISON_LABELS, *extra])
        for name, doc, extra in COMPARISON_GAUGES
    ]
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
            for family, samples in zip(families, comparison_samples(result), strict=True):
                for extra, value in samples:
                    family.add_metric([*values, *extra], value)
    yield from families
