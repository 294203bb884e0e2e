"""``/metrics``: the window gauges written directly in the exposition formats.

``prometheus_client`` formats every sample one by one (label names checked
and escaped, label values escaped, a ``Sample`` and a dict per sample); at
100 models x 10 classes x 3 windows that is ~17,000 window-gauge samples per
scrape, three quarters of the render. :class:`WindowGauges` writes the same
families as :class:`~feedback_stream.prometheus.WindowCollector` (the same
names, HELP texts, label sets and values) straight into text, and keeps from
one scrape to the next what has not changed:

* the escaped label set of each model and of each of its windows;
* the HELP / TYPE header of each family, per format;
* per (model, window), the sample lines of every family the window's counts
  decide, reused while those counts are unchanged (the counts are compared
  exactly, so a time window that slid or a count window that moved renders
  again); likewise per (comparison, window) for the paired-comparison
  families.

The estimate of the responses still awaiting feedback is computed at every
scrape (time windows slide), from the join stores' scored pending rows,
which are read again only when a store may have changed.

The service's own counters and label-delay histogram are written from
their ``prometheus_client`` children's values (:class:`CounterText`);
everything else in the service's registry (refusals, caps, broker, sink) is
still rendered by ``prometheus_client``; the page puts them before the window
families (:class:`MetricsExposition`).

Formats (both are written; ``Accept`` chooses, as ``prometheus_client``'s
``choose_encoder`` does):

* the Prometheus text format 0.0.4
  (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format):
  ``# HELP`` escapes ``\\`` and line feed, label values escape ``\\``,
  ``"`` and line feed; values are Go float strings (``+Inf``, ``-Inf``,
  ``NaN``, ``1.5e+06``: :func:`format_value`);
* OpenMetrics 1.0 (https://prometheus.io/docs/specs/om/open_metrics_spec/):
  the same sample lines, ``# HELP`` also escapes ``"``, and the page ends
  with ``# EOF``.

A request for ``escaping=dots`` or ``escaping=values`` (metric and label
names rewritten) is answered by ``prometheus_client`` for the whole page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from feedback_stream.cbpe import ConfidenceSums, calibration, estimate, pending_windows
from feedback_stream.comparison_metrics import (
    COMPARISON_GAUGES,
    COMPARISON_LABELS,
    comparison_samples,
)
from feedback_stream.engine import Engine
from feedback_stream.estimate_metrics import UNLABELLED_GAUGES
from feedback_stream.events import ModelKey
from feedback_stream.metrics import Counts, compute
from feedback_stream.paired import Comparison, pair_table
from feedback_stream.paired_statistics import PairedComparison, compare
from feedback_stream.partition import PartitionState
from feedback_stream.prometheus import (
    MODEL_GAUGES,
    WINDOW_GAUGES,
    LabelGuard,
    ServiceMetrics,
    WindowCollector,
)
from feedback_stream.prometheus_scores import KIND_GAUGE, SCORE_GAUGES
from feedback_stream.scores import ModelKind
from feedback_stream.window_text import (
    REWARD_VALUE,
    escape_label_value,
    format_value,
    window_lines,
)

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "CounterText",
    "MetricsExposition",
    "WindowGauges",
    "escape_help",
    "escape_label_value",
    "format_value",
    "label_set",
]

TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_INF: Final = math.inf


def escape_help(doc: str, *, openmetrics: bool) -> str:
    """A HELP text: ``\\`` and LF escaped; ``"`` too in OpenMetrics."""
    doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
    return doc.replace('"', '\\"') if openmetrics else doc


def label_set(names: Sequence[str], values: Sequence[str]) -> str:
    """``a="x",b="y"``: pairs sorted by label name (as ``prometheus_client`` writes them).

    Names must be valid Prometheus label names (they are the module's own
    constants); values are escaped.
    """
    pairs = sorted(zip(names, values, strict=True))
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


@dataclass(frozen=True, slots=True)
class _Family:
    """A gauge family: its name and its HELP / TYPE lines in either format."""

    name: str
    text_header: str
    openmetrics_header: str

    @classmethod
    def of(cls, name_doc: tuple[str, str]) -> _Family:
        name, doc = name_doc
        return cls(
            name,
            f"# HELP {name} {escape_help(doc, openmetrics=False)}\n# TYPE {name} gauge\n",
            f"# HELP {name} {escape_help(doc, openmetrics=True)}\n# TYPE {name} gauge\n",
        )

    def header(self, openmetrics: bool) -> str:
        return self.openmetrics_header if openmetrics else self.text_header


