"""Sample values and lines of a window's metrics in the Prometheus text formats, compiled.

``/metrics`` writes ~60 samples for each (model, window) whose counts
changed since the last scrape (:mod:`feedback_stream.exposition`); after new
traffic that is nearly every window, so the loop that turns one window's
:class:`~feedback_stream.metrics.WindowMetrics` into text is part of the
compiled core (mypyc), like :func:`~feedback_stream.metrics.compute` that
feeds it. Text only: no I/O, no clock; the families' names and label sets
come from the caller.

Values are written as Go writes them, as Prometheus' own clients do
(:func:`format_value`, ``prometheus_client.utils.floatToGoString``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

from feedback_stream.metrics import WindowMetrics

__all__ = [
    "ACCURACY",
    "AVG_PRECISION",
    "CI_LOWER",
    "CI_UPPER",
    "CORRECT",
    "F1",
    "KNOWN",
    "OUTCOMES",
    "PRECISION",
    "RECALL",
    "REWARD_PAIRS",
    "REWARD_VALUE",
    "SUPPORT",
    "escape_label_value",
    "format_value",
    "window_lines",
]

# Positions of the window families in the ``names`` given to :func:`window_lines`
# (the order of ``feedback_stream.prometheus.WINDOW_GAUGES``).
OUTCOMES: Final = 0
KNOWN: Final = 1
CORRECT: Final = 2
ACCURACY: Final = 3
CI_LOWER: Final = 4
CI_UPPER: Final = 5
PRECISION: Final = 6
RECALL: Final = 7
F1: Final = 8
SUPPORT: Final = 9
AVG_PRECISION: Final = 10
"""Then average recall (11) and average F1 (12)."""
REWARD_PAIRS: Final = 13
REWARD_VALUE: Final = 14

_INF: Final = math.inf
_BIG: Final = 1e308
_AVERAGES: Final = ("macro", "micro", "weighted")


def format_value(value: float) -> str:
    """A sample value as Go writes it, as Prometheus' own clients do.

    ``+Inf``, ``-Inf``, ``NaN``; otherwise Python's shortest round-trip
    ``repr``, switched to an exponent where Go's ``%g`` would be for positive
    numbers of 8 or more integer digits (``12345678.0`` -> ``1.2345678e+07``),
    exactly as ``prometheus_client.utils.floatToGoString``.
    """
    value = float(value)
    if -_BIG < value < 1e6:  # the common case: no exponent switch, no special value
        return repr(value)
    if value == _INF:
        return "+Inf"
    if value == -_INF:
        return "-Inf"
    if value != value:
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_label_value(value: str) -> str:
    """A label value, to stand between double quotes: backslash, ``"`` and LF escaped."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def window_lines(
    m: WindowMetrics,
    labels: str,
    names: Sequence[str],
    classes: dict[str, tuple[str, str, str, str]],
    admits: Callable[[str], bool],
    lines: list[str],
) -> None:
    """Write one window's samples of the families at the positions above into ``lines``.

    Args:
        m: the window's metrics.
        labels: the window's label set, escaped and sorted (``deployment="d",...``).
        names: the family names, at least up to :data:`REWARD_VALUE`.
        classes: per class, the precision / recall / F1 / support sample names
            with the class's label set, up to the value; filled in for classes
            first seen (a class ``admits`` refuses is left out and not kept:
            the caller's caps).
        admits: whether a class gets its own samples.
        lines: one string per family (all the family's lines of this window,
            "" for none), overwritten at these positions.
    """
    lines[OUTCOMES] = f"{names[OUTCOMES]}{{{labels}}} {format_value(m.outcomes)}\n"
    lines[KNOWN] = f"{names[KNOWN]}{{{labels}}} {format_value(m.known)}\n"
    lines[CORRECT] = f"{names[CORRECT]}{{{labels}}} {format_value(m.correct)}\n"
    lines[REWARD_PAIRS] = f"{names[REWARD_PAIRS]}{{{labels}}} {format_value(m.reward_count)}\n"
    lines[REWARD_VALUE] = f"{names[REWARD_VALUE]}{{{labels}}} {format_value(m.reward_sum)}\n"
    accuracy = m.accuracy
    lines[ACCURACY] = (
        f"{names[ACCURACY]}{{{labels}}} {format_value(accuracy)}\n" if accuracy is not None else ""
    )
    ci = m.accuracy_ci95
    if ci is not None:
        lines[CI_LOWER] = f"{names[CI_LOWER]}{{{labels}}} {format_value(ci[0])}\n"
        lines[CI_UPPER] = f"{names[CI_UPPER]}{{{labels}}} {format_value(ci[1])}\n"
    else:
        lines[CI_LOWER] = lines[CI_UPPER] = ""
    precision: list[str] = []
    recall: list[str] = []
    f1: list[str] = []
    support: list[str] = []
    for label, cm in m.per_class.items():
        prefixes = classes.get(label)
        if prefixes is None:
            if not admits(label):
                continue
            cl = f'{{class="{escape_label_value(label)}",{labels}}} '
            prefixes = (
                f"{names[PRECISION]}{cl}",
                f"{names[RECALL]}{cl}",
                f"{names[F1]}{cl}",
                f"{names[SUPPORT]}{cl}",
            )
            classes[label] = prefixes
        precision.append(f"{prefixes[0]}{format_value(cm.precision)}\n")
        recall.append(f"{prefixes[1]}{format_value(cm.recall)}\n")
        f1.append(f"{prefixes[2]}{format_value(cm.f1)}\n")
        support.append(f"{prefixes[3]}{format_value(cm.support)}\n")
    lines[PRECISION] = "".join(precision)
    lines[RECALL] = "".join(recall)
    lines[F1] = "".join(f1)
    lines[SUPPORT] = "".join(support)
    averages: list[list[str]] = [[], [], []]
    for name, prf in zip(_AVERAGES, (m.macro, m.micro, m.weighted), strict=True):
        if prf is None or math.isnan(prf[0]) or math.isnan(prf[1]) or math.isnan(prf[2]):
            continue
        al = f'{{average="{name}",{labels}}} '
        for i in range(3):
            averages[i].append(f"{names[AVG_PRECISION + i]}{al}{format_value(prf[i])}\n")
    for i in range(3):
        lines[AVG_PRECISION + i] = "".join(averages[i])
