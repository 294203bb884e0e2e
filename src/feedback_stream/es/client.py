"""One small client surface over the two well-kept clients, chosen by the server.

:class:`SearchClient` is what the history reader, the outcome sink (and any
other reader, such as a response lookup) call: ``search``, point in time,
scroll, ``bulk``, index templates, health. :func:`connect` detects the
server once (see :mod:`feedback_stream.es.server`) and returns

* :class:`ElasticsearchClient` (the ``elasticsearch`` 9.x client) for
  Elasticsearch 9, its own major;
* :class:`OpenSearchClient` (``opensearch-py``) for OpenSearch 1–3 and
  Elasticsearch 7 and 8: it sends plain ``application/json``, which they all
  accept, and has no product check. The 9.x ``elasticsearch`` client cannot
  reach them: its typed methods always send ``compatible-with=9`` (a client's
  ``options(headers=...)`` is overwritten by each method's own media type,
  which is then rewritten to the compatible form), Elasticsearch 8 accepts
  only ``compatible-with`` 7 or 8, 7.x and OpenSearch none, and the client
  refuses any server that does not say it is Elasticsearch.

Both return plain ``dict`` bodies and raise their own exceptions, which
:func:`feedback_stream.es.errors.translate` maps to one tree.
"""

from __future__ import annotations

import abc
from typing import Any
from urllib.parse import quote

from elasticsearch import AsyncElasticsearch
from opensearchpy import AsyncOpenSearch

from feedback_stream.es.server import Family, Paging, ServerInfo

__all__ = ["ElasticsearchClient", "OpenSearchClient", "SearchClient"]