_WINDOW: Final = tuple(_Family.of(v) for v in WINDOW_GAUGES.values())
_SCORES: Final = tuple(_Family.of(v) for v in SCORE_GAUGES.values())
_SCORE_INDEX: Final = {field: i for i, field in enumerate(SCORE_GAUGES)}
_UNLABELLED: Final = tuple(_Family.of(v) for v in UNLABELLED_GAUGES.values())
_MODEL: Final = tuple(_Family.of(v) for v in MODEL_GAUGES.values())
_KIND: Final = _Family.of(KIND_GAUGE)
_COMPARISON: Final = tuple(_Family.of((name, doc)) for name, doc, _ in COMPARISON_GAUGES)
_CACHED: Final = (*_WINDOW, *_SCORES, _UNLABELLED[4])
"""Families whose samples of a window depend only on the window's counts
(the labelled rows' mean confidence is the last)."""

_CACHED_NAMES: Final = tuple(family.name for family in _CACHED)
# Positions in ``_CACHED``: the window families as :mod:`feedback_stream.window_text`
# numbers them, then the score families, then the labelled rows' mean confidence.
assert len(_WINDOW) == REWARD_VALUE + 1
_SCORE0 = len(_WINDOW)
_CONFIDENCE = len(_CACHED) - 1

_Fingerprint = tuple[int, int, int, int, float, dict[tuple[str, str], int], object]


def _fingerprint(counts: Counts) -> _Fingerprint:
    """Everything :func:`~feedback_stream.metrics.compute` reads from ``counts``, copied."""
    quality = counts.quality
    return (
        counts.outcomes,
        counts.known,
        counts.correct,
        counts.reward_count,
        counts.reward_sum,
        dict(counts.confusion),
        quality.to_list() if quality is not None and not quality.is_empty() else None,
    )


@dataclass(slots=True)
class _Window:
    """One (model, window): its label sets and the lines its counts gave last time."""

    labels: str
    """``deployment="d",model="m",namespace="n",predictor="p",window="w"``"""
    fingerprint: _Fingerprint | None
    lines: tuple[str, ...]
    """A comparison window's lines, per comparison family ("" for none)."""
    values: tuple[str, ...] = ()
    """A comparison window's label values, in :data:`COMPARISON_LABELS` order."""
    parts: tuple[tuple[int, str], ...] = ()
    """A model window's lines of last time: (position in ``_CACHED``, text), none empty."""
    idle: str = ""
    """The pending-rows sample of the window while it has none pending (``0.0``)."""
    classes: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    """Per class admitted by the guard (once admitted, always), the precision, recall,
    F1 and support sample names with the class's label set, up to the value."""


@dataclass(slots=True)
class _Model:
    labels: str
    """The model's four labels, sorted: ``deployment=..,model=..,namespace=..,predictor=..``."""
    windows: dict[str, _Window]
    kind: tuple[ModelKind, bool] | None = None
    """The (kind, declared) :attr:`kind_line` was written for."""
    kind_line: str = ""


