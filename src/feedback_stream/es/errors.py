"""Errors of the Elasticsearch edge.

::

    ElasticsearchEdgeError          anything this package raises about Elasticsearch
    ├── EsUnavailableError          no answer: refused, DNS, timeout   (retriable)
    ├── EsAuthenticationError       401: wrong or missing credentials
    ├── EsAuthorizationError        403: the user may not read/write the index
    ├── EsTlsError                  certificate not trusted / hostname mismatch
    └── EsRequestError              any other rejected request (bad query, mapping)

Callers branch on ``retriable`` (the sink retries, the bootstrap with
``history_required`` fails fast on the others) and print ``str(error)``,
which names the host and says what to check, never a secret.
:func:`translate` turns the client's exceptions into these.
"""

from __future__ import annotations

import elastic_transport
import elasticsearch

__all__ = [
    "ElasticsearchEdgeError",
    "EsAuthenticationError",
    "EsAuthorizationError",
    "EsRequestError",
    "EsTlsError",
    "EsUnavailableError",
    "translate",
]


class ElasticsearchEdgeError(Exception):
    """Root of the errors about talking to Elasticsearch."""

    retriable: bool = False


class EsUnavailableError(ElasticsearchEdgeError):
    """Elasticsearch did not answer (connection refused, DNS, timeout)."""

    retriable = True


class EsAuthenticationError(ElasticsearchEdgeError):
    """Elasticsearch (or the proxy in front of it) rejected the credentials."""


class EsAuthorizationError(ElasticsearchEdgeError):
    """The credentials are valid but may not do what was asked."""


class EsTlsError(ElasticsearchEdgeError):
    """The TLS handshake failed: untrusted certificate or wrong hostname."""


class EsRequestError(ElasticsearchEdgeError):
    """Elasticsearch rejected a request; ``status`` is its HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        # Overloaded or failing nodes (429, 5xx) recover; a bad request does not.
        self.retriable = status == 429 or status >= 500


def translate(exc: Exception, hosts: str, doing: str) -> ElasticsearchEdgeError:
    """Map an exception of the Elasticsearch client to this package's tree.

    Args:
        exc: what the client raised.
        hosts: the hosts, for the message (they never carry credentials:
            the settings refuse URLs with a user part).
        doing: what was being done, e.g. ``"reading history"``.
    """
    if isinstance(exc, ElasticsearchEdgeError):
        return exc
    if isinstance(exc, elastic_transport.TlsError):
        return EsTlsError(
            f"TLS handshake with Elasticsearch at {hosts} failed while {doing}: "
            f"{_first_line(exc)}; check ca_certs / verify_certs"
        )
    if isinstance(exc, elasticsearch.AuthenticationException):
        return EsAuthenticationError(
            f"Elasticsearch at {hosts} rejected the credentials (HTTP 401) while {doing}; "
            "check the username/password or API key"
        )
    if isinstance(exc, elasticsearch.AuthorizationException):
        return EsAuthorizationError(
            f"Elasticsearch at {hosts} refused the request (HTTP 403) while {doing}; "
            "the user lacks the privilege for this index"
        )
    if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return EsUnavailableError(
            f"Elasticsearch at {hosts} is unreachable while {doing}: {_first_line(exc)}"
        )
    if isinstance(exc, elasticsearch.ApiError):
        return EsRequestError(
            f"Elasticsearch at {hosts} rejected a request while {doing}: "
            f"HTTP {exc.meta.status} {_api_reason(exc)}",
            status=int(exc.meta.status),
        )
    if isinstance(exc, elastic_transport.TransportError):
        return EsUnavailableError(
            f"Elasticsearch at {hosts} failed while {doing}: {_first_line(exc)}"
        )
    return EsRequestError(f"unexpected error from Elasticsearch at {hosts} while {doing}: {exc!r}")


def _api_reason(exc: elasticsearch.ApiError) -> str:
    """``type: reason`` of an Elasticsearch error body, else the client's message."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('type', 'error')}: {str(error.get('reason', ''))[:300]}"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    """The first line of an error message, bounded, for one-line log records."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
