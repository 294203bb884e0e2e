"""Load the request logger's history from Elasticsearch into the core at start.

The reader opens a point in time over the indices matching the pattern and
pages through it with ``search_after`` (a scroll on servers without point in
time + ``_shard_doc``: Elasticsearch before 7.12, OpenSearch; see
:mod:`feedback_stream.es.server`), in ``@timestamp`` order (the time of
a document's last write, so about the order the stream had), fetching only
the fields the converter reads, and asking for the next page while it
converts the current one. Each document becomes up to three events
(:func:`document_events`), fed to the same ``process`` callable as live
events, so windows and counters hold the history as if it had streamed.

Bounds (``since`` / ``until``) are exact for outcomes, although a pair's
parts can live in different documents (a batch's items and its feedback
document; deployment-wide feedback in another index). A document holding a
response and a feedback is one pair: all its parts go by the pair's basis
time, in [since, until). The parts of a partial document go by their own
time, the range widened by the join TTL on the partner's side:

=============  ======================================  =====================================
time basis     requests and responses loaded           feedback loaded
=============  ======================================  =====================================
``feedback``   request time in [since - TTL, until)    feedback time in [since, until)
``request``    request time in [since, until)          feedback time in [since, until + TTL)
=============  ======================================  =====================================

A feedback joins a response only within the join TTL, so these ranges
hold every part of every outcome whose basis time is in the bounds and
nothing that could make another outcome. Elasticsearch pre-filters
documents on the union of those ranges over their date fields.

Progress (documents, docs/s, ETA) is logged every ``progress_interval_s``
and readable at any time from :attr:`HistoryBootstrap.progress`, which the
service uses for ``/readyz`` and ``/api``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch

from feedback_stream.decode import DecodeError
from feedback_stream.es._client import as_search_client
from feedback_stream.es._documents import (
    SOURCE_FIELDS,
    TIME_FIELDS,
    DocumentEvents,
    document_events,
)
from feedback_stream.es.client import SearchClient
from feedback_stream.es.errors import EsUnsupportedServerError, translate
from feedback_stream.es.overlap import HistoryOverlap
from feedback_stream.es.server import Family, Paging
from feedback_stream.es.settings import HistorySettings
from feedback_stream.events import Event, EventKind, SourcePosition
from feedback_stream.outcomes import TimeBasis

__all__ = ["HistoryBootstrap", "HistoryProgress"]

log = logging.getLogger(__name__)

_REPEATS_REMEMBERED = 65_536
_YIELD_EVERY = 250
# Documents in the order of their last write (@timestamp), as the stream had
# them: count windows then keep the newest outcomes, and a puid's parts that
# live in several documents arrive within the join TTL of each other.
# _shard_doc breaks ties cheaply and makes the order total for search_after
# over a point in time; a scroll needs no tiebreaker (_doc is its cheapest).
_BY_TIME: dict[str, Any] = {
    "@timestamp": {"order": "asc", "unmapped_type": "date", "missing": "_first"}
}
_TIEBREAK: dict[tuple[Family, Paging], Any] = {
    (Family.ELASTICSEARCH, Paging.PIT): "_shard_doc",
    (Family.ELASTICSEARCH, Paging.SCROLL): "_doc",
    (Family.OPENSEARCH, Paging.SCROLL): "_doc",
}
_HITS = "hits.total,hits.hits._index,hits.hits._id,hits.hits._source,hits.hits.sort"
_FILTER_PATH = {Paging.PIT: f"pit_id,{_HITS}", Paging.SCROLL: f"_scroll_id,{_HITS}"}


@dataclass
class HistoryProgress:
    """How far the bootstrap is; read by ``/readyz``, ``/api`` and the progress log.

    ``documents`` counts hits read, ``events`` the events handed to the
    core, ``out_of_bounds`` the parts left out by ``since`` / ``until``,
    ``repeats`` the parts of batch item documents already given by an
    earlier item, ``invalid`` the parts that gave a decode error (by code).
    ``state`` is ``pending``, ``running``, ``done``, ``skipped`` (not
    required and Elasticsearch failed) or ``failed``.
    """

    index_pattern: str
    state: str = "pending"
    total: int | None = None
    documents: int = 0
    events: int = 0
    out_of_bounds: int = 0
    repeats: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def ready(self) -> bool:
        """Whether the service may report ready: the history is in, or knowingly absent."""
        return self.state in ("done", "skipped")

    def elapsed_s(self, now: float) -> float:
        """Seconds spent reading, up to ``now`` or to the end (monotonic clock)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else now
        return max(end - self.started_at, 0.0)

    def docs_per_s(self, now: float) -> float:
        """Documents read per second so far."""
        elapsed = self.elapsed_s(now)
        return self.documents / elapsed if elapsed > 0 else 0.0

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the current rate; None while unknown."""
        rate = self.docs_per_s(now)
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.documents, 0) / rate

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready view for ``/api``."""
        return {
            "index_pattern": self.index_pattern,
            "state": self.state,
            "total": self.total,
            "documents": self.documents,
            "events": self.events,
            "out_of_bounds": self.out_of_bounds,
            "repeats": self.repeats,
            "invalid": dict(self.invalid),
            "error": self.error,
            "elapsed_s": round(self.elapsed_s(now), 3),
            "docs_per_s": round(self.docs_per_s(now), 1),
            "eta_s": None if (eta := self.eta_s(now)) is None else round(eta, 1),
        }