class WindowGauges:
    """The scrape-time window gauges of one engine, written as exposition text.

    The same families, label sets and values as
    :class:`~feedback_stream.prometheus.WindowCollector` over the same
    ``engine``, ``guard``, ``clock`` and ``lag`` (the collector is
    :attr:`collector`, for ``prometheus_client``'s formats and as the
    reference the tests hold this one to). Not thread-safe: one scrape at a
    time (the service scrapes on its event loop).

    Args:
        engine: the windows read.
        guard: the cardinality caps (models beyond ``max_models`` are left
            out, classes beyond the caps too, as the collector does).
        clock: wall-clock seconds (time windows slide with it).
        lag: records behind the end, per (topic, partition).
    """

    def __init__(
        self,
        engine: Engine,
        guard: LabelGuard,
        clock: Callable[[], float],
        lag: Callable[[], Mapping[tuple[str, int], int]] = dict,
    ) -> None:
        self._engine = engine
        self._guard = guard
        self._clock = clock
        self._lag = lag
        self.collector = WindowCollector(engine, guard, clock, lag)
        self._models: dict[ModelKey, _Model] = {}
        self._paired: dict[tuple[Comparison, str], _Window] = {}
        self._pending: list[tuple[ModelKey, float, tuple[float, ...]]] = []
        self._pending_version: tuple[tuple[int, int], ...] | None = None
        self._pending_states: tuple[PartitionState, ...] = ()

    def render(self, *, openmetrics: bool = False) -> str:
        """Every window family, HELP and TYPE first, families in the collector's order.

        Returns text without the OpenMetrics ``# EOF`` line (the page's end
        is the caller's).
        """
        engine = self._engine
        guard = self._guard
        now = self._clock()
        at = engine.clock if now < engine.clock else now
        specs = engine.specs
        names = [spec.name for spec in specs]
        cached: list[list[str]] = [[] for _ in _CACHED]
        unlabelled: list[list[str]] = [[] for _ in _UNLABELLED]
        per_model: list[list[str]] = [[] for _ in _MODEL]
        kinds: list[str] = []
        pending = pending_windows(self._pending_rows(), specs, at) if at != -_INF else {}
        seen: dict[ModelKey, _Model] = {}
        for key in engine.model_keys():
            if not guard.admits(key):
                continue
            model = self._models.get(key)
            if model is None:
                model = _Model(
                    label_set(
                        ("namespace", "deployment", "predictor", "model"),
                        (key.namespace, key.deployment, key.predictor, key.model),
                    ),
                    {},
                )
            seen[key] = model
            kind = engine.kind(key)
            if kind != model.kind:
                kind_labels = label_set(
                    ("namespace", "deployment", "predictor", "model", "kind", "declared"),
                    (
                        key.namespace,
                        key.deployment,
                        key.predictor,
                        key.model,
                        kind[0].value,
                        "true" if kind[1] else "false",
                    ),
                )
                model.kind = kind
                model.kind_line = f"{_KIND.name}{{{kind_labels}}} 1.0\n"
            kinds.append(model.kind_line)
            counters = engine.model_counters(key)
            if counters.responses:
                value = format_value(min(1.0, counters.labelled / counters.responses))
                per_model[0].append(f"{_MODEL[0].name}{{{model.labels}}} {value}\n")
            if counters.last_feedback_time is not None:
                value = format_value(counters.last_feedback_time)
                per_model[1].append(f"{_MODEL[1].name}{{{model.labels}}} {value}\n")
            sums = pending.get(key, {})
            for name in names:
                window = model.windows.get(name)
                if window is None:
                    labels = f'{model.labels},window="{escape_label_value(name)}"'
                    window = model.windows[name] = _Window(labels, None, ())
                counts = engine.counts(key, name, now, share=True)
                fingerprint = _fingerprint(counts)
                if fingerprint != window.fingerprint:
                    lines = self._lines(key, window, counts)
                    window.parts = tuple((i, text) for i, text in enumerate(lines) if text)
                    window.fingerprint = fingerprint
                for i, text in window.parts:
                    cached[i].append(text)
                window_sums = sums.get(name)
                if window_sums is None or not window_sums.rows:  # nothing pending: no estimate
                    if not window.idle:
                        window.idle = f"{_UNLABELLED[3].name}{{{window.labels}}} 0.0\n"
                    unlabelled[3].append(window.idle)
                else:
                    _estimate_lines(unlabelled, window.labels, window_sums)
        self._models = seen
        lag = "".join(
            f'{_MODEL[3].name}{{partition="{partition}",topic="{escape_label_value(topic)}"}} '
            f"{format_value(behind)}\n"
            for (topic, partition), behind in sorted(self._lag().items())
        )
        pending_line = f"{_MODEL[2].name} {format_value(engine.pending)}\n"
        om = openmetrics
        out: list[str] = [self._comparisons(now, openmetrics=om)]
        for i, family in enumerate(_UNLABELLED):
            out.append(family.header(om))
            out.extend(cached[_CONFIDENCE] if i == len(_UNLABELLED) - 1 else unlabelled[i])
        for i, family in enumerate(_WINDOW):
            out.append(family.header(om))
            out.extend(cached[i])
        for i, family in enumerate(_MODEL):
            out.append(family.header(om))
            out.extend(per_model[i] if i < 2 else [pending_line] if i == 2 else [lag])
        out.append(_KIND.header(om))
        out.extend(kinds)
        for i, family in enumerate(_SCORES):
            out.append(family.header(om))
            out.extend(cached[_SCORE0 + i])
        return "".join(out)

    def _pending_rows(self) -> list[tuple[ModelKey, float, tuple[float, ...]]]:
        """The join stores' scored responses awaiting feedback (``JoinStore.pending_scores``).

        Read again only when a join store may have changed: an event was
        taken (a state's accepted count moved), entries left (expiry or the
        pending cap: a pending count moved), or a state came or went.
        """
        states = tuple(self._engine.states.values())
        version = tuple((sum(s.events.accepted.values()), s.join.pending) for s in states)
        held = self._pending_states
        if (
            version == self._pending_version
            and len(states) == len(held)
            and all(a is b for a, b in zip(states, held, strict=True))
        ):
            return self._pending
        self._pending = [item for state in states for item in state.join.pending_scores()]
        self._pending_version = version
        self._pending_states = states
        return self._pending

    def _comparisons(self, now: float, *, openmetrics: bool) -> str:
        """The paired-comparison families; a window's lines reused while its pairs stand."""
        engine = self._engine
        admits = self._guard.admits
        buckets: list[list[str]] = [[] for _ in _COMPARISON]
        seen: dict[tuple[Comparison, str], _Window] = {}
        for comparison in engine.comparison_keys():
            if not (admits(comparison.baseline) and admits(comparison.candidate)):
                continue
            for spec in engine.specs:
                window = self._paired.get((comparison, spec.name))
                if window is None:
                    base, cand = comparison.baseline, comparison.candidate
                    values = (
                        comparison.namespace,
                        comparison.deployment,
                        base.predictor,
                        cand.predictor,
                        base.model,
                        cand.model,
                        spec.name,
                    )
                    window = _Window(label_set(COMPARISON_LABELS, values), None, ())
                    window.values = values
                seen[comparison, spec.name] = window
                counts = engine.comparison_counts(comparison, spec.name, now)
                fingerprint = _fingerprint(counts)
                if fingerprint != window.fingerprint:
                    result = compare(
                        pair_table(counts), engine.comparison_alpha, engine.comparison_effect
                    )
                    window.lines = _comparison_lines(window.values, result)
                    window.fingerprint = fingerprint
                for bucket, text in zip(buckets, window.lines, strict=True):
                    if text:
                        bucket.append(text)
        self._paired = seen
        return "".join(
            family.header(openmetrics) + "".join(bucket)
            for family, bucket in zip(_COMPARISON, buckets, strict=True)
        )

    def _lines(self, key: ModelKey, window: _Window, counts: Counts) -> tuple[str, ...]:
        """Per family of ``_CACHED``, the lines of one window of one model."""
        m = compute(counts, matrix=False)
        labels = window.labels
        lines = [""] * len(_CACHED)
        guard = self._guard
        window_lines(
            m,
            labels,
            _CACHED_NAMES,
            window.classes,
            lambda label: guard.admits_class(key, label),
            lines,
        )

        def put(index: int, value: float) -> None:
            lines[index] = f"{_CACHED_NAMES[index]}{{{labels}}} {format_value(value)}\n"

        quality = m.quality
        scored = 0
        for part in (quality.binary, quality.probability, quality.regression):
            if part is None:
                continue
            scored += part.scored
            for name, value in part.to_dict().items():
                index = _SCORE_INDEX.get(name)
                if index is not None and name != "scored" and value is not None:
                    put(_SCORE0 + index, float(value))
        if quality.binary or quality.probability or quality.regression:
            put(_SCORE0 + _SCORE_INDEX["scored"], float(scored))
        check = calibration(counts.quality.probability if counts.quality is not None else None)
        if check:
            put(_CONFIDENCE, check.mean_confidence)
        return tuple(lines)


