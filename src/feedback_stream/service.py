"""The streaming processor: sources → engine → sinks, and its lifecycle.

:class:`Service` owns one :class:`~feedback_stream.engine.Engine` and wires
to it whatever the settings switch on:

* the HTTP server (always): ``/metrics``, the JSON API, the live page and,
  unless ``http_ingest`` is off, CloudEvents ingest on ``POST /``;
* the Kafka source (``kafka_bootstrap_servers`` set), with its dead-letter
  producer (``dlq_topic``) and partition checkpoints (``state_dir``);
* the Elasticsearch history bootstrap (``history.enabled``), read before
  the Kafka source starts, and the outcome sink (``es.sink_enabled``).

Start-up order makes ``/readyz`` honest: HTTP first (so probes get an
answer), then history, then Kafka; ready once partitions are assigned and
the history is in.

A ticker moves the engine on the wall clock every ``tick_interval_s``:
windows advance (a model without new feedback shows an empty sliding
window), join entries past the TTL expire, and the live page's accuracy
series get a point. Expiry uses the *stream's* clock: the newest event time
seen plus the wall time since it was seen, capped by the wall clock. Live,
that is the wall clock; re-reading a retained topic from the start, it is
the topic's own time, so old responses are not expired before their
feedback, a few records later, is read.

Shutdown (:meth:`Service.stop`, or SIGTERM/SIGINT under :meth:`run`) turns
``/readyz`` unready, lets the Kafka source finish its batch, commit and
checkpoint, flushes the dead letters and the outcome sink, and closes the
HTTP server last (it answers probes until then).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from feedback_stream._gc import tune_collector
from feedback_stream._ratelimit import install_rate_limit
from feedback_stream.caps import Caps
from feedback_stream.caps_metrics import CapsCollector
from feedback_stream.core2 import Core2Decoder, Experiments, ModelError
from feedback_stream.core2.metrics import ModelErrorMetrics
from feedback_stream.decode import DecodeError, decode_http, decode_kafka_record
from feedback_stream.engine import ALL_PARTITIONS, Engine, StateKey
from feedback_stream.es._client import connect
from feedback_stream.es.client import SearchClient
from feedback_stream.es.errors import ElasticsearchEdgeError
from feedback_stream.es.history import HistoryBootstrap
from feedback_stream.es.overlap import HistoryOverlap
from feedback_stream.es.sink import OutcomeSink, SinkCollector
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.exposition import MetricsExposition, WindowGauges
from feedback_stream.http.app import Readiness
from feedback_stream.http.listeners import Listeners
from feedback_stream.http.refusals import Refusals
from feedback_stream.kafka.checkpoint import CheckpointStore
from feedback_stream.kafka.consumer import KafkaSource, Record
from feedback_stream.kafka.dlq import DeadLetterQueue
from feedback_stream.kafka.repartition import Repartitioner
from feedback_stream.kafka.state_store import StateStore
from feedback_stream.metrics import Counts, WindowMetrics
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.prometheus import LabelGuard, ServiceMetrics
from feedback_stream.resolvers.elasticsearch import ElasticsearchResolver
from feedback_stream.resolvers.metrics import ResolverCollector, ResolverCounts
from feedback_stream.resolvers.prediction import PredictionResolver, parse_prediction_urls
from feedback_stream.settings import Settings, add_arguments, settings_from_args, usage_errors
from feedback_stream.status import BrokerCollector, status_document
from feedback_stream.windows import WindowKind

__all__ = ["Service", "add_run_parser", "configure_logging", "load_settings"]

_log = logging.getLogger(__name__)

_MAX_SKEW_S = 60.0
_BODIES_MAX = 1024
_BODIES_MAX = 1024

HTTP_TOPIC = "http"
"""The ``topic`` of HTTP events' source positions (EVENTS.md: one naming for every source)."""


class _Series:
    """Accuracy of every window of one model, sampled on the ticker, for the page."""

    __slots__ = ("points",)

    def __init__(self, size: int) -> None:
        self.points: deque[tuple[float, tuple[float | None, ...]]] = deque(maxlen=size)