Process = Callable[[Event | DecodeError], object]
_Page = Coroutine[Any, Any, dict[str, Any]]


class HistoryBootstrap:
    """Reads the history once and feeds it to the core.

    Args:
        client: the server's client (:func:`connect`); a bare
            ``AsyncElasticsearch`` is taken for Elasticsearch 9.
        settings: the history settings.
        hosts: the hosts, for messages.
        time_basis: the core's time basis; it decides what the bounds bound.
        join_ttl_s: the core's join TTL, which widens the bounds for the
            other part of a pair (see the module docstring).
        overlap: where to remember the loaded parts, so that the live path
            can drop their repeats (:class:`HistoryOverlap`); optional.
        clock: monotonic seconds, for progress only.
        paging: force a scroll (or a point in time) instead of what the
            server is best at; for comparisons (the benchmark).
    """

    def __init__(
        self,
        client: SearchClient | AsyncElasticsearch,
        settings: HistorySettings,
        *,
        hosts: str,
        time_basis: TimeBasis | str = TimeBasis.FEEDBACK,
        join_ttl_s: float = 3600.0,
        overlap: HistoryOverlap | None = None,
        clock: Callable[[], float] = time.monotonic,
        paging: Paging | None = None,
    ) -> None:
        self._client = as_search_client(client, hosts)
        self._settings = settings
        self._hosts = hosts
        self._paging = paging or self._client.paging
        tiebreak = _TIEBREAK.get((self._client.server.family, self._paging))
        if tiebreak is None:
            raise EsUnsupportedServerError(
                f"{self._client.server} has no _shard_doc tiebreaker for search_after "
                "over a point in time; read it with a scroll"
            )
        self._sort = [_BY_TIME, tiebreak]
        self._basis = TimeBasis(time_basis)
        self._ttl = float(join_ttl_s)
        self._overlap = overlap
        self._clock = clock
        self.progress = HistoryProgress(settings.index_pattern)
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()

    async def run(self, process: Process) -> HistoryProgress:
        """Read every document in the bounds and hand each event or error to ``process``.

        Returns the final progress. When Elasticsearch fails (unreachable,
        credentials, TLS, a rejected query), raises if the history is
        required, else logs the reason, marks the progress ``skipped`` and
        returns, so the service serves without (or with a partial) history.

        Raises:
            ElasticsearchEdgeError: the failure, when ``required`` is set.
        """
        progress = self.progress
        progress.state = "running"
        progress.started_at = self._clock()
        log.info(
            "history: reading %s from %s, %s by %s (time basis %s, since %s, until %s)",
            self._settings.index_pattern,
            self._hosts,
            self._client.server,
            "point in time" if self._paging is Paging.PIT else "scroll",
            self._basis.value,
            self._settings.since or "-",
            self._settings.until or "-",
        )
        try:
            await self._read(process)
        except Exception as exc:
            error = translate(exc, self._hosts, "reading the request logger's history")
            progress.finished_at = self._clock()
            progress.error = str(error)
            if self._settings.required:
                progress.state = "failed"
                log.error("history: %s", error)
                raise error from exc
            progress.state = "skipped"
            log.warning(
                "history: %s; serving without it (%d of %s documents were loaded)",
                error,
                progress.documents,
                progress.total if progress.total is not None else "?",
            )
            return progress
        progress.finished_at = self._clock()
        progress.state = "done"
        self._seen.clear()
        if progress.documents == 0:
            log.warning(
                "history: no documents in %s (time bounds included); check --history-index-pattern",
                self._settings.index_pattern,
            )
        now = self._clock()
        log.info(
            "history: done, %d documents, %d events in %.1fs (%.0f docs/s); "
            "%d out of bounds, %d batch repeats, %d invalid%s",
            progress.documents,
            progress.events,
            progress.elapsed_s(now),
            progress.docs_per_s(now),
            progress.out_of_bounds,
            progress.repeats,
            sum(progress.invalid.values()),
            f" {dict(progress.invalid)}" if progress.invalid else "",
        )
        return progress

    # -- reading --------------------------------------------------------------------

    async def _read(self, process: Process) -> None:
        if self._paging is Paging.PIT:
            await self._read_pit(process)
        else:
            await self._read_scroll(process)

    async def _read_pit(self, process: Process) -> None:
        settings = self._settings
        pit_id = await self._client.open_pit(settings.index_pattern, settings.keep_alive)
        try:

            def next_page(page: dict[str, Any], hits: list[dict[str, Any]]) -> _Page:
                nonlocal pit_id
                pit_id = page.get("pit_id", pit_id)
                return self._pit_page(pit_id, hits[-1]["sort"])

            await self._walk(await self._pit_page(pit_id, None), next_page, process)
        finally:
            try:
                await self._client.close_pit(pit_id)
            except Exception as exc:  # the reader's own error matters more
                log.debug("history: closing the point in time failed: %s", exc)

    async def _read_scroll(self, process: Process) -> None:
        settings = self._settings
        first = await self._client.search(
            settings.index_pattern,
            self._body(first=True),
            {
                "scroll": settings.keep_alive,
                "filter_path": _FILTER_PATH[Paging.SCROLL],
                "ignore_unavailable": "true",
            },
        )
        scroll_id: str | None = first.get("_scroll_id")
        try:

            def next_page(page: dict[str, Any], hits: list[dict[str, Any]]) -> _Page:
                nonlocal scroll_id
                scroll_id = page.get("_scroll_id", scroll_id)
                assert scroll_id is not None
                return self._client.scroll(
                    scroll_id, settings.keep_alive, _FILTER_PATH[Paging.SCROLL]
                )

            await self._walk(first, next_page, process)
        finally:
            if scroll_id is not None:
                try:
                    await self._client.clear_scroll(scroll_id)
                except Exception as exc:  # the reader's own error matters more
                    log.debug("history: clearing the scroll failed: %s", exc)

    async def _walk(
        self,
        page: dict[str, Any],
        next_page: Callable[[dict[str, Any], list[dict[str, Any]]], _Page],
        process: Process,
    ) -> None:
        """Convert page after page, asking for the next while this one is converted."""
        settings = self._settings
        next_log = self._clock() + settings.progress_interval_s
        self.progress.total = _total(page)
        while True:
            hits = page.get("hits", {}).get("hits", [])
            if not hits:
                break
            following = (
                asyncio.ensure_future(next_page(page, hits))
                if len(hits) == settings.page_size
                else None
            )
            try:
                for start in range(0, len(hits), _YIELD_EVERY):
                    # Let the next page's request go out, and HTTP probes be answered.
                    await asyncio.sleep(0)
                    for hit in hits[start : start + _YIELD_EVERY]:
                        self._convert(hit, process)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            if self._clock() >= next_log:
                self._log_progress()
                next_log = self._clock() + settings.progress_interval_s
            if following is None:
                break
            page = await following

    async def _pit_page(self, pit_id: str, search_after: list[Any] | None) -> dict[str, Any]:
        """One page of hits after ``search_after`` (the first page for None)."""
        body = self._body(first=search_after is None)
        body["pit"] = {"id": pit_id, "keep_alive": self._settings.keep_alive}
        if search_after is not None:
            body["search_after"] = search_after
        return await self._client.search(None, body, {"filter_path": _FILTER_PATH[Paging.PIT]})

    def _body(self, *, first: bool) -> dict[str, Any]:
        return {
            "size": self._settings.page_size,
            "sort": self._sort,
            "_source": {"includes": list(SOURCE_FIELDS)},
            "track_total_hits": first,
            "query": self._query(),
        }

    def _convert(self, hit: dict[str, Any], process: Process) -> None:
        progress = self.progress
        position = SourcePosition(str(hit.get("_index", "")), 0, progress.documents)
        progress.documents += 1
        doc = document_events(hit, position, kserve_component=self._settings.kserve_component)
        for error in doc.errors:
            progress.invalid[error.code] += 1
            process(error)
        for event in doc.events:
            if not self._in_bounds(event, doc):
                progress.out_of_bounds += 1
                continue
            if doc.item is not None:
                if event.identity in self._seen:
                    progress.repeats += 1
                    continue
                self._seen[event.identity] = None
                if len(self._seen) > _REPEATS_REMEMBERED:
                    self._seen.popitem(last=False)
            if self._overlap is not None:
                self._overlap.record(event)
            progress.events += 1
            process(event)

    def _in_bounds(self, event: Event, doc: DocumentEvents) -> bool:
        """Whether one part belongs to the bounded history (module docstring table).

        A document holding both a response and a feedback is one pair:
        all its parts go by the pair's basis time. A partial document (a
        batch item, a batch's feedback, a prediction without feedback) has
        parts whose partner may live elsewhere: they go by their own time,
        in the range widened by the TTL on the partner's side.
        """
        since = self._settings.since
        until = self._settings.until
        if since is None and until is None:
            return True
        low = since.timestamp() if since is not None else float("-inf")
        high = until.timestamp() if until is not None else float("inf")
        if doc.response_time is not None and doc.feedback_time is not None:
            basis = doc.basis_time(self._basis)
            return basis is not None and low <= basis < high
        if event.kind is EventKind.FEEDBACK:
            if self._basis is TimeBasis.REQUEST:
                high += self._ttl
            return low <= event.time < high
        when = doc.request_time if doc.request_time is not None else event.time
        if self._basis is TimeBasis.FEEDBACK:
            low -= self._ttl
        return low <= when < high

    def _query(self) -> dict[str, Any]:
        """A document filter that keeps a superset of the parts :meth:`_in_bounds` keeps."""
        since = self._settings.since
        until = self._settings.until
        if since is None and until is None:
            return {"match_all": {}}
        # Every kept part's time is in [since - TTL, until) under the feedback
        # basis and in [since, until + TTL) under the request basis.
        early = self._ttl if self._basis is TimeBasis.FEEDBACK else 0.0
        late = self._ttl if self._basis is TimeBasis.REQUEST else 0.0
        bounds: dict[str, str] = {}
        if since is not None:
            bounds["gte"] = _iso(since.timestamp() - early)
        if until is not None:
            bounds["lt"] = _iso(until.timestamp() + late)
        return {
            "bool": {
                "should": [{"range": {name: dict(bounds)}} for name in TIME_FIELDS],
                "minimum_should_match": 1,
            }
        }

    def _log_progress(self) -> None:
        progress = self.progress
        now = self._clock()
        eta = progress.eta_s(now)
        total = progress.total
        share = f" ({100.0 * progress.documents / total:.0f}%)" if total else ""
        log.info(
            "history: %d / %s documents%s, %.0f docs/s, ETA %s",
            progress.documents,
            total if total is not None else "?",
            share,
            progress.docs_per_s(now),
            f"{eta:.0f}s" if eta is not None else "?",
        )


def _total(page: dict[str, Any]) -> int | None:
    """``hits.total.value`` (an object since Elasticsearch 7), when the page has it."""
    total = page.get("hits", {}).get("total")
    if isinstance(total, dict):
        total = total.get("value")
    return int(total) if isinstance(total, int) else None


def _iso(seconds: float) -> str:
    """An Elasticsearch date (``strict_date_optional_time``) with milliseconds."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
