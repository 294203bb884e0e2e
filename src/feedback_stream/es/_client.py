"""Build the async Elasticsearch client from the settings, and check that it can talk.

One function, shared by the history reader and the outcome sink, so that
both authenticate the same way. ``orjson`` does the JSON: the history
bootstrap spends most of its time parsing pages.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

from feedback_stream.es.errors import translate
from feedback_stream.es.settings import ElasticsearchSettings

__all__ = ["check_connection", "create_client"]


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


async def check_connection(client: AsyncElasticsearch, hosts: str, doing: str) -> None:
    """One cheap authenticated request, so a bad URL, TLS setup or password fails first.

    Uses ``_cluster/health`` rather than ``GET /``: the minimal
    distribution (integ-test-zip) has no root endpoint.

    Raises:
        ElasticsearchEdgeError: the translated reason, naming the hosts.
    """
    try:
        await client.options(max_retries=0).cluster.health(timeout="5s")
    except Exception as exc:
        raise translate(exc, hosts, doing) from exc