def _comparison_lines(values: tuple[str, ...], result: PairedComparison) -> tuple[str, ...]:
    """Per comparison family, the lines of one window of one comparison."""
    out: list[str] = []
    for family, (_, _, extra_names), samples in zip(
        _COMPARISON, COMPARISON_GAUGES, comparison_samples(result), strict=True
    ):
        names = (*COMPARISON_LABELS, *extra_names)
        out.append(
            "".join(
                f"{family.name}{{{label_set(names, (*values, *extra))}}} {format_value(value)}\n"
                for extra, value in samples
            )
        )
    return tuple(out)


def _estimate_lines(unlabelled: list[list[str]], labels: str, sums: ConfidenceSums | None) -> None:
    """The pending-row estimate samples of one window (they move with the join store)."""
    estimated = estimate(sums) if sums is not None else None
    rows = _UNLABELLED[3].name
    unlabelled[3].append(f"{rows}{{{labels}}} {format_value(estimated.rows if estimated else 0)}\n")
    if estimated:
        for i, value in enumerate(
            (estimated.accuracy, estimated.accuracy_ci95[0], estimated.accuracy_ci95[1])
        ):
            unlabelled[i].append(f"{_UNLABELLED[i].name}{{{labels}}} {format_value(value)}\n")


class CounterText:
    """The counters and histograms of :class:`ServiceMetrics`, written from their children.

    ``prometheus_client`` builds a ``Sample`` and a label dict for each of
    ~7,000 counter samples per scrape (100 models) before formatting them;
    this reads each child's value and writes it after the child's label set,
    escaped once and kept from scrape to scrape. As ``generate_latest`` (text
    format 0.0.4) and ``openmetrics.exposition.generate_latest`` write them:
    ``*_total`` counter samples, cumulative ``_bucket`` / ``_count`` /
    ``_sum`` histograms, label names sorted; ``*_created`` samples are off
    (:class:`ServiceMetrics` switches them off).

    Reads ``prometheus_client``'s children (``_metrics``, ``_value``,
    ``_buckets``, ``_sum``, ``_upper_bounds``): version 0.21 to 0.26, as
    pinned; the tests hold the output to ``generate_latest``'s.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._families = metrics.families()
        self._headers: list[str] = []
        self._om_headers: list[str] = []
        self._counters: list[Counter | None] = []
        self._histograms: list[Histogram | None] = []
        for wrapper, _ in self._families:
            (described,) = wrapper.describe()
            counter = wrapper if isinstance(wrapper, Counter) else None
            self._counters.append(counter)
            self._histograms.append(wrapper if isinstance(wrapper, Histogram) else None)
            kind = "counter" if counter is not None else "histogram"
            name = described.name
            # The text format names a counter family by its sample (``_total``), OpenMetrics not.
            text_name = name + ("_total" if counter is not None else "")
            doc = escape_help(described.documentation, openmetrics=False)
            self._headers.append(f"# HELP {text_name} {doc}\n# TYPE {text_name} {kind}\n")
            doc = escape_help(described.documentation, openmetrics=True)
            self._om_headers.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        self._slots: dict[Any, _Child] = {}
        """Per child (by identity), its prefixes and last text: a counter's line is
        written again only when its value moved, a histogram's when a bucket or its sum did."""

    def render(self, *, openmetrics: bool = False) -> str:
        """Every family, HELP and TYPE first, in :meth:`ServiceMetrics.families` order.

        OpenMetrics differs in the headers only (a counter family is named
        without ``_total``, ``"`` is escaped in HELP); no ``# EOF``.
        """
        out: list[str] = []
        headers = self._om_headers if openmetrics else self._headers
        slots = self._slots
        seen = 0
        for index, (wrapper, names) in enumerate(self._families):
            out.append(headers[index])
            counter = self._counters[index] is not None
            if not counter and self._histograms[index] is None:
                continue
            children: list[tuple[Sequence[str], Any]] = (
                list(wrapper._metrics.items()) if names else [((), wrapper)]
            )
            seen += len(children)
            for values, child in children:
                slot = slots.get(child)
                if slot is None:
                    slot = slots[child] = _Child(_prefixes(wrapper, names, values))
                if counter:
                    # The float itself, not through get()'s lock: one attribute read is
                    # atomic, and counters move on the event loop that scrapes.
                    value = child._value._value
                    if value != slot.value:
                        slot.value = value
                        slot.text = f"{slot.prefixes[0]}{format_value(value)}\n"
                    out.append(slot.text)
                    continue
                # A histogram: cumulative buckets, then _count and _sum.
                buckets = tuple([bucket._value for bucket in child._buckets])
                value = child._sum._value if child._upper_bounds[0] >= 0 else None
                if buckets != slot.buckets or value != slot.value:
                    slot.buckets = buckets
                    slot.value = value
                    slot.text = _histogram_text(slot.prefixes, buckets, value)
                out.append(slot.text)
        if len(slots) != seen:  # children were removed: forget them
            self._slots = {
                child: slots[child]
                for wrapper, names in self._families
                for child in (wrapper._metrics.values() if names else (wrapper,))
                if child in slots
            }
        return "".join(out)


