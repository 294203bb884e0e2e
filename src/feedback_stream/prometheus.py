"""Prometheus exposition: counters fed by the engine, gauges read at scrape time.

Counters are this process's own: they are incremented by the engine's
listeners as events are applied, so they are monotonic for the life of the
process and a consumer group's members can be summed (a partition that
moves to another member does not take its past with it, and a restored
checkpoint does not count its outcomes again). An amendment shows as an
increment of a ``*_retracted_total`` counter, never as a decrement.

Window gauges (accuracy, precision, recall, F1, counts, ...) are computed by
:class:`WindowCollector` from the engine's windows at every scrape, so a
sliding window empties on the wall clock even when no event arrives.

Cardinality is bounded: the engine tracks at most ``max_models`` models
(further models are tracked, counted and shown as one model,
``model="__overflow__"``) and, per model, the ``class_allowlist`` and the
first ``max_classes`` other classes (further classes are tracked as
``__other__``; see :mod:`feedback_stream.caps`). With an allowlist, only its
classes get per-class gauges.

Every registry is the caller's: a service builds its own, so several run
in one process (tests) without clashing.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedback_stream.caps import OVERFLOW_KEY
from feedback_stream.comparison_metrics import comparison_families
from feedback_stream.decode import EVENT_TYPES, DecodeError
from feedback_stream.engine import Engine
from feedback_stream.estimate_metrics import unlabelled_families
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import EventStatus, JoinResult
from feedback_stream.label_delay import LABEL_DELAY_BUCKETS
from feedback_stream.outcomes import Outcome, OutcomeResult
from feedback_stream.partition import PartitionState
from feedback_stream.prometheus_scores import ScoreGauges

__all__ = [
    "MODEL_LABELS",
    "OTHER_CLASS",
    "OVERFLOW_MODEL",
    "LabelGuard",
    "ServiceMetrics",
    "WindowCollector",
]

_log = logging.getLogger(__name__)

MODEL_LABELS: Final = ("namespace", "deployment", "predictor", "model")
OVERFLOW_MODEL: Final = "__overflow__"
OTHER_CLASS: Final = "__other__"

_KIND_LABEL: Final = {kind: kind.value for kind in EventKind}
_STATUS_LABEL: Final = {status: status.value for status in EventStatus}
"""Label values by member: ``StrEnum.value`` is a Python-level property, read per event."""
_CORRECT: Final = OutcomeResult.CORRECT.value
_INCORRECT: Final = OutcomeResult.INCORRECT.value
_UNKNOWN: Final = OutcomeResult.UNKNOWN.value


class LabelGuard:
    """Maps model keys and classes to label values within the cardinality caps."""

    def __init__(self, max_models: int, max_classes: int, class_allowlist: Sequence[str]) -> None:
        self._max_models = max_models
        self._max_classes = max_classes
        self._allow = frozenset(class_allowlist)
        self._models: set[ModelKey] = set()
        self._classes: dict[ModelKey, set[str]] = {}
        self._warned = False

    def admits(self, key: ModelKey) -> bool:
        """Whether ``key`` gets its own label set (the first ``max_models`` do)."""
        if key in self._models or key == OVERFLOW_KEY:
            return True
        if len(self._models) < self._max_models:
            self._models.add(key)
            return True
        if not self._warned:
            self._warned = True
            _log.warning(
                "more than %d models: %s and later ones are exported as model=%s",
                self._max_models,
                key,
                OVERFLOW_MODEL,
            )
        return False

    def model_labels(self, key: ModelKey) -> tuple[str, str, str, str]:
        if self.admits(key):
            return (key.namespace, key.deployment, key.predictor, key.model)
        return ("", "", "", OVERFLOW_MODEL)

    def admits_class(self, key: ModelKey, label: str) -> bool:
        if self._allow:
            return label in self._allow
        seen = self._classes.setdefault(key, set())
        if label in seen:
            return True
        if len(seen) < self._max_classes:
            seen.add(label)
            return True
        return False

    def class_label(self, key: ModelKey, label: str) -> str:
        return label if self.admits_class(key, label) else OTHER_CLASS


def _kind_of(error: DecodeError) -> str:
    kind = EVENT_TYPES.get(error.event_type or "")
    return kind.value if kind is not None else "unknown"


class ServiceMetrics:
    """The counters of one service instance, in its own registry.

    ``*_created`` series are switched off (process-wide, prometheus-client
    has no per-registry switch): they would double the series of every
    labelled counter, and a restart shows as a counter reset anyway.
    """

    def __init__(self, registry: CollectorRegistry, guard: LabelGuard) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self.registry = registry
        self.guard = guard
        model = list(MODEL_LABELS)

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        self.outcomes = counter(
            "feedback_stream_outcomes", "Outcomes applied, by result.", [*model, "result"]
        )
        self.outcomes_retracted = counter(
            "feedback_stream_outcomes_retracted",
            "Outcomes retracted by an amended feedback, by result.",
            [*model, "result"],
        )
        self.confusion = counter(
            "feedback_stream_confusion",
            "Outcomes with a known true class, by true and predicted class.",
            [*model, "true_class", "predicted_class"],
        )
        self.confusion_retracted = counter(
            "feedback_stream_confusion_retracted",
            "Retracted outcomes with a known true class, by true and predicted class.",
            [*model, "true_class", "predicted_class"],
        )
        self.reward_count = counter(
            "feedback_stream_reward_count",
            "Joined (response, feedback) pairs with a reward.",
            model,
        )
        self.reward_sum = counter(
            "feedback_stream_reward_sum", "Sum of the rewards of joined pairs.", model
        )
        self.reward_retracted_count = counter(
            "feedback_stream_reward_retracted_count",
            "Rewards retracted by an amended feedback.",
            model,
        )
        self.reward_retracted_sum = counter(
            "feedback_stream_reward_retracted_sum",
            "Sum of the rewards retracted by an amended feedback.",
            model,
        )
        self.responses = counter("feedback_stream_responses", "Responses seen.", model)
        self.labelled = counter(
            "feedback_stream_labelled_responses", "Responses that got their first feedback.", model
        )
        self.conflicts = counter(
            "feedback_stream_feedback_conflicts",
            "Joined pairs whose feedback reward contradicts its truth.",
            model,
        )
        self.label_delay = Histogram(
            "feedback_stream_label_delay_seconds",
            "Feedback event time minus response event time, at a response's first feedback.",
            model,
            buckets=LABEL_DELAY_BUCKETS,
            registry=registry,
        )
        self.events = counter(
            "feedback_stream_events", "Events read, by type and status.", ["type", "status"]
        )
        self.invalid = counter(
            "feedback_stream_invalid_events", "Invalid events, by reason.", ["reason"]
        )
        self.expired = counter(
            "feedback_stream_expired",
            "Unmatched events dropped after the join TTL, by type.",
            ["type"],
        )
        self.needs_kind = counter(
            "feedback_stream_needs_kind_responses",
            "Responses refused until the model's kind is declared (reason needs_kind).",
            model,
        )
        self.dlq = counter(
            "feedback_stream_dlq_records", "Records sent to the dead-letter topic.", ["reason"]
        )
        self._negative_reward_warned = False
        self._series: dict[ModelKey, _ModelSeries] = {}
        self._event_children: dict[tuple[str, str], Any] = {}
        self._event_values: dict[tuple[str, str], Any] = {}
        self._counts: dict[Any, int] = {}
        """Increments gathered per counter child's value, applied by :meth:`flush`."""
        self._sums: dict[Any, list[float]] = {}
        """Amounts gathered per counter child's value, in order, applied by :meth:`flush`."""
        self._batching = False
        self._fold: Callable[[ModelKey], ModelKey] = lambda key: key

    def families(self) -> list[tuple[Counter | Histogram, tuple[str, ...]]]:
        """Every counter and histogram with its label names, in exposition order."""
        model = MODEL_LABELS
        return [
            (self.outcomes, (*model, "result")),
            (self.outcomes_retracted, (*model, "result")),
            (self.confusion, (*model, "true_class", "predicted_class")),
            (self.confusion_retracted, (*model, "true_class", "predicted_class")),
            (self.reward_count, model),
            (self.reward_sum, model),
            (self.reward_retracted_count, model),
            (self.reward_retracted_sum, model),
            (self.responses, model),
            (self.labelled, model),
            (self.conflicts, model),
            (self.label_delay, model),
            (self.events, ("type", "status")),
            (self.invalid, ("reason",)),
            (self.expired, ("type",)),
            (self.needs_kind, model),
            (self.dlq, ("reason",)),
        ]

    def _model(self, key: ModelKey) -> _ModelSeries:
        """The labelled series of ``key``, bound once: ``.labels()`` costs microseconds.

        Binding them also starts every counter at 0 the first time a model
        is seen. Without a 0 sample before the first increment, ``increase()``
        and ``rate()`` miss that increment: Prometheus cannot tell a new
        series from one it started watching late.
        """
        key = self._fold(key)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _ModelSeries(self, key)
        return series

    def attach(self, engine: Engine) -> None:
        """Count everything the engine does from now on (models folded as it folds them)."""
        self._fold = engine.caps.model
        engine.add_result_listener(self.on_result)
        engine.add_outcome_listener(self.on_outcomes)

    # -- engine listeners --------------------------------------------------
    #
    # The listeners run per event; they tally increments per counter child
    # (``self._counts``) and, for amounts that are not whole numbers, keep
    # each amount in order (``self._sums``). :meth:`flush` applies them: one
    # increment per child, and the amounts added one by one in the order they
    # came, so every counter ends exactly where per-event increments would
    # have put it (counts are whole numbers, exact in a float up to 2**53).
    # Inside :meth:`batch` the flush happens once, when the batch is done;
    # outside, after every event.

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gather the counter increments of a batch of events; apply them at its end.

        A scrape during the batch sees the counters as they were before it.
        The increments gathered are applied even if the batch raises part way.
        """
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            self.flush()

    def flush(self) -> None:
        """Apply the increments gathered since the last flush."""
        counts = self._counts
        if counts:
            for value, n in counts.items():
                value.inc(n)
            counts.clear()
        sums = self._sums
        if sums:
            for value, amounts in sums.items():
                total = value.get()
                for amount in amounts:
                    total += amount  # in order: what inc(amount) per event gives
                value.set(total)
            sums.clear()

    def _add(self, value: Any, amount: float) -> None:
        sums = self._sums.get(value)
        if sums is None:
            self._sums[value] = [amount]
        else:
            sums.append(amount)

    def on_result(self, event: Event, result: JoinResult) -> None:
        counts = self._counts
        kind, status = _KIND_LABEL[event.kind], _STATUS_LABEL[result.status]
        value = self._event_values.get((kind, status))
        if value is None:
            value = self._event_values[kind, status] = self._event(kind, status)._value
        counts[value] = counts.get(value, 0) + 1
        if event.kind is EventKind.RESPONSE:
            self._model(event.key)  # bound at 0 from the first response on
        for key in result.responses:
            value = self._model(key).responses
            counts[value] = counts.get(value, 0) + 1
        for key, delay in result.labelled:
            series = self._model(key)
            value = series.labelled
            counts[value] = counts.get(value, 0) + 1
            # Histogram.observe: the first bucket whose upper bound is >= the delay.
            delay = max(0.0, delay)
            value = series.delay_buckets[bisect_left(series.delay_bounds, delay)]
            counts[value] = counts.get(value, 0) + 1
            self._add(series.delay_sum, delay)
        for key in result.conflicts:
            value = self._model(key).conflicts
            counts[value] = counts.get(value, 0) + 1
        for error in result.errors:
            self.invalid.labels(error.code).inc()
            if error.code == "needs_kind":
                self.needs_kind.labels(*self.guard.model_labels(event.key)).inc()
        if not self._batching:
            self.flush()

    def on_outcomes(self, retracted: Sequence[Outcome], applied: Sequence[Outcome]) -> None:
        for outcome in retracted:
            self._count(outcome, self._model(outcome.key).retracted)
        for outcome in applied:
            self._count(outcome, self._model(outcome.key).applied)
        if not self._batching:
            self.flush()

    def _count(self, outcome: Outcome, side: _OutcomeSeries) -> None:
        counts = self._counts
        correct = outcome.correct
        value = side.outcomes[_UNKNOWN if correct is None else _CORRECT if correct else _INCORRECT]
        counts[value] = counts.get(value, 0) + 1
        if outcome.truth is not None:
            value = side.confusion(outcome.key, outcome.truth, outcome.predicted)
            counts[value] = counts.get(value, 0) + 1
        reward = outcome.reward
        if reward is not None:
            counts[side.reward_count] = counts.get(side.reward_count, 0) + 1
            if reward >= 0:
                self._add(side.reward_sum, reward)
            elif not self._negative_reward_warned:
                self._negative_reward_warned = True
                _log.warning("negative rewards are left out of feedback_stream_reward_sum_total")

    # -- states moving in and out ------------------------------------------

    def adopt(self, state: PartitionState, sign: int = 1) -> None:
        """Add (``sign=1``, restored) or take away (``-1``, released) a state's counts.

        A process's counters are the counts of the states it holds, so they
        continue from a restored state's values after a crash, and the sum
        over the replicas of a group is the group's count after a rebalance.
        The caps' counters (evictions, folded classes) continue through the
        engine (:meth:`Engine.install`), which the caps collector reads.
        """

        self.flush()

        def add(value: Any, amount: float) -> None:
            if amount:
                # prometheus-client's Counter refuses to decrease; a released
                # state leaves this process, so its counts leave its counters:
                # the child's value is changed directly.
                value.inc(sign * amount)

        for key, counters in state.model_counters.items():
            series = self._model(key)
            for side, results, confusion, count, total in (
                (
                    series.applied,
                    counters.applied,
                    counters.confusion_applied,
                    counters.reward_count,
                    counters.reward_sum,
                ),
                (
                    series.retracted,
                    counters.retracted,
                    counters.confusion_retracted,
                    counters.reward_retracted_count,
                    counters.reward_retracted_sum,
                ),
            ):
                for result, n in results.items():
                    add(side.outcomes[result], n)
                for (truth, predicted), n in confusion.items():
                    add(side.confusion(key, truth, predicted), n)
                add(side.reward_count, count)
                # The state's sums leave negative rewards out, as _count does.
                add(side.reward_sum, max(0.0, total))
            if counters.needs_kind:
                needs_kind = self.needs_kind.labels(*self.guard.model_labels(key))
                add(needs_kind._value, counters.needs_kind)
            add(series.responses, counters.responses)
            add(series.labelled, counters.labelled)
            add(series.conflicts, counters.conflicts)
            # The histogram's buckets (not cumulative) and sum are plain values.
            for bucket, n in zip(
                series.delay_buckets, counters.labelled_delay_buckets, strict=False
            ):
                if n:
                    bucket.inc(sign * n)
            if counters.labelled_delay_sum:
                series.delay_sum.inc(sign * counters.labelled_delay_sum)
        events = state.events
        for kind, n in events.accepted.items():
            amended = events.amended if kind == EventKind.FEEDBACK.value else 0
            add(self._event(kind, EventStatus.ACCEPTED.value)._value, n - amended)
            add(self._event(kind, EventStatus.AMENDED.value)._value, amended)
        for kind, n in events.duplicate.items():
            add(self._event(kind, EventStatus.DUPLICATE.value)._value, n)
        for code, n in events.invalid.items():
            add(self.invalid.labels(code)._value, n)
        for kind, n in events.invalid_types.items():
            add(self._event(kind, EventStatus.INVALID.value)._value, n)
        for reason, n in events.dead_lettered.items():
            add(self.dlq.labels(reason)._value, n)
        for kind, n in events.expired.items():
            add(self.expired.labels(kind)._value, n)

    def _event(self, kind: str, status: str) -> Any:
        child = self._event_children.get((kind, status))
        if child is None:
            child = self._event_children[kind, status] = self.events.labels(kind, status)
        return child

    # -- things the sources report -----------------------------------------

    def on_invalid(self, error: DecodeError) -> None:
        self.events.labels(_kind_of(error), EventStatus.INVALID.value).inc()
        self.invalid.labels(error.code).inc()

    def on_expired(self, counts: Mapping[EventKind, int]) -> None:
        for kind, count in counts.items():
            if count:
                self.expired.labels(kind.value).inc(count)

    def on_dead_letter(self, reason: str) -> None:
        self.dlq.labels(reason).inc()


class _OutcomeSeries:
    """The values of the bound children one side (applied or retracted) of a model counts into.

    Each is a child's value (``child._value``): what :meth:`ServiceMetrics.flush`
    increments, without a child's per-call checks.
    """

    __slots__ = ("_confusion", "_guard", "_labels", "confusion_family", "outcomes", "reward_count",
                 "reward_sum")  # fmt: skip

    def __init__(
        self,
        guard: LabelGuard,
        labels: tuple[str, str, str, str],
        outcomes: Counter,
        confusion: Counter,
        reward_count: Counter,
        reward_sum: Counter,
    ) -> None:
        self._guard = guard
        self._labels = labels
        self.outcomes = {
            result: outcomes.labels(*labels, result)._value
            for result in ("correct", "incorrect", "unknown")
        }
        self.confusion_family = confusion
        self._confusion: dict[tuple[str, str], Any] = {}
        self.reward_count = reward_count.labels(*labels)._value
        self.reward_sum = reward_sum.labels(*labels)._value

    def confusion(self, key: ModelKey, truth: str, predicted: str) -> Any:
        child = self._confusion.get((truth, predicted))
        if child is None:
            child = self.confusion_family.labels(
                *self._labels,
                self._guard.class_label(key, truth),
                self._guard.class_label(key, predicted),
            )
            child = self._confusion[truth, predicted] = child._value
        return child


class _ModelSeries:
    """Every counter child of one model key, bound once when the model is first seen.

    As in :class:`_OutcomeSeries`, the children's values; the label-delay
    histogram's as its buckets (not cumulative), their upper bounds and its sum.
    """

    __slots__ = ("applied", "conflicts", "delay_bounds", "delay_buckets", "delay_sum",
                 "labelled", "responses", "retracted")  # fmt: skip

    def __init__(self, metrics: ServiceMetrics, key: ModelKey) -> None:
        labels = metrics.guard.model_labels(key)
        self.applied = _OutcomeSeries(
            metrics.guard,
            labels,
            metrics.outcomes,
            metrics.confusion,
            metrics.reward_count,
            metrics.reward_sum,
        )
        self.retracted = _OutcomeSeries(
            metrics.guard,
            labels,
            metrics.outcomes_retracted,
            metrics.confusion_retracted,
            metrics.reward_retracted_count,
            metrics.reward_retracted_sum,
        )
        self.responses = metrics.responses.labels(*labels)._value
        self.labelled = metrics.labelled.labels(*labels)._value
        self.conflicts = metrics.conflicts.labels(*labels)._value
        histogram = metrics.label_delay.labels(*labels)
        self.delay_bounds: list[float] = histogram._upper_bounds
        self.delay_buckets: list[Any] = histogram._buckets
        self.delay_sum = histogram._sum


WINDOW_GAUGES: Final[dict[str, tuple[str, str]]] = {
    "outcomes": ("feedback_stream_window_outcomes", "Outcomes in the window."),
    "known": (
        "feedback_stream_window_known",
        "Outcomes in the window whose correctness is known.",
    ),
    "correct": ("feedback_stream_window_correct", "Correct outcomes in the window."),
    "accuracy": ("feedback_stream_accuracy", "Accuracy (correct / known)."),
    "ci_lower": ("feedback_stream_accuracy_ci_lower", "Lower bound of accuracy's 95% Wilson CI."),
    "ci_upper": ("feedback_stream_accuracy_ci_upper", "Upper bound of accuracy's 95% Wilson CI."),
    "precision": ("feedback_stream_class_precision", "Precision of one class."),
    "recall": ("feedback_stream_class_recall", "Recall of one class."),
    "f1": ("feedback_stream_class_f1", "F1 score of one class."),
    "support": ("feedback_stream_class_support", "Outcomes whose true class it is."),
    "avg_precision": ("feedback_stream_average_precision", "Precision averaged over classes."),
    "avg_recall": ("feedback_stream_average_recall", "Recall averaged over classes."),
    "avg_f1": ("feedback_stream_average_f1", "F1 averaged over classes."),
    # Not ``*_reward_count`` / ``*_reward_sum``: promtool reserves those
    # suffixes for histograms and summaries.
    "reward_pairs": (
        "feedback_stream_window_reward_pairs",
        "Joined pairs with a reward in the window.",
    ),
    "reward_value": ("feedback_stream_window_reward_value", "Sum of the rewards in the window."),
}
"""(name, HELP) of the per-window gauge families, in the order they are exposed.

