"""Errors of the Elasticsearch edge.

::

    ElasticsearchEdgeError          anything this package raises about Elasticsearch
    ├── EsUnavailableError          no answer: refused, DNS, timeout   (retriable)
    ├── EsAuthenticationError       401: wrong or missing credentials
    ├── EsAuthorizationError        403: the user may not read/write the index
    ├── EsTlsError                  certificate not trusted / hostname mismatch
    ├── EsUnsupportedServerError    a server (or version) this package cannot speak to
    └── EsRequestError              any other rejected request (bad query, mapping)

Both clients' exceptions are translated: ``elasticsearch`` (for
Elasticsearch 9) and ``opensearch-py`` (for OpenSearch and Elasticsearch 7
and 8). Callers branch on ``retriable`` (the sink retries, the bootstrap with
``history_required`` fails fast on the others) and print ``str(error)``,
which names the host and says what to check, never a secret.
:func:`translate` turns the client's exceptions into these.
"""

from __future__ import annotations

import elastic_transport
import elasticsearch
import opensearchpy

__all__ = [
    "ElasticsearchEdgeError",
    "EsAuthenticationError",
    "EsAuthorizationError",
    "EsRequestError",
    "EsTlsError",
    "EsUnavailableError",
    "EsUnsupportedServerError",
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


class EsUnsupportedServerError(ElasticsearchEdgeError):
    """The server is not one this package speaks to; the message names what is missing."""


class EsRequestError(ElasticsearchEdgeError):
    """Elasticsearch rejected a request; ``status`` is its HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        # Overloaded or failing nodes (429, 5xx) recover; a bad request does not.
        self.retriable = status == 429 or status >= 500


def translate(exc: Exception, hosts: str, doing: str) -> ElasticsearchEdgeError:
    """Map an exception of either client to this package's tree.

    Args:
        exc: what the client raised.
        hosts: the hosts, for the message (they never carry credentials:
            the settings refuse URLs with a user part).
        doing: what was being done, e.g. ``"reading history"``.
    """
    if isinstance(exc, ElasticsearchEdgeError):
        return exc
    if isinstance(exc, opensearchpy.TransportError):
        return _translate_opensearch(exc, hosts, doing)
    if isinstance(exc, elastic_transport.TlsError):
        return _tls(hosts, doing, exc)
    if isinstance(exc, elasticsearch.AuthenticationException):
        return _unauthenticated(hosts, doing)
    if isinstance(exc, elasticsearch.AuthorizationException):
        return _forbidden(hosts, doing, _api_reason(exc))
    if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return _unreachable(hosts, doing, exc)
    if isinstance(exc, elasticsearch.ApiError):
        return _rejected(hosts, doing, int(exc.meta.status), _api_reason(exc))
    if isinstance(exc, elastic_transport.TransportError):
        return EsUnavailableError(
            f"Elasticsearch at {hosts} failed while {doing}: "
            f"{_first_line(exc)}{_scheme_hint(hosts)}"
        )
    return EsRequestError(f"unexpected error from Elasticsearch at {hosts} while {doing}: {exc!r}")


def _translate_opensearch(
    exc: opensearchpy.TransportError, hosts: str, doing: str
) -> ElasticsearchEdgeError:
    if isinstance(exc, opensearchpy.SSLError):
        return _tls(hosts, doing, exc.info if isinstance(exc.info, Exception) else exc)
    if isinstance(exc, opensearchpy.ConnectionError):  # timeouts too
        return _unreachable(hosts, doing, exc.info if isinstance(exc.info, Exception) else exc)
    status = exc.status_code if isinstance(exc.status_code, int) else 0
    reason = _body_reason(exc.info, str(exc.error))
    if status == 401:
        return _unauthenticated(hosts, doing)
    if status == 403:
        return _forbidden(hosts, doing, reason)
    return _rejected(hosts, doing, status, reason)


def _tls(hosts: str, doing: str, exc: BaseException) -> EsTlsError:
    return EsTlsError(
        f"TLS handshake with Elasticsearch at {hosts} failed while {doing}: "
        f"{_first_line(exc)}; check ca_certs / verify_certs"
    )


def _unauthenticated(hosts: str, doing: str) -> EsAuthenticationError:
    return EsAuthenticationError(
        f"Elasticsearch at {hosts} rejected the credentials (HTTP 401) while {doing}; "
        "check the username/password or API key"
    )


def _forbidden(hosts: str, doing: str, reason: str) -> EsAuthorizationError:
    return EsAuthorizationError(
        f"Elasticsearch at {hosts} refused the request (HTTP 403) while {doing}; "
        f"the user lacks a privilege for it: {reason}"
    )


def _unreachable(hosts: str, doing: str, exc: BaseException) -> EsUnavailableError:
    text = _first_line(exc)
    # A TLS port drops a plain-HTTP request without an answer ("Server disconnected").
    dropped = any(word in text.lower() for word in ("disconnect", "reset", "eof", "closed"))
    return EsUnavailableError(
        f"Elasticsearch at {hosts} is unreachable while {doing}: "
        f"{text}{_scheme_hint(hosts) if dropped else ''}"
    )


def _rejected(hosts: str, doing: str, status: int, reason: str) -> EsRequestError:
    hint = ""
    if "plain HTTP request was sent to HTTPS port" in reason:
        hint = _scheme_hint(hosts)
    return EsRequestError(
        f"Elasticsearch at {hosts} rejected a request while {doing}: HTTP {status} {reason}{hint}",
        status=status,
    )


def _scheme_hint(hosts: str) -> str:
    """A hint for the commonest set-up slip: ``http://`` to a port that serves TLS."""
    if any(not host.startswith("https://") for host in hosts.split(",")):
        return "; if the server serves https on that port, use an https:// URL"
    return ""


def _body_reason(body: object, fallback: str) -> str:
    """``type: reason`` of an error body, else ``fallback``."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('type', 'error')}: {str(error.get('reason', ''))[:300]}"
    if isinstance(body, str) and body.strip():
        return body.strip().splitlines()[0][:300] if "<" not in body else _html_title(body)
    return fallback[:300]


def _html_title(body: str) -> str:
    start = body.find("<title>")
    end = body.find("</title>")
    if 0 <= start < end:
        return body[start + 7 : end].strip()[:300]
    return body.strip()[:300]


def _api_reason(exc: elasticsearch.ApiError) -> str:
    """``type: reason`` of an Elasticsearch error body, else the client's message."""
    return _body_reason(exc.body, _first_line(exc))


def _first_line(exc: BaseException) -> str:
    """The first line of an error message, bounded, for one-line log records."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
