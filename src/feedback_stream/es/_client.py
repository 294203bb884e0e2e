"""Connect to the configured search server: wait for it, detect it, pick its client.

:func:`connect` is the one entry point the service (and any other reader)
uses: it waits for the cluster with backoff up to a deadline, detects the
server's family and version once, refuses an unsupported one with one
clear error, and returns the :class:`~feedback_stream.es.client.SearchClient`
that speaks that server's dialect. Both clients authenticate the same way
from the same settings; ``orjson`` parses the answers (the history
bootstrap spends most of its time parsing pages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer
from opensearchpy import AsyncOpenSearch
from opensearchpy.serializer import JSONSerializer

from feedback_stream.es.client import ElasticsearchClient, OpenSearchClient, SearchClient
from feedback_stream.es.errors import (
    ElasticsearchEdgeError,
    EsRequestError,
    EsUnsupportedServerError,
    translate,
)
from feedback_stream.es.server import Family, ServerInfo, server_from_root, server_from_version
from feedback_stream.es.settings import ElasticsearchSettings

__all__ = [
    "as_search_client",
    "check_connection",
    "connect",
    "create_client",
    "create_opensearch_client",
    "detect_server",
]

log = logging.getLogger(__name__)
# opensearch-py logs every failed request at WARNING with a traceback (the
# probe's expected 405 on a minimal distribution's "/", each refused
# connection while waiting); this package says what failed, once, itself.
logging.getLogger("opensearch").setLevel(logging.ERROR)

_ELASTICSEARCH_9 = server_from_version(Family.ELASTICSEARCH, "9.0.0")


def create_client(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    """An :class:`AsyncElasticsearch` with the configured hosts, auth and TLS.

    Basic auth and an API key are exclusive in practice; when both are set
    the API key wins, as the Elasticsearch client does.
    """
    kwargs: dict[str, Any] = {
        "request_timeout": settings.request_timeout_s,
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "serializer": OrjsonSerializer(),
        "verify_certs": settings.verify_certs,
    }
    if not settings.verify_certs:
        kwargs["ssl_show_warn"] = False
    if settings.ca_certs is not None:
        kwargs["ca_certs"] = str(settings.ca_certs)
    if settings.api_key is not None:
        kwargs["api_key"] = settings.api_key.get_secret_value()
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        kwargs["basic_auth"] = (settings.username, password)
    return AsyncElasticsearch(list(settings.hosts), **kwargs)


class _OrjsonLoads(JSONSerializer):
    """opensearch-py's serializer, parsing with orjson."""

    def loads(self, s: str) -> Any:
        return orjson.loads(s)


def create_opensearch_client(settings: ElasticsearchSettings) -> AsyncOpenSearch:
    """An :class:`AsyncOpenSearch` with the same hosts, auth and TLS as :func:`create_client`."""
    kwargs: dict[str, Any] = {
        "timeout": settings.request_timeout_s,
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "serializer": _OrjsonLoads(),
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
    }
    if settings.ca_certs is not None:
        kwargs["ca_certs"] = str(settings.ca_certs)
    if settings.api_key is not None:
        kwargs["headers"] = {"authorization": f"ApiKey {settings.api_key.get_secret_value()}"}
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        kwargs["http_auth"] = (settings.username, password)
    return AsyncOpenSearch(list(settings.hosts), **kwargs)


def as_search_client(client: AsyncElasticsearch | SearchClient, hosts: str = "") -> SearchClient:
    """A :class:`SearchClient` as is; a bare 9.x client as one for Elasticsearch 9, its major."""
    if isinstance(client, SearchClient):
        return client
    return ElasticsearchClient(client, _ELASTICSEARCH_9, hosts)


async def detect_server(settings: ElasticsearchSettings) -> ServerInfo:
    """The server's family and version, from ``GET /`` (or the node, where ``/`` is absent).

    Asked with opensearch-py, which talks plain JSON to every server.

    Raises:
        ElasticsearchEdgeError: unreachable, credentials, TLS, or a server
            that is not Elasticsearch / OpenSearch.
    """
    probe = create_opensearch_client(settings.model_copy(update={"max_retries": 0}))
    try:
        try:
            return server_from_root(await probe.info())
        except Exception as exc:
            error = translate(exc, settings.hosts_text, "asking the server's version")
            # Minimal Elasticsearch distributions have no root endpoint.
            if not isinstance(error, EsRequestError) or error.status not in (400, 404, 405):
                raise error from exc
        nodes = await probe.transport.perform_request(
            "GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"}
        )
        versions = [str(node["version"]) for node in (nodes.get("nodes") or {}).values()]
        if not versions:
            raise EsUnsupportedServerError(
                f"the server at {settings.hosts_text} says neither its product nor its version"
            )
        return server_from_version(Family.ELASTICSEARCH, versions[0])
    except ElasticsearchEdgeError:
        raise
    except Exception as exc:
        raise translate(exc, settings.hosts_text, "asking the server's version") from exc
    finally:
        await probe.close()


async def connect(
    settings: ElasticsearchSettings,
    *,
    wait_s: float | None = None,
    clock: Any = time.monotonic,
) -> SearchClient:
    """Wait for the cluster, detect it and return the client that speaks its dialect.

    Connection failures, 429 and 5xx are retried with exponential backoff
    (0.5 s doubling, at most 5 s apart) until ``wait_s`` (default
    ``settings.startup_wait_s``) has passed; anything else (401, 403, TLS,
    an unsupported server) is raised at once.

    Raises:
        ElasticsearchEdgeError: the last failure, naming the hosts.
    """
    deadline = clock() + (settings.startup_wait_s if wait_s is None else wait_s)
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            server = await detect_server(settings)
            break
        except ElasticsearchEdgeError as error:
            left = deadline - clock()
            if not error.retriable or left <= 0:
                raise
            log.log(
                logging.WARNING if attempt == 1 else logging.INFO,
                "%s; waiting for it (%.0fs left)",
                error,
                left,
            )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
    server.check_supported()
    log.info("search server at %s: %s, paging by %s", settings.hosts_text, server, server.paging)
    if server.elasticsearch_client:
        return ElasticsearchClient(create_client(settings), server, settings.hosts_text)
    return OpenSearchClient(create_opensearch_client(settings), server, settings.hosts_text)


async def check_connection(
    client: AsyncElasticsearch | SearchClient, hosts: str, doing: str
) -> None:
    """One cheap authenticated request, so a bad URL, TLS setup or password fails first.

    Uses ``_cluster/health`` rather than ``GET /``: the minimal
    distribution (integ-test-zip) has no root endpoint.

    Raises:
        ElasticsearchEdgeError: the translated reason, naming the hosts.
    """
    try:
        await as_search_client(client, hosts).health()
    except Exception as exc:
        raise translate(exc, hosts, doing) from exc
