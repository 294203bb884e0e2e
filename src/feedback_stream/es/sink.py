"""Write joined outcomes to Elasticsearch, one document per outcome row.

The core calls :meth:`OutcomeSink.apply` / :meth:`OutcomeSink.retract` for
every outcome it applies or takes back, and the service may call
:meth:`OutcomeSink.add_response` for every response, so the index also
holds the predictions that got no feedback (the "feedback vs no feedback"
split of Seldon's feedback-metrics example). These calls only touch an
in-memory buffer; a background task sends it with bulk requests.

Documents have idempotent ids (puid, row, predictor, model), so a replay, a
restart or the history bootstrap rewrites the same documents instead of
adding copies, and an amendment overwrites the outcome it amends. The
buffer keeps one pending operation per document: the newest wins, except
that a response never downgrades an outcome (and is written with
``create``, which leaves an existing outcome alone).

When Elasticsearch is down (no answer, 429, 5xx, or 401 while the
credentials are put right) the buffer holds up to ``sink_buffer_max``
documents and the sender retries with exponential backoff; past the bound
new documents are dropped and counted, never blocking the processor. A
refusal that cannot succeed by retrying (any other 4xx, for the whole bulk
or for one document) is logged and counted as failed, and the sender moves
on. An index template that the server refuses (403: the user lacks
``manage_index_templates``) is skipped: the documents go in with dynamic
mapping.

:attr:`OutcomeSink.stats` is read by ``/api``, ``/readyz``, the page and
:class:`SinkCollector` (the ``feedback_stream_es_sink_*`` metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from elasticsearch import AsyncElasticsearch
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedback_stream.es._client import as_search_client
from feedback_stream.es.client import SearchClient
from feedback_stream.es.errors import (
    ElasticsearchEdgeError,
    EsAuthenticationError,
    EsAuthorizationError,
    EsRequestError,
    translate,
)
from feedback_stream.es.settings import OUTCOME_INDEX_FIELDS, ElasticsearchSettings
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.join import EventStatus, JoinResult
from feedback_stream.outcomes import Outcome

__all__ = [
    "OUTCOME_MAPPING",
    "OutcomeSink",
    "SinkCollector",
    "SinkStats",
    "outcome_document",
    "outcome_id",
    "outcome_index",
    "response_documents",
]

log = logging.getLogger(__name__)

OUTCOME_MAPPING: Final[dict[str, Any]] = {
    "properties": {
        "@timestamp": {"type": "date"},
        "namespace": {"type": "keyword"},
        "deployment": {"type": "keyword"},
        "predictor": {"type": "keyword"},
        "model": {"type": "keyword"},
        "model_key": {"type": "keyword"},
        "puid": {"type": "keyword"},
        "row": {"type": "integer"},
        "predicted": {"type": "keyword"},
        "truth": {"type": "keyword"},
        "correct": {"type": "boolean"},
        "result": {"type": "keyword"},
        "reward": {"type": "double"},
        "has_feedback": {"type": "boolean"},
        "request_time": {"type": "date"},
        "response_time": {"type": "date"},
        "feedback_time": {"type": "date"},
        "label_delay_s": {"type": "double"},
    }
}
"""The outcome index mapping: keywords for labels (terms aggregations), dates, numbers."""

_TEMPLATE_NAME: Final = "feedback-stream-outcomes"
_TEMPLATE_PRIORITY: Final = 210
_BAD_INDEX_CHARS = re.compile(r'[\\/*?"<>| ,#:]')


class _Op(StrEnum):
    INDEX = "index"
    CREATE = "create"
    DELETE = "delete"


@dataclass(slots=True)
class SinkStats:
    """What the sink did, for ``/api`` and the sink's own metrics.

    ``written`` / ``deleted`` count documents Elasticsearch accepted,
    ``dropped`` the ones refused because the buffer was full, ``rejected``
    the ones Elasticsearch refused for good (a mapping conflict, a 403 on
    the index, a request it cannot parse), ``failures`` the bulk requests
    that failed and were retried; ``pending`` is what is buffered or in
    flight. ``available`` is False from a failed request to the next good
    one; ``last_success`` is the wall-clock time (epoch seconds) of the last
    bulk the server accepted; ``template`` says whether the outcome index
    template is ``installed``, ``refused`` (dynamic mapping) or ``pending``.
    """

    written: int = 0
    deleted: int = 0
    dropped: int = 0
    rejected: int = 0
    failures: int = 0
    pending: int = 0
    available: bool = True
    last_error: str | None = None
    last_success: float | None = None
    template: str = "pending"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "written": self.written,
            "deleted": self.deleted,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "failures": self.failures,
            "pending": self.pending,
            "available": self.available,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "template": self.template,
        }


def outcome_index(template: str, key: ModelKey) -> str:
    """The index of a model's outcomes: the template filled in, made a valid index name.

    Empty labels read ``unknown`` (as the request logger spells a missing
    attribute); names are lower-cased and characters Elasticsearch refuses
    in index names become ``_``.
    """
    values = {
        name: _BAD_INDEX_CHARS.sub("_", (getattr(key, name) or "unknown").lower())
        for name in OUTCOME_INDEX_FIELDS
    }
    name = template.format(**values).lower().lstrip("-_+")
    return name[:255] or "feedback-outcomes"


def outcome_id(key: ModelKey, puid: str, row: int) -> str:
    """The document id of one row: the same for every write of that row."""
    return f"{puid}:{row}:{key.predictor}:{key.model}"


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="microseconds")


def _labels(key: ModelKey) -> dict[str, str]:
    return {
        "namespace": key.namespace,
        "deployment": key.deployment,
        "predictor": key.predictor,
        "model": key.model,
        "model_key": f"{key.namespace}/{key.deployment}/{key.predictor}/{key.model}",
    }


def outcome_document(outcome: Outcome) -> dict[str, Any]:
    """The outcome index document of one outcome row.

    ``reward`` is on row 0 only (as in the core), so a ``sum`` / ``value_count``
    of it is Seldon's feedback-metrics example's reward sum / count per
    (response, feedback) pair.
    """
    doc: dict[str, Any] = {"@timestamp": _iso(outcome.time)}
    doc.update(_labels(outcome.key))
    doc.update(
        {
            "puid": outcome.puid,
            "row": outcome.row,
            "predicted": outcome.predicted,
            "truth": outcome.truth,
            "correct": outcome.correct,
            "result": outcome.result.value,
            "reward": outcome.reward,
            "has_feedback": True,
            "request_time": _iso(outcome.request_time),
            "response_time": _iso(outcome.response_time),
            "feedback_time": _iso(outcome.feedback_time),
            "label_delay_s": outcome.feedback_time - outcome.response_time,
        }
    )
    return doc


def response_documents(event: Event) -> list[tuple[int, dict[str, Any]]]:
    """(row, document) of each row of a response that has no feedback (yet)."""
    if event.kind is not EventKind.RESPONSE or event.classes is None:
        return []
    docs = []
    for row, predicted in enumerate(event.classes):
        doc: dict[str, Any] = {"@timestamp": _iso(event.time)}
        doc.update(_labels(event.key))
        doc.update(
            {
                "puid": event.puid,
                "row": row,
                "predicted": predicted,
                "truth": None,
                "correct": None,
                "result": "no_feedback",
                "reward": None,
                "has_feedback": False,
                "request_time": None,
                "response_time": _iso(event.time),
                "feedback_time": None,
                "label_delay_s": None,
            }
        )
        docs.append((row, doc))
    return docs


@dataclass(slots=True)
class _Pending:
    op: _Op
    doc: dict[str, Any] | None


_DocKey = tuple[str, str]  # (index, id)


class OutcomeSink:
    """Buffers outcome documents and writes them with bulk requests.

    Use as ``async with OutcomeSink(client, settings) as sink:`` or call
    :meth:`start` / :meth:`stop`. ``apply``, ``retract`` and
    ``add_response`` are synchronous and never block. Wire it to the core
    with ``engine.add_outcome_listener(sink.on_outcomes)`` and
    ``engine.add_result_listener(sink.on_result)``.

    Args:
        client: the server's client (:func:`connect`); a bare
            ``AsyncElasticsearch`` is taken for Elasticsearch 9. ``None``
            while the cluster has not answered yet: documents are buffered
            (and :meth:`flush` waits) until :meth:`connect` gives one.
        settings: sink index template, bulk size, buffer bound, backoff.
        clock: wall-clock seconds, for ``stats.last_success``.
    """

    def __init__(
        self,
        client: SearchClient | AsyncElasticsearch | None,
        settings: ElasticsearchSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = None if client is None else as_search_client(client, settings.hosts_text)
        self._clock = clock
        self._settings = settings
        self._buffer: OrderedDict[_DocKey, _Pending] = OrderedDict()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._template_ready = False
        self._delay = settings.sink_retry_initial_s
        self._abandoned = False
        self.stats = SinkStats()
        if client is None:
            self.stats.available = False
            self.stats.last_error = "waiting for the cluster to answer"

    def abandon(self, reason: str) -> None:
        """Give up for good (the cluster refused the sink: credentials, version).

        What is buffered and every later document is counted as dropped, and
        :meth:`flush` no longer waits, so the processor goes on without it.
        """
        self._abandoned = True
        self.stats.dropped += len(self._buffer)
        self._buffer.clear()
        self.stats.pending = self._in_flight
        self.stats.available = False
        self.stats.last_error = reason
        self._wake.set()

    def connect(self, client: SearchClient | AsyncElasticsearch) -> None:
        """Give the sink its client once the cluster answers; what is buffered is sent."""
        self._client = as_search_client(client, self._settings.hosts_text)
        self._delay = self._settings.sink_retry_initial_s
        self._wake.set()

    # -- the processor's side --------------------------------------------------------

    def apply(self, outcome: Outcome) -> None:
        """Write (or overwrite) the document of an applied outcome."""
        key = (outcome_index(self._settings.sink_index, outcome.key), _outcome_id(outcome))
        self._put(key, _Pending(_Op.INDEX, outcome_document(outcome)))

    def retract(self, outcome: Outcome) -> None:
        """Delete the document of a retracted outcome, unless it is applied again first."""
        key = (outcome_index(self._settings.sink_index, outcome.key), _outcome_id(outcome))
        self._put(key, _Pending(_Op.DELETE, None))

    def add_response(self, event: Event) -> None:
        """Record the rows of a response as "no feedback yet"; no-op for other events."""
        index = outcome_index(self._settings.sink_index, event.key)
        for row, doc in response_documents(event):
            key = (index, outcome_id(event.key, event.puid, row))
            pending = self._buffer.get(key)
            if pending is not None and pending.op is not _Op.CREATE:
                continue  # an outcome (or its retraction) is newer news than the response
            self._put(key, _Pending(_Op.CREATE, doc))

    def on_outcomes(self, retracted: Sequence[Outcome], applied: Sequence[Outcome]) -> None:
        """The engine's outcome listener (``Engine.add_outcome_listener``)."""
        for outcome in retracted:
            self.retract(outcome)
        for outcome in applied:
            self.apply(outcome)

    def on_result(self, event: Event, result: JoinResult) -> None:
        """The engine's result listener: records first-seen responses as "no feedback"."""
        if (
            self._settings.sink_responses
            and event.kind is EventKind.RESPONSE
            and result.status is EventStatus.ACCEPTED
        ):
            self.add_response(event)

    def _put(self, key: _DocKey, pending: _Pending) -> None:
        if self._abandoned:
            self.stats.dropped += 1
            return
        if key in self._buffer:
            self._buffer[key] = pending
        elif len(self._buffer) + self._in_flight >= self._settings.sink_buffer_max:
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
                log.warning(
                    "outcome sink: buffer full (%d documents), %d dropped so far",
                    self._settings.sink_buffer_max,
                    self.stats.dropped,
                )
            return
        else:
            self._buffer[key] = pending
        self.stats.pending = len(self._buffer) + self._in_flight
        if len(self._buffer) >= self._settings.sink_bulk_size:
            self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> OutcomeSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the sender task; Elasticsearch need not be up."""
        if self._task is not None:
            raise RuntimeError("outcome sink already started")
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outcome-sink")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is buffered (for up to ``timeout_s``), then stop. Safe to call twice."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        if self._buffer:
            log.warning("outcome sink: stopped with %d documents unwritten", len(self._buffer))

    async def flush(self) -> None:
        """Write everything applied so far, retrying with backoff until it is written.

        That includes a bulk the sender has in flight: its documents are no
        longer buffered, so it is waited for (and, if it fails, its
        documents, put back, are sent again) before ``flush`` returns. The
        state commit calls this first, so that a committed input offset
        never covers a document Elasticsearch has not acknowledged. It does
        not return while Elasticsearch is down; :meth:`stop` gives up after
        a timeout.
        """
        while True:
            async with self._sending:  # a bulk in flight ends (or is put back) first
                if not self._buffer:
                    return
                sent = await self._send_batch_locked()
            if not sent:
                await asyncio.sleep(self._next_delay())

    # -- the sender --------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self._settings.sink_flush_interval_s
        while True:
            if not self._buffer:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                continue
            if len(self._buffer) < self._settings.sink_bulk_size and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
            if await self._send_batch():
                continue
            await asyncio.sleep(self._next_delay())

    def _next_delay(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self._settings.sink_retry_max_s)
        return delay

    async def _send_batch(self) -> bool:
        """Send up to one bulk of pending operations; False when it must be retried."""
        async with self._sending:
            return await self._send_batch_locked()

    async def _send_batch_locked(self) -> bool:
        if self._client is None:
            return False  # no cluster yet: keep it all buffered
        if not self._template_ready and not await self._install_template():
            return False
        batch: list[tuple[_DocKey, _Pending]] = []
        while self._buffer and len(batch) < self._settings.sink_bulk_size:
            batch.append(self._buffer.popitem(last=False))
        if not batch:
            return True
        self._in_flight = len(batch)
        operations: list[dict[str, Any]] = []
        for (index, doc_id), pending in batch:
            operations.append({pending.op.value: {"_index": index, "_id": doc_id}})
            if pending.doc is not None:
                operations.append(pending.doc)
        try:
            body = await self._client.bulk(
                operations, filter_path="errors,items.*.status,items.*.error"
            )
        except asyncio.CancelledError:
            self._requeue(batch)  # stopped mid-request: count them as unwritten
            raise
        except Exception as exc:
            error = translate(exc, self._settings.hosts_text, "writing outcomes")
            if _hopeless(error):
                self._refused(error, len(batch))
                return True
            self._requeue(batch)
            self._failed(error)
            return False
        finally:
            self._in_flight = 0
            self.stats.pending = len(self._buffer)
        self.stats.last_success = self._clock()
        retry = self._account(batch, body)
        if retry:
            self._requeue(retry)
            self.stats.failures += 1
            self.stats.pending = len(self._buffer)
            return False
        self._recovered()
        return True

    def _account(
        self, batch: list[tuple[_DocKey, _Pending]], body: dict[str, Any]
    ) -> list[tuple[_DocKey, _Pending]]:
        """Count per-item results; return the items to retry (429 / 5xx)."""
        items = body.get("items") or []
        retry: list[tuple[_DocKey, _Pending]] = []
        for (key, pending), item in zip(batch, items, strict=False):
            result: dict[str, Any] = next(iter(item.values()), {})
            status = int(result.get("status", 0))
            if 200 <= status < 300:
                if pending.op is _Op.DELETE:
                    self.stats.deleted += 1
                else:
                    self.stats.written += 1
            elif (pending.op is _Op.DELETE and status == 404) or (
                pending.op is _Op.CREATE and status == 409
            ):
                continue  # nothing to delete / the outcome is already there
            elif status == 429 or status >= 500:
                retry.append((key, pending))
            else:
                self.stats.rejected += 1
                if self.stats.rejected == 1 or self.stats.rejected % 1000 == 0:
                    log.error(
                        "outcome sink: Elasticsearch refused %s/%s (HTTP %d): %s",
                        key[0],
                        key[1],
                        status,
                        result.get("error"),
                    )
        return retry

    def _requeue(self, batch: list[tuple[_DocKey, _Pending]]) -> None:
        """Put unsent operations back at the front, unless a newer one came meanwhile."""
        for key, pending in reversed(batch):
            if key in self._buffer:
                continue
            self._buffer[key] = pending
            self._buffer.move_to_end(key, last=False)

    def _refused(self, error: ElasticsearchEdgeError, documents: int) -> None:
        """A whole bulk refused for good: count its documents as rejected, say why."""
        self.stats.rejected += documents
        self.stats.failures += 1
        if self.stats.last_error != str(error):
            log.error(
                "outcome sink: %s; %d documents not written (retrying cannot help)",
                error,
                documents,
            )
        self.stats.last_error = str(error)

    def _failed(self, exc: Exception) -> None:
        error = translate(exc, self._settings.hosts_text, "writing outcomes")
        self.stats.failures += 1
        if self.stats.available or self.stats.last_error != str(error):
            log.warning(
                "outcome sink: %s; keeping %d documents and retrying", error, len(self._buffer)
            )
        self.stats.available = False
        self.stats.last_error = str(error)

    def _recovered(self) -> None:
        if not self.stats.available:
            log.info("outcome sink: Elasticsearch is back, writing again")
        self.stats.available = True
        self._delay = self._settings.sink_retry_initial_s

    async def _install_template(self) -> bool:
        """Install the index template of the outcome indices (once), so Kibana sees types.

        Composable (``_index_template``) where the server has it, legacy
        (``_template``) on Elasticsearch before 7.8. A template the server
        refuses for good (403: the user lacks ``manage_index_templates``;
        another template with the same patterns and priority) is logged and
        skipped: dynamic mapping still stores the documents.
        """
        client = self._client
        if client is None:
            return False
        pattern = re.sub(r"\{[^}]*\}", "*", self._settings.sink_index)
        pattern = re.sub(r"\*+(-\*+)*", "*", pattern).lower()
        try:
            await client.put_template(_TEMPLATE_NAME, pattern, OUTCOME_MAPPING, _TEMPLATE_PRIORITY)
        except Exception as exc:
            error = translate(exc, self._settings.hosts_text, "installing the outcome template")
            if not _hopeless(error):
                self._failed(exc)
                return False
            if isinstance(error, EsAuthorizationError):
                log.warning(
                    "outcome sink: %s; the user lacks the cluster privilege "
                    "manage_index_templates, so outcomes are written with dynamic mapping "
                    "(grant it, or install the template %r by hand, for typed fields)",
                    error,
                    _TEMPLATE_NAME,
                )
            else:
                log.warning("outcome sink: %s; writing with dynamic mapping", error)
            self.stats.template = "refused"
        else:
            self.stats.template = "installed"
        self._template_ready = True
        return True


def _hopeless(error: ElasticsearchEdgeError) -> bool:
    """Whether retrying cannot help: a 4xx other than 429, or a 403.

    A 401 is retried: credentials are put right without restarting the
    processor (a rotated password, a proxy), and nothing is lost meanwhile.
    """
    if isinstance(error, EsAuthenticationError):
        return False
    if isinstance(error, EsAuthorizationError):
        return True
    return isinstance(error, EsRequestError) and not error.retriable


class SinkCollector(Collector):
    """The ``feedback_stream_es_sink_*`` metrics, read from the sink at every scrape."""

    def __init__(self, sink: OutcomeSink) -> None:
        self._sink = sink

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        stats = self._sink.stats
        counters = (
            ("written", "Outcome documents the search server accepted.", stats.written),
            ("deleted", "Outcome documents deleted (retracted outcomes).", stats.deleted),
            (
                "failed",
                "Outcome documents the server refused for good (4xx other than 429).",
                stats.rejected,
            ),
            ("dropped", "Outcome documents dropped because the buffer was full.", stats.dropped),
            (
                "request_failures",
                "Bulk or template requests that failed (retried unless refused for good).",
                stats.failures,
            ),
        )
        for name, doc, value in counters:
            family = CounterMetricFamily(f"feedback_stream_es_sink_{name}", doc)
            family.add_metric([], value)
            yield family
        gauges = (
            ("buffered", "Outcome documents buffered or in flight.", stats.pending),
            ("up", "1 while the last request to the server succeeded.", int(stats.available)),
            (
                "template_installed",
                "1 once the outcome index template is installed (0: dynamic mapping).",
                int(stats.template == "installed"),
            ),
        )
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(f"feedback_stream_es_sink_{name}", doc)
            gauge.add_metric([], value)
            yield gauge
        last = GaugeMetricFamily(
            "feedback_stream_es_sink_last_success_timestamp_seconds",
            "Wall-clock time of the last bulk request the server accepted (0: none yet).",
        )
        last.add_metric([], stats.last_success or 0.0)
        yield last


def _outcome_id(outcome: Outcome) -> str:
    return outcome_id(outcome.key, outcome.puid, outcome.row)
