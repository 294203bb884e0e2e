"""The Elasticsearch / OpenSearch edge: history bootstrap from the request logger, outcome sink.

Everything is importable from here; the modules are private or named for
one concept (``server``, ``client``, ``history``, ``sink``, ``overlap``,
``settings``, ``errors``). :func:`connect` waits for the server, detects it
and returns the :class:`SearchClient` that speaks its dialect; any reader
(the history, the sink, a lookup) takes that. See docs/elasticsearch.md.
"""

from feedback_stream.es._client import (
    as_search_client,
    check_connection,
    connect,
    create_client,
    create_opensearch_client,
    detect_server,
)
from feedback_stream.es._documents import (
    HISTORY_IDENTITY_TAG,
    DocumentEvents,
    document_events,
    history_identity,
    parse_es_time,
)
from feedback_stream.es.client import ElasticsearchClient, OpenSearchClient, SearchClient
from feedback_stream.es.errors import (
    ElasticsearchEdgeError,
    EsAuthenticationError,
    EsAuthorizationError,
    EsRequestError,
    EsTlsError,
    EsUnavailableError,
    EsUnsupportedServerError,
)
from feedback_stream.es.history import HistoryBootstrap, HistoryProgress
from feedback_stream.es.overlap import HistoryOverlap
from feedback_stream.es.server import Family, Paging, ServerInfo, server_from_version
from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
from feedback_stream.es.sink import (
    OUTCOME_MAPPING,
    OutcomeSink,
    SinkCollector,
    SinkStats,
    outcome_document,
    outcome_id,
    outcome_index,
)

__all__ = [
    "HISTORY_IDENTITY_TAG",
    "OUTCOME_MAPPING",
    "DocumentEvents",
    "ElasticsearchClient",
    "ElasticsearchEdgeError",
    "ElasticsearchSettings",
    "EsAuthenticationError",
    "EsAuthorizationError",
    "EsRequestError",
    "EsTlsError",
    "EsUnavailableError",
    "EsUnsupportedServerError",
    "Family",
    "HistoryBootstrap",
    "HistoryOverlap",
    "HistoryProgress",
    "HistorySettings",
    "OpenSearchClient",
    "OutcomeSink",
    "Paging",
    "SearchClient",
    "ServerInfo",
    "SinkCollector",
    "SinkStats",
    "as_search_client",
    "check_connection",
    "connect",
    "create_client",
    "create_opensearch_client",
    "detect_server",
    "document_events",
    "history_identity",
    "outcome_document",
    "outcome_id",
    "outcome_index",
    "parse_es_time",
    "server_from_version",
]