class Service:
    """One processor instance. ``async with Service(settings) as service:`` starts it."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self.engine = Engine(
            settings.windows,
            ttl=settings.ttl_s,
            time_basis=settings.time_basis,
            # Re-keyed by puid, a partition's state is complete and moves with it.
            route="partition" if settings.repartition_topic else settings.route,
            kinds=ModelKinds.load(settings.models_config) if settings.models_config else None,
            caps=Caps(
                settings.max_models,
                settings.max_classes,
                settings.max_pending,
                settings.class_allowlist,
            ),
            comparisons=settings.comparisons,
            comparison_alpha=settings.comparison_alpha,
            comparison_effect=settings.comparison_effect,
        )
        self._registry = CollectorRegistry(auto_describe=False)
        self.guard = LabelGuard(settings.max_models, settings.max_classes, settings.class_allowlist)
        # Their own registry: /metrics writes them directly (feedback_stream.exposition).
        self.metrics = ServiceMetrics(CollectorRegistry(auto_describe=False), self.guard)
        self.metrics.attach(self.engine)
        self.refusals = Refusals(self._registry)
        self.kafka: KafkaSource | None = None
        self.repartitioner: Repartitioner | None = None
        self.dlq: DeadLetterQueue | None = None
        self.state_store: StateStore | None = None
        self.checkpoints: CheckpointStore | None = None
        if settings.kafka_enabled and settings.state_changelog:
            self.state_store = StateStore(settings, self.engine, self._partitions_of)
        elif settings.state_dir:
            self.checkpoints = CheckpointStore(settings.state_dir)
        self._fatal: BaseException | None = None
        self._reported: BaseException | None = None
        """What :meth:`serve` raised (a task's failure): :meth:`stop` does not raise it again."""
        self._told: BaseException | None = None
        """The last failure logged as the reason to stop (not logged twice)."""
        self._failed = asyncio.Event()
        self.exposition = MetricsExposition(
            self._registry,
            WindowGauges(self.engine, self.guard, self.now, self._lag),
            self.metrics,
        )
        self.core2: Core2Decoder | None = None
        self.model_errors: ModelErrorMetrics | None = None
        if settings.source == "seldon-core-2":
            self.core2 = Core2Decoder(
                prefix=settings.seldon_topic_prefix,
                feedback_topic=settings.seldon_feedback_topic,
                experiments=Experiments.parse(settings.seldon_experiments),
            )
            self.model_errors = ModelErrorMetrics(self._registry, self.guard)
        self._registry.register(CapsCollector(self.engine.caps))
        self._registry.register(BrokerCollector(lambda: self.kafka))
        self._http_seq = itertools.count()
        self._event_clock = float("-inf")
        self._event_wall = 0.0
        self._series: dict[ModelKey, _Series] = {}
        self._last_sample = float("-inf")
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop_requested = asyncio.Event()
        self._stopped = False
        self._overlap: HistoryOverlap | None = None
        self._sink: OutcomeSink | None = None
        self._es_client: SearchClient | None = None
        self._es_failure: str | None = None
        self._history_failure: str | None = None
        self._history: HistoryBootstrap | None = None
        self.resolver: PredictionResolver | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self._bodies: OrderedDict[int, tuple[Event, Any]] = OrderedDict()
        if settings.prediction_urls:
            self.resolver = PredictionResolver(
                parse_prediction_urls(settings.prediction_urls),
                settings.prediction_timeout_s,
                settings.prediction_concurrency,
            )
        self.orphan_lookup: ElasticsearchResolver | None = None
        counted: dict[str, ResolverCounts] = {}
        if self.resolver is not None:
            counted["prediction_url"] = self.resolver
        if settings.orphan_lookup:
            counted["elasticsearch"] = _LookupCounts(self)
        if counted:
            self._registry.register(ResolverCollector(counted))
        self.http_port: int | None = None
        self.ingest_port: int | None = None
        """The port ingest is served on (``http_port`` unless a separate listener)."""
        self._listeners: Listeners | None = None

    # -- clocks ------------------------------------------------------------

    def now(self) -> float:
        """Wall-clock seconds: what windows are read and advanced at."""
        return self._clock()

    def _observe(self, event_time: float) -> None:
        wall = self._clock()
        # A producer whose clock runs ahead must not pin the stream clock in the future.
        if self._event_clock < event_time <= wall + _MAX_SKEW_S:
            self._event_clock = event_time
            self._event_wall = wall

    def expiry_clock(self) -> float:
        """The stream's clock for the join TTL (see the module docstring)."""
        wall = self._clock()
        if self._event_clock == float("-inf"):
            return wall
        return min(wall, self._event_clock + max(0.0, wall - self._event_wall))

    # -- the Backend of the HTTP app -----------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """Every family of ``/metrics``, the window gauges included."""
        return self.exposition.full

    def metrics_page(self, accept: str) -> tuple[bytes, str]:
        return self.exposition.render(accept)

    def decode(
        self, headers: Mapping[str, str], body: bytes | dict[str, Any], arrival: float
    ) -> Event | DecodeError:
        position = SourcePosition(HTTP_TOPIC, 0, next(self._http_seq))
        item = decode_http(headers, body, arrival, position)
        if isinstance(item, Event) and self._may_resolve(item):
            # Kept for the resolver until apply_events takes the event (same request).
            self._bodies[id(item)] = (item, body)  # the item held: its id is not reused
            while len(self._bodies) > _BODIES_MAX:
                self._bodies.popitem(last=False)
        return item

    def apply_events(self, items: Sequence[Event | DecodeError]) -> None:
        for item in items:
            if isinstance(item, DecodeError):
                self._invalid(item)
                continue
            held = self._bodies.pop(id(item), None)
            body = held[1] if held is not None and held[0] is item else None
            if body is not None and self._orphan(item):
                # Processed once the resolver has answered (or failed, within its timeout).
                task = asyncio.create_task(self._resolve_then_process(item, body))
                self._resolving.add(task)
                task.add_done_callback(self._resolving.discard)
            else:
                self._process(item)

    def _may_resolve(self, item: Event | DecodeError) -> bool:
        """Feedback a resolver could answer (no engine state read: may run off the loop)."""
        if not isinstance(item, Event) or item.kind is not EventKind.FEEDBACK:
            return False
        if item.embedded is not None:
            return False
        resolver = self.resolver
        return self.settings.orphan_lookup or (resolver is not None and resolver.wants(item))

    @property
    def resolving(self) -> int:
        """Orphan feedback waiting for a resolver's answer (over HTTP)."""
        return len(self._resolving)

    def _orphan(self, event: Event) -> bool:
        """Feedback a resolver could answer and no logged response answers yet."""
        if event.kind is not EventKind.FEEDBACK or event.embedded is not None:
            return False
        wanted = self.settings.orphan_lookup or (
            self.resolver is not None and self.resolver.wants(event)
        )
        return wanted and not self.engine.has_response(event)

    async def _resolve_then_process(self, event: Event, body: Any) -> None:
        """Find an orphan feedback a response (logger index, then model), then process it."""
        if self.orphan_lookup is not None:
            for response in await self.orphan_lookup.resolve(event):
                self._process_history(response)
        if self.resolver is not None and not self.engine.has_response(event):
            event = await self.resolver.resolve(event, body)
        self._process(event)

    def models(self, window: str | None) -> list[dict[str, Any]]:
        name = self._window_name(window)
        now = self.now()
        out = []
        unlabelled = self.engine.unlabelled(now, [name])
        for key in self.engine.model_keys():
            counters = self.engine.model_counters(key)
            kind, declared = self.engine.kind(key)
            out.append(
                {
                    **_labels(key),
                    "responses": counters.responses,
                    "labelled_responses": counters.labelled,
                    "label_coverage": (
                        min(1.0, counters.labelled / counters.responses)
                        if counters.responses
                        else None
                    ),
                    "last_feedback_time": counters.last_feedback_time,
                    "kind": kind.value,
                    "kind_declared": declared,
                    "needs_kind": counters.needs_kind,
                    "windows": [spec.name for spec in self.engine.specs],
                    "current": {
                        **_current(name, self.engine.metrics(key, name, now, matrix=False)),
                        **unlabelled[key][name],
                    },
                }
            )
        return out

    def metrics_document(self, windows: Sequence[str] | None) -> dict[str, Any]:
        if windows is not None:
            for name in windows:
                self._window_name(name)
        return self.engine.report(self.now(), windows)

    def history(self, window: str | None) -> dict[str, Any]:
        name = self._window_name(window)
        index = [spec.name for spec in self.engine.specs].index(name)
        return {
            "window": name,
            "windows": [spec.name for spec in self.engine.specs],
            "interval_s": self.settings.tick_interval_s,
            "now": self.now(),
            "models": [
                {
                    **_labels(key),
                    "points": [[t, values[index]] for t, values in series.points],
                }
                for key, series in sorted(self._series.items())
            ],
        }

    def comparisons(self, window: str | None) -> dict[str, Any]:
        name = self._window_name(window)
        engine = self.engine
        return {
            "window": name,
            "windows": [spec.name for spec in engine.specs],
            "alpha": engine.comparison_alpha,
            "effect": engine.comparison_effect,
            "comparisons": engine.comparisons_report(self.now(), [name]),
        }

    def readiness(self) -> Readiness:
        checks = {"http": self._runner is not None}
        reasons: dict[str, str] = {}
        # A member that owns no partition reads nothing: unready, and says why
        # (its topic does not exist yet, or the group's other members own them all).
        sources = {"kafka_assigned": self.kafka}
        if self.repartitioner is not None:
            sources["repartition_assigned"] = self.repartitioner.source
        for name, source in sources.items():
            if source is not None:
                checks[name] = bool(source.assigned)
                if not checks[name]:
                    reasons[name] = source.unassigned_reason()
        details: dict[str, Any] = {"history": self._history_state()}
        if self.settings.history.enabled:
            ready = self._history is not None and self._history.progress.ready
            checks["history_loaded"] = ready or (
                self._history_failure is not None and not self.settings.history.required
            )
            if not checks["history_loaded"]:
                reasons["history_loaded"] = str(details["history"].get("reason", "loading"))
        if self._sink is not None:
            details["es_sink"] = self._sink.stats.as_dict()
        elif self.settings.es.sink_enabled:
            details["es_sink"] = {"available": False, "last_error": self._es_failure}
        if self.state_store is not None:
            store = self.state_store
            waiting = len(self.kafka.restoring) if self.kafka is not None else 0
            checks["state_restored"] = not store.restoring and not waiting and self._fatal is None
            if store.restoring or waiting:
                reasons["state_restored"] = (
                    f"restoring the state of {waiting} partitions from {store.topic} "
                    f"({store.restored_records} records read)"
                )
            elif self._fatal is not None:
                reasons["state_restored"] = f"state failed: {self._fatal!r}"
        if self._stopped:
            reasons["stopping"] = "shutting down"
        return Readiness(all(checks.values()) and not self._stopped, checks, reasons, details)

    def _history_state(self) -> dict[str, Any]:
        """The history's state for ``/readyz``: loading, loaded, failed or disabled, and why."""
        if not self.settings.history.enabled:
            return {"state": "disabled", "reason": "history.enabled is off"}
        if self._history is None:
            if self._history_failure is not None:
                return {"state": "failed", "reason": self._history_failure}
            return {"state": "loading", "reason": "connecting to the search server"}
        progress = self._history.progress
        if progress.state == "done":
            return {"state": "loaded", "documents": progress.documents, "events": progress.events}
        if progress.state in ("skipped", "failed"):
            serving = "serving without it" if progress.state == "skipped" else "required"
            return {"state": "failed", "reason": f"{progress.error} ({serving})"}
        return {"state": "loading", "documents": progress.documents, "total": progress.total}

    def status(self) -> dict[str, Any]:
        return status_document(
            self.kafka, self.engine.pending, self.engine.caps, self.refusals.counts()
        )

    def _window_name(self, window: str | None) -> str:
        names = [spec.name for spec in self.engine.specs]
        if window is None or window == "":
            timed = [s.name for s in self.engine.specs if s.kind is WindowKind.TIME]
            return timed[0] if timed else names[0]
        if window not in names:
            raise ValueError(f"no window {window!r}; this processor keeps {names}")
        return window

    # -- processing ----------------------------------------------------------

    def _process(self, event: Event) -> None:
        self._observe(event.time)
        if self._overlap is not None and self._overlap.is_duplicate(event):
            # Already loaded from the request logger's history: a repeat, counted as one.
            self.metrics.events.labels(event.kind.value, "duplicate").inc()
            return
        self.engine.process_event(event)

    def _dead_lettered(self, error: DecodeError) -> None:
        self._invalid(error)
        self.engine.dead_lettered(error)
        self.metrics.on_dead_letter(error.code)

    def _invalid(self, error: DecodeError) -> None:
        self.engine.process_event(error)
        self.metrics.on_invalid(error)

    def _process_history(self, item: Event | DecodeError) -> None:
        if isinstance(item, DecodeError):
            self._invalid(item)
            return
        self._observe(item.time)
        self.engine.process_event(item)

    # The Kafka source's BatchHandler ------------------------------------------

    @property
    def pending(self) -> int:
        return self.engine.pending

    async def apply(self, records: Sequence[Record]) -> None:
        """Apply one ``getmany`` batch: decoded, then joined and windowed as a batch.

        Per record only what must be: its decode and its join. The stream
        clock is observed once (the batch's newest event time), the engine
        takes the whole batch (:meth:`Engine.process_events`), the Prometheus
        counters are incremented once per label set at its end
        (:meth:`ServiceMetrics.batch`), and dead letters are queued as found
        and awaited once at the end. Orphan
        feedback that a resolver may answer, and events the history already
        loaded, need a record's own turn: with a resolver or the history on,
        records go one by one as before.
        """
        if self.core2 is not None or self._overlap is not None or self._resolves_orphans:
            await self._apply_each(records)
            return
        items: list[Event | DecodeError] = []
        append = items.append
        errors: list[tuple[Record, DecodeError]] = []
        wall = self._clock()
        # A producer whose clock runs ahead must not pin the stream clock in the future.
        bound = wall + _MAX_SKEW_S
        newest = self._event_clock
        for record in records:
            item = decode_kafka_record(
                record.headers,
                record.value,
                record.timestamp,
                SourcePosition(record.topic, record.partition, record.offset),
            )
            if isinstance(item, DecodeError):
                errors.append((record, item))
            elif newest < item.time <= bound:
                newest = item.time
            append(item)
        if newest > self._event_clock:  # what _observe does, once for the batch
            self._event_clock = newest
            self._event_wall = wall
        with self.metrics.batch():  # the counters' increments, once per batch
            self.engine.process_events(items)
        if errors:
            await self._dead_letter(errors)

    @property
    def _resolves_orphans(self) -> bool:
        return self.settings.orphan_lookup or self.resolver is not None

    async def _dead_letter(self, errors: Sequence[tuple[Record, DecodeError]]) -> None:
        """Count a batch's invalid records and dead-letter them (acknowledged on return)."""
        dlq = self.dlq
        for record, error in errors:
            self.metrics.on_invalid(error)
            if dlq is not None:
                await dlq.send_record(record, error)
                self.engine.dead_lettered(error)  # state: carried across a restart
                self.metrics.on_dead_letter(error.code)
        if dlq is not None:
            await dlq.flush()

    async def _apply_each(self, records: Sequence[Record]) -> None:
        """Apply records one by one (Seldon Core 2 decoding, orphan resolution, history)."""
        for record in records:
            position = SourcePosition(record.topic, record.partition, record.offset)
            if self.core2 is None:
                item = decode_kafka_record(record.headers, record.value, record.timestamp, position)
            else:
                decoded = self.core2.decode(
                    record.topic,
                    record.headers,
                    record.key,
                    record.value,
                    record.timestamp,
                    position,
                )
                if isinstance(decoded, ModelError):
                    if self.model_errors is not None:
                        self.model_errors.on_model_error(decoded)
                    self.engine.model_error(decoded.key, decoded.position)
                    continue
                item = decoded
            if isinstance(item, DecodeError):
                self._invalid(item)
                if self.dlq is not None:
                    await self.dlq.send_record(record, item)
                    self.engine.dead_lettered(item)
                    self.metrics.on_dead_letter(item.code)
            elif self._orphan(item):
                await self._resolve_then_process(item, record.value)
            else:
                self._process(item)
        if self.dlq is not None:
            await self.dlq.flush()

    def _state_name(self, key: StateKey) -> str:
        if key == ALL_PARTITIONS:
            return f"{self.settings.kafka_group_id}-all"
        return f"{self.settings.kafka_group_id}-{key[0]}-{key[1]}"

    async def assign(self, committed: Mapping[TopicPartition, int | None]) -> None:
        if self.state_store is not None:
            try:
                await self._restore(committed)
            except Exception as exc:
                # aiokafka would log a listener's error and carry on with the partition
                # stateless: stop instead, and restart from the state topic.
                self._fail(exc)
                raise
            return
        store = self.checkpoints
        if store is None:
            return
        now = self._clock()
        if self.engine.route == "partition":
            for tp, offset in committed.items():
                key = (tp.topic, tp.partition)
                self.engine.revoke(key)
                if offset is None:
                    continue
                checkpoint = store.usable(
                    self._state_name(key), {key: offset}, now, self.engine.ttl
                )
                if checkpoint is not None:
                    self.engine.restore(key, checkpoint.state)
                    _log.info("restored %s/%d at offset %d", tp.topic, tp.partition, offset)
            return
        if ALL_PARTITIONS in self.engine.states:
            return  # routed by puid, the state is this process's; it stays
        name = self._state_name(ALL_PARTITIONS)
        checkpoint = store.load(name)
        if checkpoint is None:
            return
        wanted = {
            (tp.topic, tp.partition): offset
            for tp, offset in committed.items()
            if (tp.topic, tp.partition) in checkpoint.offsets and offset is not None
        }
        usable = store.usable(name, wanted, now, self.engine.ttl)
        if usable is not None:
            self.engine.restore(ALL_PARTITIONS, usable.state)
            _log.info("restored the state of %d partitions", len(wanted))

    async def _restore(self, committed: Mapping[TopicPartition, int | None]) -> None:
        states = self.state_store
        assert states is not None
        if self.engine.route == "partition":
            for tp, offset in committed.items():
                key = (tp.topic, tp.partition)
                await states.restore(key, {tp: offset})
                # Adopted at once: a revoke may cancel the restore of the next one.
                self._adopt(key)
        elif ALL_PARTITIONS not in states.restored:
            await states.restore(ALL_PARTITIONS, committed)
            self._adopt(ALL_PARTITIONS)
        else:
            states.add_partitions(ALL_PARTITIONS, committed)

    def _adopt(self, key: StateKey) -> None:
        state = self.engine.states[key]
        self.metrics.adopt(state)
        if self.model_errors is not None:
            self.model_errors.adopt(state)
        self._observe(state.event_clock)

    async def _release(self, key: StateKey) -> None:
        assert self.state_store is not None
        state = self.engine.states.get(key)
        if state is not None and key in self.state_store.restored:
            self.metrics.adopt(state, -1)
            if self.model_errors is not None:
                self.model_errors.adopt(state, -1)
        await self.state_store.release(key)

    def _fail(self, exc: BaseException) -> None:
        """A state error: say why, make ``/readyz`` say it, and stop (:meth:`_watch_failures`)."""
        self._stopping_because(exc)
        if self._fatal is None:
            self._fatal = exc
        self._failed.set()

    def _stopping_because(self, exc: BaseException) -> None:
        """Log why the process stops, once, before it closes (the reason comes first)."""
        if exc is not self._told:
            self._told = exc
            _log.error("stopping: %r", exc)

    async def _watch_failures(self) -> None:
        await self._failed.wait()
        assert self._fatal is not None
        raise self._fatal

    def _partitions_of(self, topic: str) -> int | None:
        return self.kafka.partitions_of(topic) if self.kafka is not None else None

    async def revoke(self, positions: Mapping[TopicPartition, int | None]) -> None:
        if self.state_store is not None:
            if self.engine.route == "partition":
                for tp in positions:
                    await self._release((tp.topic, tp.partition))
            elif self.kafka is not None and not self.kafka.assigned:
                await self._release(ALL_PARTITIONS)
            return
        store = self.checkpoints
        now = self._clock()
        if self.engine.route == "partition":
            for tp, offset in positions.items():
                key = (tp.topic, tp.partition)
                if store is not None and offset is not None and key in self.engine.states:
                    store.save(self._state_name(key), {key: offset}, self.engine.snapshot(key), now)
                self.engine.revoke(key)
            return
        if store is not None and ALL_PARTITIONS in self.engine.states and self.kafka is not None:
            offsets = dict(self.kafka.positions())
            offsets.update(
                {(tp.topic, tp.partition): o for tp, o in positions.items() if o is not None}
            )
            store.save(
                self._state_name(ALL_PARTITIONS),
                offsets,
                self.engine.snapshot(ALL_PARTITIONS),
                now,
            )

    def _lag(self) -> Mapping[tuple[str, int], int]:
        return self.kafka.lag() if self.kafka is not None else {}

    # -- the ticker ------------------------------------------------------------

    def tick(self) -> None:
        """Expire joins, advance windows, sample the page's series: one wall-clock step."""
        now = self._clock()
        self.metrics.on_expired(self.engine.expire(self.expiry_clock()))
        self.engine.advance(now)
        if self._overlap is not None:
            self._overlap.expire(self.expiry_clock())
        if now - self._last_sample >= self.settings.tick_interval_s:
            self._last_sample = now
            self._sample(now)

    def _sample(self, now: float) -> None:
        for key in self.engine.model_keys():
            if not self.guard.admits(key):
                continue
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(self.settings.history_points)
            # Accuracy only: read from the counts, no per-class work on the ticker.
            values = tuple(
                _accuracy(self.engine.counts(key, spec.name, now)) for spec in self.engine.specs
            )
            series.points.append((now, values))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_interval_s)
            try:
                self.tick()
            except Exception:
                _log.exception("tick failed")

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start HTTP, load history, start the sink and the Kafka source."""
        s = self.settings
        listeners = Listeners(self, s, self.refusals)
        await listeners.start()
        self._listeners = listeners
        self._runner = listeners.read_runner
        self.http_port = listeners.read_port
        self.ingest_port = listeners.ingest_port
        self._tasks.append(asyncio.create_task(self._ticker(), name="ticker"))
        if self.resolver is not None:
            await self.resolver.start()
        if s.history.enabled or s.es.sink_enabled or s.orphan_lookup:
            await self._start_elasticsearch()
        if s.kafka_enabled:
            if s.dlq_topic:
                self.dlq = DeadLetterQueue(s)
                await self.dlq.start()
            processed = s
            if s.repartition_topic:
                self.repartitioner = Repartitioner(s, self.dlq, on_invalid=self._dead_lettered)
                await self.repartitioner.start()
                self._tasks.append(
                    asyncio.create_task(self.repartitioner.run(), name="repartition")
                )
                processed = s.model_copy(
                    update={"kafka_topics": [s.repartition_topic], "kafka_topic_pattern": ""}
                )
            committer = None
            if self.state_store is not None:
                committer = _StateCommitter(self, self.state_store)
                self._tasks.append(asyncio.create_task(self._watch_failures(), name="state"))
            self.kafka = KafkaSource(processed, self, committer, on_failure=self._stopping_because)
            await self.kafka.start()
            self._tasks.append(asyncio.create_task(self.kafka.run(), name="kafka"))

    async def _start_elasticsearch(self) -> None:
        s = self.settings
        try:
            # Waits for the cluster with backoff (es.startup_wait_s), then picks its dialect.
            self._es_client = await connect(s.es)
        except ElasticsearchEdgeError as error:
            self._es_failure = self._history_failure = str(error)
            if s.history.enabled and s.history.required:
                _log.error("history: %s", error)
                raise
            if s.history.enabled:
                _log.error("history: %s; serving without it", error)
            if s.es.sink_enabled and error.retriable:
                _log.error(
                    "outcome sink: %s; outcomes are buffered and written once the cluster "
                    "answers (state commits wait for them)",
                    error,
                )
                await self._start_sink(None)
                assert self._sink is not None
                self._sink.stats.last_error = str(error)
                self._tasks.append(asyncio.create_task(self._sink_when_up(), name="es-sink-up"))
            elif s.es.sink_enabled:
                _log.error("outcome sink: %s; running without it", error)
            return
        if s.orphan_lookup:
            self.orphan_lookup = ElasticsearchResolver(
                self._es_client,
                s.history.index_pattern,
                kserve_component=s.history.kserve_component,
                cache_size=s.orphan_lookup_cache,
                concurrency=s.prediction_concurrency,
            )
        if s.es.sink_enabled:
            await self._start_sink(self._es_client)
        if s.history.enabled:
            self._overlap = HistoryOverlap(forget_after=self._clock() + s.ttl_s)
            self._history = HistoryBootstrap(
                self._es_client,
                s.history,
                hosts=s.es.hosts_text,
                time_basis=s.time_basis,
                join_ttl_s=s.ttl_s,
                overlap=self._overlap,
            )
            await self._history.run(self._process_history)

    async def _start_sink(self, client: SearchClient | None) -> None:
        sink = OutcomeSink(client, self.settings.es)
        self.engine.add_outcome_listener(sink.on_outcomes)
        self.engine.add_result_listener(sink.on_result)
        await sink.start()
        self._sink = sink
        self._registry.register(SinkCollector(sink))

    async def _sink_when_up(self) -> None:
        """Keep waiting for a cluster that was down at start, then connect the sink.

        The sink buffers the outcomes applied meanwhile and a state commit
        waits for them (its flush), so none is lost: a committed input offset
        never covers an outcome the cluster has not acknowledged. The status
        shows the sink unavailable meanwhile.
        """
        while True:
            try:
                client = await connect(self.settings.es, wait_s=3600.0)
            except ElasticsearchEdgeError as error:
                self._es_failure = str(error)
                if self._sink is not None:
                    self._sink.stats.last_error = str(error)
                if not error.retriable:
                    _log.error("outcome sink: %s; running without it", error)
                    if self._sink is not None:
                        self._sink.abandon(str(error))
                    return
                continue
            self._es_client = client
            self._es_failure = None
            if self._sink is not None:
                self._sink.connect(client)
            _log.info("outcome sink: the cluster answers, writing outcomes from now on")
            return

    def request_stop(self) -> None:
        """Ask :meth:`run` to shut down (safe from a signal handler)."""
        self._stop_requested.set()

    async def stop(self) -> None:
        """Finish the batch in hand, commit, checkpoint, flush and close; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested.set()  # a commit waiting for the outcome sink gets its limit
        if self.repartitioner is not None:
            self.repartitioner.stop()
        if self.kafka is not None:
            self.kafka.stop()
        for task in self._tasks:
            if task.get_name() not in ("kafka", "repartition"):
                task.cancel()
        # Every task ends here, before what it uses is closed, even after one of them
        # failed: the state's watcher re-raises a fatal state error, and an await that
        # raised it left the Kafka source to close in asyncio.run's final cancellation,
        # with aiokafka's connection readers cancelled (its LeaveGroup then went
        # unanswered for the request timeout, 40 s, before the process exited).
        ended = await asyncio.gather(*self._tasks, return_exceptions=True)
        failures = [e for e in ended if isinstance(e, Exception) and e is not self._reported]
        self._tasks.clear()
        if self._resolving:
            # Each call ends within its timeout: the feedback in hand is processed, not lost.
            await asyncio.gather(*self._resolving, return_exceptions=True)
        if self.resolver is not None:
            await self.resolver.stop()
        if self.repartitioner is not None:
            await self.repartitioner.close()
        if self.state_store is not None:
            await self.state_store.stop()
        if self.dlq is not None:
            await self.dlq.stop()
        if self._sink is not None:
            await self._sink.stop()
        if self._es_client is not None:
            await self._es_client.close()
        if self._listeners is not None:
            await self._listeners.stop()
            self._listeners = None
            self._runner = None
        if failures:
            raise failures[0]  # e.g. the last commit at a requested stop, refused

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT (Ctrl-C) request a graceful stop while inside."""
        loop = asyncio.get_running_loop()
        handled = []
        # asyncio's signal handlers exist on Unix only; elsewhere Ctrl-C stays
        # Python's KeyboardInterrupt. RuntimeError: not the main thread (tests).
        signals = (signal.SIGTERM, signal.SIGINT) if sys.platform != "win32" else ()
        for sig in signals:
            with contextlib.suppress(RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
                handled.append(sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def serve(self) -> None:
        """Wait until a stop is requested; raise what a source died of, if one does."""
        waiter = asyncio.create_task(self._stop_requested.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, *self._tasks}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        for task in done:
            if task is waiter or task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                if error is not self._told:
                    _log.error("%s failed: %r", task.get_name(), error)
                self._reported = error
                raise error
            raise RuntimeError(f"{task.get_name()} ended without a stop request")

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or :meth:`request_stop`), then stop."""
        with self.stop_on_signals():
            try:
                await self.start()
                tune_collector()  # GC settings for a long-lived heap: see feedback_stream._gc
                await self.serve()
            finally:
                await self.stop()

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class _LookupCounts:
    """The Elasticsearch lookup's counts, read through the service (made at start)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    @property
    def resolved(self) -> int:
        lookup = self._service.orphan_lookup
        return 0 if lookup is None else lookup.resolved

    @property
    def unresolved(self) -> Counter[str]:
        lookup = self._service.orphan_lookup
        return Counter() if lookup is None else lookup.unresolved


class _StateCommitter:
    """Offsets committed with the state topic's transactions (an ``OffsetCommitter``).

    The outcome sink is flushed first, under the batch lock, so a committed
    offset never covers an outcome Elasticsearch has not got (it may get one
    twice, by id); the transactions run on while the next batches are applied.
    """

    def __init__(self, service: Service, store: StateStore) -> None:
        self._service = service
        self._store = store
        self._unflushed_at_stop = False

    async def prepare(self, partitions: Collection[TopicPartition]) -> None:
        store = self._store
        try:
            await store.ensure_topic(sorted({tp.topic for tp in partitions}))
            if self._service.engine.route == "partition":
                for tp in partitions:
                    await store.prepare((tp.topic, tp.partition))
            else:
                await store.prepare(ALL_PARTITIONS)
        except Exception as exc:
            self._service._fail(exc)
            raise

    async def stage(self, offsets: Mapping[TopicPartition, int]) -> Awaitable[bool]:
        sink = self._service._sink
        if sink is not None and not await self._flushed(sink):
            return _nothing_committed()
        return self._store.write(self._store.stage(offsets))

    async def _flushed(self, sink: OutcomeSink) -> bool:
        """Flush the outcome sink: however long the cluster takes, until a stop.

        Consumption waits meanwhile (a committed offset must not cover an
        outcome the cluster has not acknowledged). Once a stop is asked for,
        the flush gets ``state_commit_timeout_s`` more; past that the commit is
        left out (False): the records after the last commit are read again at
        the next start and their documents written again under the same ids,
        so a stop while the cluster is down ends within the grace period,
        losing nothing.
        """
        if self._unflushed_at_stop:
            return False
        service = self._service
        flush = asyncio.ensure_future(sink.flush())
        stop = asyncio.ensure_future(service._stop_requested.wait())
        try:
            await asyncio.wait((flush, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not flush.done():
            limit = service.settings.state_commit_timeout_s
            try:
                await asyncio.wait_for(flush, limit)
            except TimeoutError:
                self._unflushed_at_stop = True
                _log.error(
                    "outcome sink: outcomes not written within %s s (state_commit_timeout_s) "
                    "of the stop; the last commit is left out: its records are read again "
                    "at the next start",
                    limit,
                )
                return False
        flush.result()
        return True

    def prestage(self) -> None:
        self._store.prestage()

    @property
    def dirty(self) -> bool:
        return self._store.dirty


async def _nothing_committed() -> bool:
    """A commit left out: its offsets are offered again (with the next one, if any)."""
    return False


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


def _accuracy(counts: Counts) -> float | None:
    return counts.correct / counts.known if counts.known else None


def _labels(key: ModelKey) -> dict[str, str]:
    return {
        "namespace": key.namespace,
        "deployment": key.deployment,
        "predictor": key.predictor,
        "model": key.model,
    }


def _current(window: str, m: WindowMetrics) -> dict[str, Any]:
    averages = []
    total_support = sum(c.support for c in m.per_class.values())
    for name, prf in (("macro", m.macro), ("micro", m.micro), ("weighted", m.weighted)):
        if prf is not None:
            averages.append(
                {
                    "average": name,
                    "precision": prf[0],
                    "recall": prf[1],
                    "f1": prf[2],
                    "support": total_support,
                }
            )
    return {
        "window": window,
        "outcomes": m.outcomes,
        "known": m.known,
        "correct": m.correct,
        "accuracy": m.accuracy,
        "accuracy_ci": list(m.accuracy_ci95) if m.accuracy_ci95 is not None else None,
        "reward_count": m.reward_count,
        "reward_mean": m.reward_mean,
        "classes": [
            {
                "class": label,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
                "support": c.support,
            }
            for label, c in m.per_class.items()
        ],
        "averages": averages,
        **m.quality.to_dict(),
    }


# -- the command line ---------------------------------------------------------


def configure_logging(level: str) -> None:
    """One line per record on stderr, as a container's log collector wants it."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_rate_limit()  # a broker outage or a flood of refusals: a few lines and a count