Labels: the model labels and ``window``; ``precision`` .. ``support`` add
``class``, the averages ``average`` (``macro``, ``micro``, ``weighted``).
"""

MODEL_GAUGES: Final[dict[str, tuple[str, str]]] = {
    "coverage": (
        "feedback_stream_label_coverage",
        "Share of responses that got feedback (cumulative).",
    ),
    "last_feedback": (
        "feedback_stream_last_feedback_timestamp_seconds",
        "Event time of the newest feedback applied.",
    ),
    "pending": ("feedback_stream_pending_puids", "puids waiting in join stores."),
    "lag": ("feedback_stream_consumer_lag", "Records behind the partition's end."),
}
"""(name, HELP) of the gauges after the window families: per model (coverage,
last feedback), unlabelled (pending), per (``topic``, ``partition``) (lag)."""


class WindowCollector(Collector):
    """The scrape-time gauges, read from the engine's windows."""

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

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        engine = self._engine
        model = list(MODEL_LABELS)
        win = [*model, "window"]

        def gauge(field: str, labels: Sequence[str]) -> GaugeMetricFamily:
            name, doc = WINDOW_GAUGES[field] if field in WINDOW_GAUGES else MODEL_GAUGES[field]
            return GaugeMetricFamily(name, doc, labels=list(labels))

        outcomes = gauge("outcomes", win)
        known = gauge("known", win)
        correct = gauge("correct", win)
        accuracy = gauge("accuracy", win)
        ci_lower = gauge("ci_lower", win)
        ci_upper = gauge("ci_upper", win)
        cls = [*win, "class"]
        precision = gauge("precision", cls)
        recall = gauge("recall", cls)
        f1 = gauge("f1", cls)
        support = gauge("support", cls)
        avg = [*win, "average"]
        avg_precision = gauge("avg_precision", avg)
        avg_recall = gauge("avg_recall", avg)
        avg_f1 = gauge("avg_f1", avg)
        reward_count = gauge("reward_pairs", win)
        reward_sum = gauge("reward_value", win)
        coverage = gauge("coverage", model)
        last_feedback = gauge("last_feedback", model)
        scores = ScoreGauges()
        for key in engine.model_keys():
            if not self._guard.admits(key):
                continue
            labels = [key.namespace, key.deployment, key.predictor, key.model]
            scores.add_kind(labels, *engine.kind(key))
            counters = engine.model_counters(key)
            if counters.responses:
                coverage.add_metric(labels, min(1.0, counters.labelled / counters.responses))
            if counters.last_feedback_time is not None:
                last_feedback.add_metric(labels, counters.last_feedback_time)
            for spec in engine.specs:
                m = engine.metrics(key, spec.name, now, matrix=False)
                wl = [*labels, spec.name]
                scores.add(wl, m)
                outcomes.add_metric(wl, m.outcomes)
                known.add_metric(wl, m.known)
                correct.add_metric(wl, m.correct)
                reward_count.add_metric(wl, m.reward_count)
                reward_sum.add_metric(wl, m.reward_sum)
                if m.accuracy is not None:
                    accuracy.add_metric(wl, m.accuracy)
                if m.accuracy_ci95 is not None:
                    ci_lower.add_metric(wl, m.accuracy_ci95[0])
                    ci_upper.add_metric(wl, m.accuracy_ci95[1])
                for label, cm in m.per_class.items():
                    if not self._guard.admits_class(key, label):
                        continue
                    cl = [*wl, label]
                    precision.add_metric(cl, cm.precision)
                    recall.add_metric(cl, cm.recall)
                    f1.add_metric(cl, cm.f1)
                    support.add_metric(cl, cm.support)
                for name, prf in (("macro", m.macro), ("micro", m.micro), ("weighted", m.weighted)):
                    if prf is None or any(math.isnan(v) for v in prf):
                        continue
                    al = [*wl, name]
                    avg_precision.add_metric(al, prf[0])
                    avg_recall.add_metric(al, prf[1])
                    avg_f1.add_metric(al, prf[2])
        pending = gauge("pending", ())
        pending.add_metric([], engine.pending)
        lag = gauge("lag", ("topic", "partition"))
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield from comparison_families(engine, now, self._guard.admits)
        yield from unlabelled_families(engine, now, self._guard.admits)
        yield from (
            outcomes, known, correct, accuracy, ci_lower, ci_upper,
            precision, recall, f1, support, avg_precision, avg_recall, avg_f1,
            reward_count, reward_sum, coverage, last_feedback, pending, lag,
        )  # fmt: skip
        yield from scores