class SearchClient(abc.ABC):
    """What this package asks of a search server, in the server's own dialect.

    Attributes:
        server: the detected server (family, version, capabilities).
        hosts: the hosts, for messages (never credentials).
    """

    def __init__(self, server: ServerInfo, hosts: str) -> None:
        self.server = server
        self.hosts = hosts

    @abc.abstractmethod
    async def search(
        self, index: str | None, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """``POST /{index}/_search`` (``/_search`` for None) with ``body`` and query ``params``."""

    @abc.abstractmethod
    async def scroll(self, scroll_id: str, keep_alive: str, filter_path: str) -> dict[str, Any]:
        """The next page of a scroll."""

    @abc.abstractmethod
    async def clear_scroll(self, scroll_id: str) -> None:
        """Free a scroll's search context."""

    @abc.abstractmethod
    async def open_pit(self, index: str, keep_alive: str) -> str:
        """Open a point in time over ``index``; returns its id."""

    @abc.abstractmethod
    async def close_pit(self, pit_id: str) -> None:
        """Close a point in time."""

    @abc.abstractmethod
    async def bulk(self, operations: list[dict[str, Any]], filter_path: str) -> dict[str, Any]:
        """One ``_bulk`` request of action/document lines, not retried by the client."""

    @abc.abstractmethod
    async def put_template(
        self, name: str, pattern: str, mappings: dict[str, Any], priority: int
    ) -> None:
        """Install an index template: composable where the server has it, else legacy."""

    @abc.abstractmethod
    async def health(self) -> dict[str, Any]:
        """``_cluster/health`` with a short timeout, not retried."""

    @abc.abstractmethod
    async def refresh(self, index: str) -> None:
        """Make recent writes to ``index`` searchable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connections; safe to call twice."""

    @property
    def paging(self) -> Paging:
        """How the history reader pages (point in time or scroll) on this server."""
        return self.server.paging


class ElasticsearchClient(SearchClient):
    """Elasticsearch 9 through the ``elasticsearch`` 9.x client.

    Args:
        client: an :class:`AsyncElasticsearch` (:func:`feedback_stream.es.create_client`).
        server: the detected server.
        hosts: the hosts, for messages.
    """

    def __init__(self, client: AsyncElasticsearch, server: ServerInfo, hosts: str) -> None:
        super().__init__(server, hosts)
        self.raw = client

    async def search(
        self, index: str | None, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        extra = dict(params or {})
        response = await self.raw.search(index=index, body=body, **extra)  # type: ignore[arg-type]
        found: dict[str, Any] = response.body
        return found

    async def scroll(self, scroll_id: str, keep_alive: str, filter_path: str) -> dict[str, Any]:
        response = await self.raw.scroll(
            scroll_id=scroll_id, scroll=keep_alive, filter_path=filter_path
        )
        found: dict[str, Any] = response.body
        return found

    async def clear_scroll(self, scroll_id: str) -> None:
        await self.raw.clear_scroll(scroll_id=scroll_id)

    async def open_pit(self, index: str, keep_alive: str) -> str:
        pit = await self.raw.open_point_in_time(
            index=index, keep_alive=keep_alive, ignore_unavailable=True
        )
        return str(pit["id"])

    async def close_pit(self, pit_id: str) -> None:
        await self.raw.close_point_in_time(id=pit_id)

    async def bulk(self, operations: list[dict[str, Any]], filter_path: str) -> dict[str, Any]:
        response = await self.raw.options(max_retries=0).bulk(
            operations=operations, filter_path=filter_path
        )
        found: dict[str, Any] = response.body
        return found

    async def put_template(
        self, name: str, pattern: str, mappings: dict[str, Any], priority: int
    ) -> None:
        await self.raw.options(max_retries=0).indices.put_index_template(
            name=name,
            index_patterns=[pattern],
            priority=priority,
            template={"mappings": mappings},
            meta={"managed_by": "feedback-stream"},
        )

    async def health(self) -> dict[str, Any]:
        response = await self.raw.options(max_retries=0).cluster.health(timeout="5s")
        found: dict[str, Any] = response.body
        return found

    async def refresh(self, index: str) -> None:
        await self.raw.indices.refresh(index=index)

    async def close(self) -> None:
        await self.raw.close()


class OpenSearchClient(SearchClient):
    """OpenSearch 1–3 and Elasticsearch 7–8 through ``opensearch-py``.

    Elasticsearch's point in time (``_pit``) is not in opensearch-py's
    typed API; it goes through the client's own transport, like every
    other request, so authentication, TLS and retries stay the client's.

    Args:
        client: an :class:`AsyncOpenSearch`.
        server: the detected server.
        hosts: the hosts, for messages.
    """

    def __init__(self, client: AsyncOpenSearch, server: ServerInfo, hosts: str) -> None:
        super().__init__(server, hosts)
        self.raw = client

    async def search(
        self, index: str | None, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        found: dict[str, Any] = await self.raw.search(index=index, body=body, params=params or {})
        return found

    async def scroll(self, scroll_id: str, keep_alive: str, filter_path: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.raw.scroll(
            body={"scroll_id": scroll_id, "scroll": keep_alive},
            params={"filter_path": filter_path},
        )
        return found

    async def clear_scroll(self, scroll_id: str) -> None:
        await self.raw.clear_scroll(body={"scroll_id": [scroll_id]})

    async def open_pit(self, index: str, keep_alive: str) -> str:
        if self.server.family is Family.OPENSEARCH:
            pit = await self.raw.create_pit(index=index, params={"keep_alive": keep_alive})
            return str(pit["pit_id"])
        pit = await self.raw.transport.perform_request(
            "POST",
            f"/{quote(index, safe=',*')}/_pit",
            params={"keep_alive": keep_alive, "ignore_unavailable": "true"},
        )
        return str(pit["id"])

    async def close_pit(self, pit_id: str) -> None:
        if self.server.family is Family.OPENSEARCH:
            await self.raw.delete_pit(body={"pit_id": [pit_id]})
        else:
            await self.raw.transport.perform_request("DELETE", "/_pit", body={"id": pit_id})

    async def bulk(self, operations: list[dict[str, Any]], filter_path: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.raw.bulk(
            body=operations, params={"filter_path": filter_path}
        )
        return found

    async def put_template(
        self, name: str, pattern: str, mappings: dict[str, Any], priority: int
    ) -> None:
        if self.server.composable_templates:
            await self.raw.indices.put_index_template(
                name=name,
                body={
                    "index_patterns": [pattern],
                    "priority": priority,
                    "template": {"mappings": mappings},
                    "_meta": {"managed_by": "feedback-stream"},
                },
            )
        else:
            await self.raw.indices.put_template(
                name=name,
                body={"index_patterns": [pattern], "order": priority, "mappings": mappings},
            )

    async def health(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.raw.cluster.health(params={"timeout": "5s"})
        return found

    async def refresh(self, index: str) -> None:
        await self.raw.indices.refresh(index=index)

    async def close(self) -> None:
        await self.raw.close()