@dataclass(slots=True)
class _Child:
    """One counter or histogram child: its sample prefixes and its text of last time."""

    prefixes: tuple[str, ...]
    value: float | None = None
    """The counter's value, or the histogram's sum, the text was written for."""
    buckets: tuple[float, ...] = ()
    """The histogram's bucket counts the text was written for."""
    text: str = ""


def _histogram_text(
    prefixes: tuple[str, ...], buckets: tuple[float, ...], total_sum: float | None
) -> str:
    """A histogram child's cumulative ``_bucket`` lines, ``_count``, then ``_sum``."""
    out: list[str] = []
    total = 0.0
    for prefix, count in zip(prefixes, buckets, strict=False):
        total += count
        out.append(f"{prefix}{format_value(total)}\n")
    out.append(f"{prefixes[-2]}{format_value(total)}\n")
    if total_sum is not None:
        out.append(f"{prefixes[-1]}{format_value(total_sum)}\n")
    return "".join(out)


def _prefixes(
    wrapper: Counter | Histogram, names: Sequence[str], values: Sequence[str]
) -> tuple[str, ...]:
    """Each sample's name and label set of one child, up to the value."""
    (described,) = wrapper.describe()
    name = described.name
    labels = label_set(names, values)
    if isinstance(wrapper, Counter):
        return (f"{name}_total{{{labels}}} " if labels else f"{name}_total ",)
    buckets = tuple(
        f"{name}_bucket{{{label_set((*names, 'le'), (*values, format_value(bound)))}}} "
        for bound in wrapper._upper_bounds
    )
    own = f"{{{labels}}} " if labels else " "
    return (*buckets, f"{name}_count{own}", f"{name}_sum{own}")


