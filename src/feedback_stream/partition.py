"""Per-partition state: one join store, the windows of each model, the counters.

A :class:`PartitionState` is everything derived from one input partition
(or, routed by puid, from every partition a processor reads). It processes
decoded events, or decode errors, which it counts, and it is what a
snapshot saves and a rebalance moves. The :class:`~feedback_stream.engine.Engine`
routes events to states and merges them for reading.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from feedback_stream.caps import Caps
from feedback_stream.decode import EVENT_TYPES, DecodeError
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import DEFAULT_TTL_S, EventStatus, JoinResult, JoinStore
from feedback_stream.join import Sequence as OutcomeSequence
from feedback_stream.label_delay import LABEL_DELAY_BUCKETS, DelayHistogram
from feedback_stream.metrics import Counts
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.outcomes import Outcome, OutcomeResult, TimeBasis, to_tick
from feedback_stream.paired import Comparison, Pairing, PairRule
from feedback_stream.windows import ModelWindows, WindowSpec

__all__ = [
    "ChangeObserver",
    "EventCounters",
    "ModelCounters",
    "OutcomeListener",
    "PartitionState",
    "ResultListener",
]

_KIND_LABEL: Final = {kind: kind.value for kind in EventKind}
"""Counter labels by kind: ``StrEnum.value`` is a Python-level property, read per event."""


def _result_label(correct: bool | None) -> str:
    """``outcome.result.value`` without building the enum member (per outcome)."""
    if correct is None:
        return _UNKNOWN
    return _CORRECT if correct else _INCORRECT


_CORRECT: Final = OutcomeResult.CORRECT.value
_INCORRECT: Final = OutcomeResult.INCORRECT.value
_UNKNOWN: Final = OutcomeResult.UNKNOWN.value

_UNBOUNDED: Final = 1 << 62

OutcomeListener = Callable[[Sequence[Outcome], Sequence[Outcome]], None]
"""Called with (retracted, applied) outcomes after every event that changed any."""

ResultListener = Callable[[Event, JoinResult], None]
"""Called with every accepted or duplicate event and what the join did with it."""


class ChangeObserver(Protocol):
    """What a state tells its changelog tracker (:mod:`feedback_stream.changelog`).

    Called synchronously from :meth:`PartitionState.process`; every call is
    cheap bookkeeping, the records are built at commit time. Dropped join
    entries reach the tracker through ``JoinStore.dropped``.
    """

    def puid_changed(self, puid: str) -> None:
        """The join entry holding ``puid`` changed (an accepted event)."""

    def model_changed(self, key: ModelKey) -> None:
        """The counters or windows of model ``key`` changed."""

    def outcomes_moved(self, retracted: Sequence[Outcome], applied: Sequence[Outcome]) -> None:
        """Outcomes left and entered the windows."""


@dataclass(slots=True)
class EventCounters:
    """Events read, by what happened to them (monotonic)."""

    accepted: Counter[str] = field(default_factory=Counter)
    """Valid, first-seen events per type (``request``/``response``/``feedback``)."""
    duplicate: Counter[str] = field(default_factory=Counter)
    """Second and later deliveries of one event, per type."""
    amended: int = 0
    """Feedback events that replaced an applied outcome (also in ``accepted``)."""
    invalid: Counter[str] = field(default_factory=Counter)
    """Invalid records and invalid (response, feedback) pairs, per error code."""
    expired: Counter[str] = field(default_factory=Counter)
    """Parts that never joined and outlived the TTL, per type."""
    invalid_types: Counter[str] = field(default_factory=Counter)
    """Invalid records per event type (``unknown`` when it cannot be told)."""
    evicted: Counter[str] = field(default_factory=Counter)
    """Unjoined parts of puids evicted at the pending cap, per type (also in ``Caps``)."""
    folded_classes: int = 0
    """Class values folded into ``__other__`` (also in ``Caps``)."""
    dead_lettered: Counter[str] = field(default_factory=Counter)
    """Records sent to the dead-letter topic, per reason."""
    model_errors: Counter[ModelKey] = field(default_factory=Counter)
    """Failed inferences read from Seldon Core 2's errors topics, per model."""

    def merge(self, other: EventCounters) -> None:
        self.accepted.update(other.accepted)
        self.duplicate.update(other.duplicate)
        self.amended += other.amended
        self.invalid.update(other.invalid)
        self.expired.update(other.expired)
        self.invalid_types.update(other.invalid_types)
        self.evicted.update(other.evicted)
        self.folded_classes += other.folded_classes
        self.dead_lettered.update(other.dead_lettered)
        self.model_errors.update(other.model_errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": dict(self.accepted),
            "duplicate": dict(self.duplicate),
            "amended": self.amended,
            "invalid": dict(self.invalid),
            "expired": dict(self.expired),
            "invalid_types": dict(self.invalid_types),
            "evicted": dict(self.evicted),
            "folded_classes": self.folded_classes,
            "dead_lettered": dict(self.dead_lettered),
            "model_errors": [
                [k.namespace, k.deployment, k.predictor, k.model, n]
                for k, n in self.model_errors.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventCounters:
        return cls(
            Counter(data["accepted"]),
            Counter(data["duplicate"]),
            data["amended"],
            Counter(data["invalid"]),
            Counter(data["expired"]),
            Counter(data.get("invalid_types", {})),
            Counter(data.get("evicted", {})),
            data.get("folded_classes", 0),
            Counter(data.get("dead_lettered", {})),
            Counter({ModelKey(*row[:4]): row[4] for row in data.get("model_errors", [])}),
        )


def _invalid_type(error: DecodeError) -> str:
    """The event type an invalid record claims to be, or ``unknown``."""
    kind = EVENT_TYPES.get(error.event_type or "")
    return kind.value if kind is not None else "unknown"


@dataclass(slots=True)
class ModelCounters:
    """Monotonic per-model counters, for Prometheus and the JSON report.

    ``applied`` / ``retracted`` count outcomes by result (correct, incorrect,
    unknown); ``confusion_applied`` / ``confusion_retracted`` by (true,
    predicted) for outcomes with a known true class. Reward statistics here
    are cumulative and, like the counters, never decrease: an amendment shows
    in the ``retracted`` counters. ``responses`` and ``labelled`` count each
    (puid, model) once. ``conflicts`` and the label delay are those of the
    pairs applied now (an amendment takes its pair's share back), so they
    do not depend on the order events were read in.
    """

    responses: int = 0
    labelled: int = 0
    conflicts: int = 0
    label_delay_count: int = 0
    # Integer microseconds, so that the sum does not depend on the order of
    # partitions it is merged from (float addition is not associative).
    label_delay_sum_us: int = 0
    label_delays: DelayHistogram = field(default_factory=DelayHistogram)
    """Label delays at first feedback, for percentiles (:mod:`feedback_stream.label_delay`)."""
    last_feedback_time: float | None = None
    applied: Counter[str] = field(default_factory=Counter)
    retracted: Counter[str] = field(default_factory=Counter)
    confusion_applied: Counter[tuple[str, str]] = field(default_factory=Counter)
    confusion_retracted: Counter[tuple[str, str]] = field(default_factory=Counter)
    reward_count: int = 0
    reward_sum: float = 0.0
    """Sum of the non-negative rewards: ``feedback_stream_reward_sum_total``, a
    counter, which cannot go down (negative rewards are counted, not summed)."""
    reward_retracted_count: int = 0
    reward_retracted_sum: float = 0.0
    """Sum of the non-negative rewards taken back by amendments."""
    needs_kind: int = 0
    """Responses refused because their kind must be declared (``needs_kind``)."""
    labelled_delay_buckets: list[int] = field(default_factory=list)
    """Label delays at each response's first feedback, counted per bucket of
    :data:`~feedback_stream.label_delay.LABEL_DELAY_BUCKETS` (then +Inf): the
    ``feedback_stream_label_delay_seconds`` histogram, carried across restarts."""
    labelled_delay_sum: float = 0.0
    """Their sum, seconds (negative delays count as 0, as the histogram's)."""
    classes: set[str] = field(default_factory=set)
    """The classes this state's outcomes named (true and predicted, after the
    class cap), so that a restore tracks what the live caps tracked: a reward-only
    outcome names a predicted class that no confusion cell holds
    (:meth:`feedback_stream.caps.Caps.track_classes`)."""

    def observe_labelled(self, delay: float) -> None:
        """One response's first feedback came ``delay`` seconds after it."""
        delay = max(0.0, delay)
        buckets = self.labelled_delay_buckets
        if not buckets:
            buckets.extend([0] * (len(LABEL_DELAY_BUCKETS) + 1))
        buckets[bisect_left(LABEL_DELAY_BUCKETS, delay)] += 1
        self.labelled_delay_sum += delay

    def merge(self, other: ModelCounters) -> None:
        if other.labelled_delay_buckets:
            if not self.labelled_delay_buckets:
                self.labelled_delay_buckets.extend([0] * len(other.labelled_delay_buckets))
            for i, n in enumerate(other.labelled_delay_buckets):
                self.labelled_delay_buckets[i] += n
        self.labelled_delay_sum += other.labelled_delay_sum
        self.classes |= other.classes
        self.responses += other.responses
        self.needs_kind += other.needs_kind
        self.labelled += other.labelled
        self.conflicts += other.conflicts
        self.label_delay_count += other.label_delay_count
        self.label_delay_sum_us += other.label_delay_sum_us
        self.label_delays.merge(other.label_delays)
        if other.last_feedback_time is not None and (
            self.last_feedback_time is None or other.last_feedback_time > self.last_feedback_time
        ):
            self.last_feedback_time = other.last_feedback_time
        self.applied.update(other.applied)
        self.retracted.update(other.retracted)
        self.confusion_applied.update(other.confusion_applied)
        self.confusion_retracted.update(other.confusion_retracted)
        self.reward_count += other.reward_count
        self.reward_sum += other.reward_sum
        self.reward_retracted_count += other.reward_retracted_count
        self.reward_retracted_sum += other.reward_retracted_sum

    def to_dict(self) -> dict[str, Any]:
        return {
            "responses": self.responses,
            "labelled": self.labelled,
            "conflicts": self.conflicts,
            "label_delay_count": self.label_delay_count,
            "label_delay_sum_us": self.label_delay_sum_us,
            "label_delays": self.label_delays.to_dict(),
            "last_feedback_time": self.last_feedback_time,
            "applied": dict(self.applied),
            "retracted": dict(self.retracted),
            "confusion_applied": [[t, p, n] for (t, p), n in self.confusion_applied.items()],
            "confusion_retracted": [[t, p, n] for (t, p), n in self.confusion_retracted.items()],
            "reward_count": self.reward_count,
            "reward_sum": self.reward_sum,
            "reward_retracted_count": self.reward_retracted_count,
            "reward_retracted_sum": self.reward_retracted_sum,
            "needs_kind": self.needs_kind,
            "labelled_delay_buckets": self.labelled_delay_buckets,
            "labelled_delay_sum": self.labelled_delay_sum,
            "classes": sorted(self.classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCounters:
        return cls(
            responses=data["responses"],
            labelled=data["labelled"],
            conflicts=data["conflicts"],
            label_delay_count=data["label_delay_count"],
            label_delay_sum_us=data["label_delay_sum_us"],
            label_delays=DelayHistogram.from_dict(data.get("label_delays", {})),
            last_feedback_time=data["last_feedback_time"],
            applied=Counter(data["applied"]),
            retracted=Counter(data["retracted"]),
            confusion_applied=Counter({(t, p): n for t, p, n in data["confusion_applied"]}),
            confusion_retracted=Counter({(t, p): n for t, p, n in data["confusion_retracted"]}),
            reward_count=data["reward_count"],
            reward_sum=data["reward_sum"],
            reward_retracted_count=data["reward_retracted_count"],
            reward_retracted_sum=data["reward_retracted_sum"],
            needs_kind=data.get("needs_kind", 0),
            labelled_delay_buckets=list(data.get("labelled_delay_buckets", [])),
            labelled_delay_sum=data.get("labelled_delay_sum", 0.0),
            classes=set(data.get("classes", ())),
        )


class PartitionState:
    """One join store, the windows of each model, and the counters.

    Args:
        windows: the windows every model gets.
        ttl: join TTL in seconds.
        time_basis: which event's time places an outcome in time windows.
        sequence: outcome sequence numbers, shared by the states of one engine.
        kinds: the declared model kinds (default: detect every kind).
        caps: the tracking caps, shared by the states of one engine
            (:mod:`feedback_stream.caps`); default: none.
        pair_rules: which predictors to compare (:mod:`feedback_stream.paired`);
            empty: every two predictors of a deployment.
    """

    def __init__(
        self,
        windows: Sequence[WindowSpec],
        ttl: float = DEFAULT_TTL_S,
        time_basis: TimeBasis = TimeBasis.FEEDBACK,
        sequence: OutcomeSequence | None = None,
        kinds: ModelKinds | None = None,
        caps: Caps | None = None,
        pair_rules: Sequence[PairRule] = (),
    ) -> None:
        self.specs = tuple(windows)
        self.sequence = sequence if sequence is not None else OutcomeSequence()
        self.caps = caps if caps is not None else Caps(_UNBOUNDED, _UNBOUNDED)
        self.join = JoinStore(ttl, time_basis, self.sequence, kinds)
        self.pairing = Pairing(self.specs, pair_rules, self.sequence)
        self.models: dict[ModelKey, ModelWindows] = {}
        self.model_counters: dict[ModelKey, ModelCounters] = {}
        self.events = EventCounters()
        self.clock = float("-inf")
        """Seconds: the newest event time, moved on by reads (windows slide with the wall clock)."""
        self.event_clock = float("-inf")
        """Seconds: the newest event time processed, which reads never move: the
        stream's clock a restore resumes the join TTL from (a stream read behind the
        wall clock must not expire at the wall clock after a restart)."""
        self.outcome_listeners: list[OutcomeListener] = []
        self.result_listeners: list[ResultListener] = []
        self.observer: ChangeObserver | None = None
        """The changelog tracker of this state, when its changes are made durable."""

    @property
    def pending(self) -> int:
        return self.join.pending

    def _windows(self, key: ModelKey) -> ModelWindows:
        """The windows of ``key`` (already folded by the model cap)."""
        windows = self.models.get(key)
        if windows is None:
            windows = self.models[key] = ModelWindows(self.specs)
        return windows

    def _counters(self, key: ModelKey) -> ModelCounters:
        """The counters of ``key``, or of the overflow model past the model cap."""
        key = self.caps.model(key)
        counters = self.model_counters.get(key)
        if counters is None:
            counters = self.model_counters[key] = ModelCounters()
        return counters

    def process(self, item: Event | DecodeError) -> JoinResult | None:
        """Count an error, or join an event and move the windows it changes."""
        if isinstance(item, DecodeError):
            self.events.invalid[item.code] += 1
            self.events.invalid_types[_invalid_type(item)] += 1
            return None
        time = item.time
        if time > self.event_clock:
            self.event_clock = time
            if time > self.clock:
                self.clock = time
        result = self.join.add(item)
        kind = _KIND_LABEL[item.kind]
        if result.status is EventStatus.DUPLICATE:
            self.events.duplicate[kind] += 1
        else:
            self.events.accepted[kind] += 1
            if result.status is EventStatus.AMENDED:
                self.events.amended += 1
            for key in result.responses:
                self._counters(key).responses += 1
            observer = self.observer
            if observer is not None:
                observer.puid_changed(item.puid)
                for key in result.responses:
                    observer.model_changed(key)
        for error in result.errors:
            self.events.invalid[error.code] += 1
            if error.code == "needs_kind":
                self._counters(item.key).needs_kind += 1
                if self.observer is not None:
                    self.observer.model_changed(item.key)
        if result.retracted or result.applied:
            self._move(result)
        for key, delay in result.labelled:
            counters = self._counters(key)
            counters.labelled += 1
            counters.observe_labelled(delay)
            if self.observer is not None:
                self.observer.model_changed(key)
        for result_listener in self.result_listeners:
            result_listener(item, result)
        return result

    def _move(self, result: JoinResult) -> None:
        clock_tick = to_tick(self.clock)
        caps = self.caps
        for outcome in result.retracted:
            self._windows(caps.model(outcome.key)).retract(outcome)
            counters = self._counters(outcome.key)
            counters.retracted[_result_label(outcome.correct)] += 1
            if outcome.truth is not None:
                counters.confusion_retracted[(outcome.truth, outcome.predicted)] += 1
            if outcome.reward is not None:
                counters.reward_retracted_count += 1
                if outcome.reward >= 0:
                    counters.reward_retracted_sum += outcome.reward
            if outcome.row == 0:
                self._pair_counts(counters, outcome, -1)
        for outcome in result.applied:
            key = caps.model(outcome.key)
            folded = caps.folded_classes
            caps.fold_classes(key, outcome)
            self.events.folded_classes += caps.folded_classes - folded
            windows = self._windows(key)
            windows.advance(clock_tick)
            windows.apply(outcome)
            counters = self._counters(outcome.key)
            counters.applied[_result_label(outcome.correct)] += 1
            classes = counters.classes
            classes.add(outcome.predicted)
            if outcome.truth is not None:
                classes.add(outcome.truth)
                counters.confusion_applied[(outcome.truth, outcome.predicted)] += 1
            if outcome.reward is not None:
                counters.reward_count += 1
                if outcome.reward >= 0:
                    counters.reward_sum += outcome.reward
            if outcome.row == 0:
                self._pair_counts(counters, outcome, 1)
            last = counters.last_feedback_time
            if last is None or outcome.feedback_time > last:
                counters.last_feedback_time = outcome.feedback_time
        self.pairing.update(
            result.retracted, result.applied, self.join.applied, self.clock, clock_tick
        )
        if self.observer is not None:
            self.observer.outcomes_moved(result.retracted, result.applied)
        for outcome_listener in self.outcome_listeners:
            outcome_listener(result.retracted, result.applied)

    def evict(self, count: int) -> dict[EventKind, int]:
        """Evict the ``count`` oldest pending puids (the pending cap); count their parts."""
        evicted = self.join.evict_oldest(count)
        for kind, parts in evicted.items():
            if parts:
                self.caps.evicted[kind.value] += parts
                self.events.evicted[kind.value] += parts
        return evicted

    @staticmethod
    def _pair_counts(counters: ModelCounters, head: Outcome, sign: int) -> None:
        """Conflicts and label delays of the pairs applied now (row 0 speaks for its pair).

        Counted as pairs enter and leave, so that they are those of the
        pairs that stand, whatever order the events came in.
        """
        if head.conflict:
            counters.conflicts += sign
        if head.label_delay is not None:
            counters.label_delay_count += sign
            counters.label_delay_sum_us += sign * round(head.label_delay * 1_000_000)
            counters.label_delays.add(head.label_delay, sign)

    def advance(self, now: float) -> None:
        """Move the clock (and every window) to ``now``, if that is later."""
        if now > self.clock:
            self.clock = now
        if self.clock == float("-inf"):
            return
        tick = to_tick(self.clock)
        for windows in self.models.values():
            windows.advance(tick)
        self.pairing.advance(tick)

    def expire(self, now: float) -> dict[EventKind, int]:
        """Expire join entries older than the TTL as of ``now``; count what never joined."""
        expired = self.join.expire(now)
        self.pairing.forget(now, self.join.ttl, self.join.holds)
        for kind, count in expired.items():
            if count:
                self.events.expired[kind.value] += count
        return expired

    def counts(self, key: ModelKey, name: str, now: float) -> Counts:
        """The counts of one window of one model as of ``now`` (or the clock, if later)."""
        if now > self.clock:
            self.clock = now
        windows = self.models.get(key)
        if windows is None:
            return Counts()
        window = windows.windows[name]
        window.advance(to_tick(self.clock))
        return window.counts()

    def comparison_counts(self, comparison: Comparison, name: str, now: float) -> Counts:
        """The paired counts of one window of one comparison as of ``now`` (or the clock)."""
        if now > self.clock:
            self.clock = now
        if self.clock == float("-inf"):
            return Counts()
        return self.pairing.counts(comparison, name, to_tick(self.clock))