def load_settings(args: argparse.Namespace, command: str, **overrides: Any) -> Settings | None:
    """Settings from flags and environment, or ``None`` after printing a usage error.

    Each problem names the flag and the variable (``--ttl-s /
    FEEDBACK_STREAM_TTL_S: ...``), after the command's usage line, as
    argparse prints its own errors; the caller exits 2 before anything starts.
    """
    try:
        return settings_from_args(args, **overrides)
    except ValidationError as exc:
        usage: Callable[[], str] | None = getattr(args, "format_usage", None)
        if usage is not None:
            print(usage(), end="", file=sys.stderr)
        for line in usage_errors(exc):
            print(f"feedback-stream {command}: error: {line}", file=sys.stderr)
        return None
    except ValueError as exc:  # a secret file that cannot be read names its flag or variable
        usage = getattr(args, "format_usage", None)
        if usage is not None:
            print(usage(), end="", file=sys.stderr)
        print(f"feedback-stream {command}: error: {exc}", file=sys.stderr)
        return None


def _run_command(args: argparse.Namespace) -> int:
    settings = load_settings(args, "run")
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(Service(settings).run())
    except Exception as exc:
        _log.error("feedback-stream run: %s", exc)
        return 1
    return 0


def add_run_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``feedback-stream run``: the service; every setting is a flag and a variable."""
    parser = subparsers.add_parser(
        "run",
        usage="%(prog)s [options]",
        help="run the streaming processor (Kafka and/or HTTP CloudEvents in, /metrics out)",
        description=(
            "Consume Seldon / KServe request, response and feedback CloudEvents from Kafka "
            "and/or HTTP, join them by puid and serve sliding-window metrics on /metrics, "
            "/api/v1 and a live page. Flags override FEEDBACK_STREAM_* variables."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(handler=_run_command, format_usage=parser.format_usage)