_NAMES_KEPT: Final = ("", "underscores", "allow-utf-8")
"""Escaping schemes that leave valid legacy metric and label names as they are."""


class MetricsExposition:
    """The ``/metrics`` page of one service.

    ``registry`` holds everything but the service's counters and the window
    gauges, and is rendered by ``prometheus_client``; the counters of
    ``counters`` (in a registry of their own, :attr:`ServiceMetrics.registry`)
    are written by :class:`CounterText`, then the window gauges by
    :class:`WindowGauges`. :attr:`full` is a registry of all three (the
    window gauges through their collector), for ``prometheus_client``'s own
    encoders and for callers that want ``Metric`` objects.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        windows: WindowGauges,
        counters: ServiceMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.windows = windows
        self.counters = counters
        self._counter_text = CounterText(counters) if counters is not None else None
        self.full = CollectorRegistry(auto_describe=False)
        self.full.register(registry)
        if counters is not None:
            self.full.register(counters.registry)
        self.full.register(windows.collector)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """(body, Content-Type) for a request's ``Accept`` header.

        The format is ``prometheus_client.exposition.choose_encoder``'s
        choice: OpenMetrics 1.0 when asked for, else the text format 0.0.4.
        """
        encoder, content_type = choose_encoder(accept)
        escaping = content_type.rpartition("escaping=")[2] if "escaping=" in content_type else ""
        if escaping not in _NAMES_KEPT:
            return encoder(self.full), content_type
        head = encoder(self.registry)
        if content_type.startswith("application/openmetrics-text"):
            eof = b"# EOF\n"
            head = head.removesuffix(eof)
            if self._counter_text is not None:
                head += self._counter_text.render(openmetrics=True).encode()
            return head + self.windows.render(openmetrics=True).encode() + eof, content_type
        if self._counter_text is not None:
            head += self._counter_text.render().encode()
        return head + self.windows.render().encode(), content_type
