"""The report document (``replay --output json``, ``GET /api/v1/metrics``) and its table.

The document's shape is fixed by issue 3; extensions are additive keys:
per model ``counters`` (responses, labelled, conflicts, ...), in
``events`` the ``invalid_reasons`` breakdown and ``pending`` puids, and a
top-level ``comparisons`` list (paired baseline vs candidate statistics,
:mod:`feedback_stream.paired_statistics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from feedback_stream.events import ModelKey
from feedback_stream.metrics import WindowMetrics
from feedback_stream.scores import ModelKind

if TYPE_CHECKING:
    from feedback_stream.partition import EventCounters, ModelCounters

__all__ = ["build_report", "render_table"]

_KINDS = ("request", "response", "feedback")
_DETECTED = (ModelKind.CLASSIFICATION, False)


def build_report(
    models: Sequence[tuple[ModelKey, Mapping[str, WindowMetrics], ModelCounters]],
    events: EventCounters,
    pending: int,
    kinds: Mapping[ModelKey, tuple[ModelKind, bool]] | None = None,
) -> dict[str, Any]:
    """The report document; ``models`` must already be sorted by key.

    ``kinds`` gives each model's (kind, declared); a model it lacks is
    reported as a detected classification model. An undeclared model some
    of whose responses needed a declared kind reports ``kind: needs_kind``.
    """
    kinds = kinds or {}
    return {
        "models": [
            {
                "namespace": key.namespace,
                "deployment": key.deployment,
                "predictor": key.predictor,
                "model": key.model,
                "kind": _kind(kinds.get(key, _DETECTED), counters),
                "kind_declared": kinds.get(key, _DETECTED)[1],
                "windows": {name: metrics.to_dict() for name, metrics in windows.items()},
                "counters": {
                    "responses": counters.responses,
                    "labelled_responses": counters.labelled,
                    "conflicts": counters.conflicts,
                    "outcomes_applied": sum(counters.applied.values()),
                    "outcomes_retracted": sum(counters.retracted.values()),
                    "label_delay_mean_s": (
                        counters.label_delay_sum_us / counters.label_delay_count / 1_000_000
                        if counters.label_delay_count
                        else None
                    ),
                    "last_feedback_time": counters.last_feedback_time,
                    "needs_kind": counters.needs_kind,
                },
            }
            for key, windows, counters in models
        ],
        "events": {
            **{kind: events.accepted.get(kind, 0) for kind in _KINDS},
            "duplicate": sum(events.duplicate.values()),
            "amended": events.amended,
            "invalid": sum(events.invalid.values()),
            "expired": {kind: events.expired.get(kind, 0) for kind in _KINDS},
            "invalid_reasons": dict(sorted(events.invalid.items())),
            "pending": pending,
        },
    }


def _kind(kind: tuple[ModelKind, bool], counters: ModelCounters) -> str:
    """The declared kind; for an undeclared model, ``needs_kind`` once one was refused."""
    declared = kind[1]
    if not declared and counters.needs_kind:
        return "needs_kind"
    return kind[0].value


_SCORE_COLUMNS = (
    ("binary", ("roc_auc", "log_loss", "brier")),
    ("probability", ("log_loss", "brier", "ece")),
    ("regression", ("mae", "rmse", "r2", "mean_error", "mape")),
)
"""Extra table columns, shown for a model when one of its windows has that section."""


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(report: Mapping[str, Any]) -> str:
    """A plain-text table of a report, one block per model, one row per window."""
    lines: list[str] = []
    columns = (
        "window",
        "outcomes",
        "known",
        "correct",
        "accuracy",
        "ci95",
        "macro_f1",
        "micro_f1",
        "weighted_f1",
        "reward_mean",
    )
    for model in report["models"]:
        kind = model.get("kind")
        lines.append(
            f"{model['namespace']}/{model['deployment']}/{model['predictor']}/{model['model']}"
            + (f" ({kind})" if kind else "")
        )
        windows = model["windows"].values()
        extra = [
            (section, field)
            for section, fields in _SCORE_COLUMNS
            if any(w.get(section) for w in windows)
            for field in fields
        ]
        rows = [(*columns, *(field for _, field in extra))]
        for name, w in model["windows"].items():
            ci = w["accuracy_ci95"]
            scores = tuple(_number((w.get(section) or {}).get(field)) for section, field in extra)
            rows.append(
                (
                    name,
                    str(w["outcomes"]),
                    str(w["known"]),
                    str(w["correct"]),
                    _number(w["accuracy"]),
                    "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]",
                    _number(w["macro"]["f1"]),
                    _number(w["micro"]["f1"]),
                    _number(w["weighted"]["f1"]),
                    _number(w["reward"]["mean"]),
                    *scores,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)))
        lines.append("")
    lines.extend(_comparison_lines(report.get("comparisons", ())))
    events = report["events"]
    expired = events["expired"]
    lines.append(
        "events: "
        + ", ".join(f"{k}={events[k]}" for k in ("request", "response", "feedback"))
        + f", duplicate={events['duplicate']}, amended={events['amended']}"
        + f", invalid={events['invalid']}"
        + ", expired="
        + "/".join(str(expired[k]) for k in ("request", "response", "feedback"))
        + f", pending={events.get('pending', 0)}"
    )
    return "\n".join(lines) + "\n"


def _comparison_lines(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    """One block per comparison: the 2x2 table, the difference and the decision per window."""
    lines: list[str] = []
    columns = (
        "window",
        "pairs",
        "both_right",
        "baseline_only",
        "candidate_only",
        "both_wrong",
        "difference",
        "ci95",
        "mcnemar_p",
        "always_valid_p",
        "decision",
    )
    for comparison in comparisons:
        baseline, candidate = comparison["baseline"], comparison["candidate"]
        lines.append(
            f"{comparison['namespace']}/{comparison['deployment']}: candidate "
            f"{candidate['predictor']}/{candidate['model']} vs baseline "
            f"{baseline['predictor']}/{baseline['model']}"
        )
        rows = [columns]
        for name, w in comparison["windows"].items():
            ci = w["difference_ci95"]
            table = w["table"]
            rows.append(
                (
                    name,
                    str(w["pairs"]),
                    str(table["both_right"]),
                    str(table["baseline_only"]),
                    str(table["candidate_only"]),
                    str(table["both_wrong"]),
                    _number(w["difference"]),
                    "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]",
                    _number(w["mcnemar_p"]),
                    _number(w["always_valid_p"]),
                    w["decision"],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            lines.append("  " + "  ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)))
        lines.append("")
    return lines
