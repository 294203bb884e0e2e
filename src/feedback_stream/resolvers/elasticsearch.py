"""Orphan feedback resolved from the request logger's Elasticsearch indices, by puid.

Seldon's feedback metrics server looks the response of a feedback up in the
request logger's index when it has none: the document id is the puid (or
``<puid>-item-<n>`` for the rows of a batch) and its ``RequestId`` field the
puid. This resolver does the same for feedback no logged response answered
when it was read: it searches the indices of the history pattern for the
puid, reads each hit as the history bootstrap does
(:func:`feedback_stream.es.document_events`) and returns the responses
found, which the service processes before the feedback (their identities
are the history ones, so a response also read live or from the history
counts once).

Lookups are cached per puid (an LRU of ``cache_size`` puids, found or not)
and at most ``concurrency`` run at once; a failed lookup (timeout,
unreachable, refused) is counted by reason and not cached, and the feedback
goes on without a response.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from typing import Any

from feedback_stream.es._documents import SOURCE_FIELDS, document_events
from feedback_stream.es.client import SearchClient
from feedback_stream.events import Event, EventKind, SourcePosition

__all__ = ["ElasticsearchResolver"]

_log = logging.getLogger(__name__)


class ElasticsearchResolver:
    """Finds the logged responses of a puid in the request logger's indices.

    Args:
        client: the service's search client (Elasticsearch 7-9 or OpenSearch).
        index_pattern: the request logger's indices (the history pattern).
        kserve_component: the ``model`` label of KServe documents.
        cache_size: puids whose answer is remembered, at most.
        concurrency: lookups in flight at most.
    """

    def __init__(
        self,
        client: SearchClient,
        index_pattern: str,
        *,
        kserve_component: str = "predictor",
        cache_size: int = 10_000,
        concurrency: int = 8,
    ) -> None:
        if cache_size < 1 or concurrency < 1:
            raise ValueError("cache_size and concurrency must be at least 1")
        self._client = client
        self._index = index_pattern
        self._component = kserve_component
        self._cache: OrderedDict[str, tuple[Event, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._slots = asyncio.Semaphore(concurrency)
        self.lookups = 0
        """Searches sent (cache misses)."""
        self.resolved = 0
        """Feedback for which a response was found."""
        self.unresolved: Counter[str] = Counter()
        """Feedback for which none was, by reason (``not_found``, ``error``)."""

    @property
    def cached(self) -> int:
        return len(self._cache)

    async def responses(self, puid: str) -> tuple[Event, ...] | None:
        """The responses logged for ``puid``; ``None`` when the lookup failed."""
        found = self._cache.get(puid)
        if found is not None:
            self._cache.move_to_end(puid)
            return found
        try:
            async with self._slots:
                self.lookups += 1
                reply = await self._client.search(
                    self._index,
                    {
                        "query": {
                            "bool": {
                                "should": [
                                    {"ids": {"values": [puid]}},
                                    {"term": {"RequestId": puid}},
                                    {"term": {"RequestId.keyword": puid}},
                                ]
                            }
                        },
                        "size": 100,
                        "_source": {"includes": list(SOURCE_FIELDS)},
                    },
                    {"ignore_unavailable": "true", "allow_no_indices": "true"},
                )
        except Exception as exc:  # any failure of the server or the client: counted, not cached
            _log.debug("orphan lookup of %s failed: %s", puid, exc)
            return None
        events: dict[tuple[str, ...], Event] = {}
        for ordinal, hit in enumerate(_hits(reply)):
            position = SourcePosition(str(hit.get("_index", "")), 0, ordinal)
            doc = document_events(hit, position, kserve_component=self._component)
            for event in doc.events:
                if event.kind is EventKind.RESPONSE and event.puid == puid:
                    events.setdefault(event.identity, event)
        answer = tuple(events.values())
        self._cache[puid] = answer
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return answer

    async def resolve(self, feedback: Event) -> tuple[Event, ...]:
        """The logged responses a feedback's puid has in the indices (counted)."""
        found = await self.responses(feedback.puid)
        if found is None:
            self.unresolved["error"] += 1
            return ()
        if not found:
            self.unresolved["not_found"] += 1
            return ()
        self.resolved += 1
        return found


def _hits(body: Any) -> list[dict[str, Any]]:
    hits = body.get("hits", {}).get("hits", []) if isinstance(body, dict) else []
    return [hit for hit in hits if isinstance(hit, dict)]
