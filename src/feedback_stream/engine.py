"""The engine: decode, route to partition states, and read across them.

This is what sources and sinks talk to. It decodes records, routes each
event to a :class:`~feedback_stream.partition.PartitionState`, keeps the
clock, and merges the states when someone reads: cumulative and time
windows add their counts at the same clock, count windows take the newest
N outcomes of the union (outcome sequence numbers are shared by the states
of one engine, so "newest" is well defined).

Routing: Seldon's executor writes Kafka records without a key, so one puid's
events can be on different partitions. ``route="puid"`` (the default) keeps
one logical state for every partition a processor reads, so that they join;
``route="partition"`` keeps a state per (topic, partition), for input that is
keyed by puid (the repartition step), so a rebalance can move state with its
partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from feedback_stream import snapshot
from feedback_stream.caps import Caps
from feedback_stream.cbpe import calibration, estimate, pending_windows
from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.join import DEFAULT_TTL_S, JoinResult
from feedback_stream.join import Sequence as OutcomeSequence
from feedback_stream.label_delay import percentiles
from feedback_stream.metrics import Counts, WindowMetrics, compute
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.outcomes import Outcome, TimeBasis
from feedback_stream.paired import Comparison, pair_table, parse_pair_rules
from feedback_stream.paired_statistics import PairedComparison, compare
from feedback_stream.partition import (
    EventCounters,
    ModelCounters,
    OutcomeListener,
    PartitionState,
    ResultListener,
)
from feedback_stream.report import build_report
from feedback_stream.scores import ModelKind
from feedback_stream.windows import WindowKind, WindowSpec

__all__ = ["ALL_PARTITIONS", "Engine", "StateKey"]

StateKey = tuple[str, int]
"""(topic, partition) of a state; :data:`ALL_PARTITIONS` when routed by puid."""

ALL_PARTITIONS: Final[StateKey] = ("*", -1)


class Engine:
    """Decode, route, join and read: the API sources and sinks use.

    Args:
        windows: window names (``"total"``, ``"5m"``, ``"1000"``) or specs.
        ttl: join TTL in seconds (default one hour).
        time_basis: ``"feedback"`` (default) or ``"request"``.
        route: ``"puid"`` (one state for every partition) or ``"partition"``.
        kinds: the declared model kinds (``--models-config``); default: detect.
        caps: what is tracked at most (models, classes, pending puids);
            default: no bounds. See :mod:`feedback_stream.caps`.
        comparisons: ``"baseline->candidate"`` predictor pairs to compare;
            empty: every two predictors of a deployment (``default`` first).
        comparison_alpha: error rate of the always-valid comparison test.
        comparison_effect: accuracy difference the "pairs needed" figure is for.
    """

    def __init__(
        self,
        windows: Iterable[str | WindowSpec] = ("total",),
        ttl: float = DEFAULT_TTL_S,
        time_basis: TimeBasis | str = TimeBasis.FEEDBACK,
        route: Literal["puid", "partition"] = "puid",
        kinds: ModelKinds | None = None,
        caps: Caps | None = None,
        comparisons: Iterable[str] = (),
        comparison_alpha: float = 0.05,
        comparison_effect: float = 0.02,
    ) -> None:
        specs = [w if isinstance(w, WindowSpec) else WindowSpec.parse(w) for w in windows]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"window names must be distinct, got {names}")
        if not specs:
            raise ValueError("at least one window is needed")
        if route not in ("puid", "partition"):
            raise ValueError(f"route must be 'puid' or 'partition', got {route!r}")
        self.specs = tuple(specs)
        self.ttl = float(ttl)
        self.time_basis = TimeBasis(time_basis)
        self.route = route
        self.kinds = kinds if kinds is not None else ModelKinds()
        self.pair_rules = parse_pair_rules(comparisons)
        if not 0.0 < comparison_alpha < 1.0:
            raise ValueError(f"comparison_alpha must be in (0, 1), got {comparison_alpha}")
        self.comparison_alpha = comparison_alpha
        self.comparison_effect = comparison_effect
        self.sequence = OutcomeSequence()
        self.caps = caps if caps is not None else Caps(1 << 62, 1 << 62)
        self.states: dict[StateKey, PartitionState] = {}
        self.clock = float("-inf")
        self._outcome_listeners: list[OutcomeListener] = []
        self._result_listeners: list[ResultListener] = []

    # ------------------------------------------------------------ writing

    def state_key(self, position: SourcePosition | None) -> StateKey:
        """Which state an event from ``position`` goes to."""
        if self.route == "puid" or position is None:
            return ALL_PARTITIONS
        return (position.topic, position.partition)

    def state(self, key: StateKey) -> PartitionState:
        """The state for ``key``, created empty when first needed."""
        state = self.states.get(key)
        if state is None:
            state = PartitionState(
                self.specs,
                self.ttl,
                self.time_basis,
                self.sequence,
                self.kinds,
                self.caps,
                self.pair_rules,
            )
            self._attach(state)
            self.states[key] = state
        return state

    def _attach(self, state: PartitionState) -> None:
        state.outcome_listeners = self._outcome_listeners
        state.result_listeners = self._result_listeners

    def process_record(
        self,
        headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes | None]],
        value: Any,
        timestamp_ms: int | float,
        position: SourcePosition,
    ) -> DecodeError | None:
        """Decode one Kafka record (or replay line) and process it.

        Returns the decode error, if the record was invalid, so the caller
        can dead-letter it; invalid (response, feedback) pairs found by the
        join are counted but not returned (the record itself was fine).
        """
        item = decode_kafka_record(headers, value, timestamp_ms, position)
        self.process_event(item)
        return item if isinstance(item, DecodeError) else None

    def process_event(self, item: Event | DecodeError) -> JoinResult | None:
        """Process one decoded event (from any source), or count one error."""
        position = item.position
        if not isinstance(item, DecodeError) and item.time > self.clock:
            self.clock = item.time
        state = self.state(self.state_key(position))
        result = state.process(item)
        cap = self.caps.max_pending
        if cap and (state.join.pending > cap or (len(self.states) > 1 and self.pending > cap)):
            self._bound_pending(cap)
        return result

    def process_events(self, items: Sequence[Event | DecodeError]) -> None:
        """Process a batch of decoded events (and count its errors), in order.

        The same as :meth:`process_event` for each item, with the per-batch
        work done once: the clock is moved to the newest event time at the
        end (nothing reads it while a batch is processed), and, routed by
        puid, the one state is looked up once.
        """
        if not items:
            return
        clock = self.clock
        cap = self.caps.max_pending
        single = self.state(ALL_PARTITIONS) if self.route == "puid" else None
        states = self.states
        for item in items:
            if not isinstance(item, DecodeError) and item.time > clock:
                clock = item.time
            state = single if single is not None else self.state(self.state_key(item.position))
            state.process(item)
            if cap and (state.join.pending > cap or (len(states) > 1 and self.pending > cap)):
                self._bound_pending(cap)
        if clock > self.clock:
            self.clock = clock

    def _bound_pending(self, cap: int) -> None:
        """Evict the oldest puids of the fullest states until ``cap`` puids are pending."""
        while (over := self.pending - cap) > 0:
            fullest = max(self.states.values(), key=lambda s: s.pending)
            fullest.evict(min(over, fullest.pending))

    def has_response(self, event: Event) -> bool:
        """Whether a logged response already answers what feedback ``event`` names."""
        state = self.states.get(self.state_key(event.position))
        return state is not None and state.join.has_response(event.puid, event.key)

    def expire(self, now: float) -> dict[EventKind, int]:
        """Expire every state's join entries past the TTL as of ``now``."""
        if now > self.clock:
            self.clock = now
        total = {EventKind.REQUEST: 0, EventKind.RESPONSE: 0, EventKind.FEEDBACK: 0}
        for state in self.states.values():
            for kind, count in state.expire(now).items():
                total[kind] += count
        return total

    def advance(self, now: float) -> None:
        """Move the clock to ``now`` (wall time in the service), if later."""
        if now > self.clock:
            self.clock = now

    def add_outcome_listener(self, listener: OutcomeListener) -> None:
        """Call ``listener(retracted, applied)`` whenever outcomes change (the ES sink)."""
        self._outcome_listeners.append(listener)

    def add_result_listener(self, listener: ResultListener) -> None:
        """Call ``listener(event, join_result)`` after every joined event (label delays)."""
        self._result_listeners.append(listener)

    # ------------------------------------------------------------ state moves

    def snapshot(self, key: StateKey) -> bytes:
        """The state of one partition (or :data:`ALL_PARTITIONS`) as bytes."""
        return snapshot.dumps(self.state(key))

    def restore(self, key: StateKey, data: bytes) -> None:
        """Replace the state of ``key`` with a snapshot taken by :meth:`snapshot`."""
        self.install(key, snapshot.loads(data, self.sequence, self.specs))

    def install(self, key: StateKey, state: PartitionState) -> None:
        """Make ``state`` (restored from a snapshot or a changelog) the state of ``key``.

        It must have been built with this engine's ``sequence``.
        """
        state.caps = self.caps
        # What the state tracks stays tracked: it was within the caps when saved.
        self.caps.admit(state.models)
        self.caps.admit(state.model_counters)
        # The classes tracked live: those the state's outcomes named (a state
        # saved before they were recorded has its windows' confusion cells).
        for model, counters in state.model_counters.items():
            self.caps.track_classes(model, counters.classes)
        for model, windows in state.models.items():
            for window in windows.windows.values():
                cells = window.counts().confusion
                self.caps.track_classes(model, (label for cell in cells for label in cell))
        # The configuration in force now wins over the one the state was saved
        # under; a changed time basis applies to outcomes joined from now on.
        state.join.ttl = self.ttl
        state.join.time_basis = self.time_basis
        state.join.kinds = self.kinds
        state.pairing.rules = self.pair_rules
        self._attach(state)
        replaced = self.states.get(key)
        if replaced is not None and replaced is not state:
            self._count_caps(replaced, -1)
        self._count_caps(state, 1)
        self.states[key] = state
        if state.clock > self.clock:
            self.clock = state.clock

    def revoke(self, key: StateKey) -> PartitionState | None:
        """Forget the state of a partition this processor no longer owns."""
        state = self.states.pop(key, None)
        if state is not None:
            self._count_caps(state, -1)
        return state

    def _count_caps(self, state: PartitionState, sign: int) -> None:
        """Add (or take away) a state's evictions and folded classes to the caps' counts.

        The caps' counters are the counts of the states held, as the
        Prometheus counters are: they continue from a restored state's values.
        """
        for kind, parts in state.events.evicted.items():
            self.caps.evicted[kind] += sign * parts
        self.caps.folded_classes += sign * state.events.folded_classes

    def model_error(self, key: ModelKey, position: SourcePosition) -> None:
        """Count a failed inference (Seldon Core 2's errors topic) in its partition's state."""
        self.state(self.state_key(position)).events.model_errors[key] += 1

    def dead_lettered(self, error: DecodeError) -> None:
        """Count a record sent to the dead-letter topic in the state of its partition."""
        self.state(self.state_key(error.position)).events.dead_lettered[error.code] += 1

    # ------------------------------------------------------------ reading

    @property
    def pending(self) -> int:
        """puids held in all join stores."""
        return sum(state.pending for state in self.states.values())

    def model_keys(self) -> list[ModelKey]:
        """Every model seen (with a response or an outcome), sorted."""
        keys: set[ModelKey] = set()
        for state in self.states.values():
            keys.update(state.models)
            keys.update(state.model_counters)
        return sorted(keys)

    def events(self) -> EventCounters:
        """Event counters summed over states."""
        total = EventCounters()
        for state in self.states.values():
            total.merge(state.events)
        return total

    def model_counters(self, key: ModelKey) -> ModelCounters:
        """Monotonic counters of one model, summed over states."""
        total = ModelCounters()
        for state in self.states.values():
            counters = state.model_counters.get(key)
            if counters is not None:
                total.merge(counters)
        return total

    def _spec(self, window: str) -> WindowSpec:
        spec = next((s for s in self.specs if s.name == window), None)
        if spec is None:
            raise KeyError(
                f"no window named {window!r}; windows are {[s.name for s in self.specs]}"
            )
        return spec

    def counts(
        self, key: ModelKey, window: str, now: float | None = None, *, share: bool = False
    ) -> Counts:
        """The merged counts of one window of one model as of ``now`` (default: the clock).

        With ``share``, a model held by one state gets that state's own
        counts, not a copy: for callers that read them at once.
        """
        at = self.clock if now is None or now < self.clock else now
        spec = self._spec(window)
        states = [s for s in self.states.values() if key in s.models]
        if spec.kind is WindowKind.COUNT and len(states) > 1:
            for state in states:
                state.advance(at)
            union = [o for s in states for o in s.models[key].windows[window].live()]
            union.sort(key=lambda o: o.seq)
            return Counts.of(union[-spec.size :])
        if len(states) == 1 and share:
            return states[0].counts(key, window, at)
        total = Counts()
        for state in states:
            total.merge(state.counts(key, window, at))
        return total

    def _read(self, key: ModelKey, window: str, now: float | None) -> Counts:
        """:meth:`counts` without copying a single state's counts (read at once, never kept)."""
        return self.counts(key, window, now, share=True)

    def comparison_keys(self) -> list[Comparison]:
        """Every comparison with at least one paired outcome, sorted."""
        keys: set[Comparison] = set()
        for state in self.states.values():
            keys.update(state.pairing.windows)
        return sorted(keys)

    def comparison_counts(
        self, comparison: Comparison, window: str, now: float | None = None
    ) -> Counts:
        """The merged paired counts of one window of one comparison (as :meth:`counts`)."""
        at = self.clock if now is None or now < self.clock else now
        spec = self._spec(window)
        states = [s for s in self.states.values() if comparison in s.pairing.windows]
        if spec.kind is WindowKind.COUNT and len(states) > 1:
            for state in states:
                state.advance(at)
            union = [
                o for s in states for o in s.pairing.windows[comparison].windows[window].live()
            ]
            union.sort(key=lambda o: o.seq)
            return Counts.of(union[-spec.size :])
        total = Counts()
        for state in states:
            total.merge(state.comparison_counts(comparison, window, at))
        return total

    def comparison(
        self, comparison: Comparison, window: str, now: float | None = None
    ) -> PairedComparison:
        """Every paired statistic of one window of one comparison."""
        table = pair_table(self.comparison_counts(comparison, window, now))
        return compare(table, self.comparison_alpha, self.comparison_effect)

    def comparisons_report(
        self, now: float | None = None, windows: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The ``comparisons`` list of the report: one entry per comparison, per window."""
        names = list(windows) if windows is not None else [s.name for s in self.specs]
        return [
            {
                "namespace": c.namespace,
                "deployment": c.deployment,
                "baseline": {"predictor": c.baseline.predictor, "model": c.baseline.model},
                "candidate": {"predictor": c.candidate.predictor, "model": c.candidate.model},
                "windows": {name: self.comparison(c, name, now).to_dict() for name in names},
            }
            for c in self.comparison_keys()
        ]

    def metrics(
        self, key: ModelKey, window: str, now: float | None = None, *, matrix: bool = True
    ) -> WindowMetrics:
        """All metrics of one window of one model; the dense matrix only if ``matrix``."""
        return compute(self._read(key, window, now), matrix=matrix)

    def kind(self, key: ModelKey) -> tuple[ModelKind, bool]:
        """(kind, declared) of a model: undeclared models are read as classification."""
        return self.kinds.kind(key)

    def report(
        self, now: float | None = None, windows: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The JSON document of ``replay --output json`` and ``GET /api/v1/metrics``."""
        names = list(windows) if windows is not None else [s.name for s in self.specs]
        models = []
        for key in self.model_keys():
            models.append(
                (
                    key,
                    {name: self.metrics(key, name, now) for name in names},
                    self.model_counters(key),
                )
            )
        kinds = {key: self.kind(key) for key, _, _ in models}
        document = build_report(models, self.events(), self.pending, kinds)
        extras = self.unlabelled(now, names)
        for (key, _, _), model in zip(models, document["models"], strict=True):
            for name, window in model["windows"].items():
                window.update(extras[key][name])
        document["comparisons"] = self.comparisons_report(now, names)
        return document

    def _live(self, key: ModelKey, spec: WindowSpec, at: float) -> list[Outcome]:
        """The outcomes one time or count window of one model holds, merged over states."""
        states = [s for s in self.states.values() if key in s.models]
        for state in states:
            state.advance(at)
        union = [o for s in states for o in s.models[key].windows[spec.name].live()]
        if spec.kind is WindowKind.COUNT and len(states) > 1:
            union.sort(key=lambda o: o.seq)
            union = union[-spec.size :]
        return union

    def label_delays(
        self, key: ModelKey, window: str, now: float | None = None
    ) -> dict[str, float | None]:
        """p50 / p90 / p99 label delay (s) of one window of one model.

        Exact for time and count windows (their responses, once each); from
        the model's delay buckets for the cumulative one
        (:mod:`feedback_stream.label_delay`).
        """
        at = self.clock if now is None or now < self.clock else now
        spec = self._spec(window)
        if spec.kind is WindowKind.TOTAL:
            return self.model_counters(key).label_delays.percentiles()
        return percentiles(
            o.feedback_time - o.response_time for o in self._live(key, spec, at) if o.row == 0
        )

    def unlabelled(
        self, now: float | None = None, windows: Sequence[str] | None = None
    ) -> dict[ModelKey, dict[str, dict[str, Any]]]:
        """Per model and window: what the labels do not say yet.

        ``estimated_accuracy``: the confidence-based estimate of the accuracy
        of the responses still waiting for feedback (:mod:`feedback_stream.cbpe`);
        ``calibration``: observed accuracy vs mean top score of the labelled
        rows; ``label_delay_s``: p50 / p90 / p99 label delay.
        """
        at = self.clock if now is None or now < self.clock else now
        names = list(windows) if windows is not None else [s.name for s in self.specs]
        specs = [self._spec(name) for name in names]
        pending = (
            pending_windows(
                (item for state in self.states.values() for item in state.join.pending_scores()),
                specs,
                at,
            )
            if at != float("-inf")
            else {}
        )
        out: dict[ModelKey, dict[str, dict[str, Any]]] = {}
        for key in self.model_keys():
            sums = pending.get(key, {})
            per: dict[str, dict[str, Any]] = {}
            for name in names:
                estimated = estimate(sums[name]) if name in sums else None
                quality = self.counts(key, name, now, share=True).quality
                check = calibration(quality.probability if quality is not None else None)
                per[name] = {
                    "estimated_accuracy": estimated.to_dict() if estimated else None,
                    "calibration": check.to_dict() if check else None,
                    "label_delay_s": self.label_delays(key, name, now),
                }
            out[key] = per
        return out
