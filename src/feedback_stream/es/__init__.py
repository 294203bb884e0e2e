"""The Elasticsearch edge: history bootstrap from the request logger, outcome sink.

Everything is importable from here; the modules are private or named for
one concept (``history``, ``sink``, ``overlap``, ``settings``, ``errors``).
See docs/elasticsearch.md.
"""

from feedback_stream.es._client import check_connection, create_client
from feedback_stream.es._documents import (
    HISTORY_IDENTITY_TAG,
    DocumentEvents,
    document_events,
    history_identity,
    parse_es_time,
)
from feedback_stream.es.errors import (
    ElasticsearchEdgeError,
    EsAuthenticationError,
    EsAuthorizationError,
    EsRequestError,
    EsTlsError,
    EsUnavailableError,
)
from feedback_stream.es.history import HistoryBootstrap, HistoryProgress
from feedback_stream.es.overlap import HistoryOverlap
from feedback_stream.es.settings import ElasticsearchSettings, HistorySettings
from feedback_stream.es.sink import (
    OUTCOME_MAPPING,
    OutcomeSink,
    SinkStats,
    outcome_document,
    outcome_id,
    outcome_index,
)

__all__ = [
    "HISTORY_IDENTITY_TAG",
    "OUTCOME_MAPPING",
    "DocumentEvents",
    "ElasticsearchEdgeError",
    "ElasticsearchSettings",
    "EsAuthenticationError",
    "EsAuthorizationError",
    "EsRequestError",
    "EsTlsError",
    "EsUnavailableError",
    "HistoryBootstrap",
    "HistoryOverlap",
    "HistoryProgress",
    "HistorySettings",
    "OutcomeSink",
    "SinkStats",
    "check_connection",
    "create_client",
    "document_events",
    "history_identity",
    "outcome_document",
    "outcome_id",
    "outcome_index",
    "parse_es_time",
]
