"""Refused HTTP requests: one counter by reason, one WARNING line each, no tracebacks.

Every request the server turns away with a 4xx is counted in
``feedback_stream_refused_requests_total{reason}``: a CloudEvent that does
not decode (its decode code: ``missing_puid``, ``bad_json``, ...), a batch
that is not a JSON array (``bad_batch``), a body over the limit, as sent or
inflated (``request_entity_too_large``), a body in a content coding we do not
support or whose compressed data is corrupt or truncated
(``unsupported_content_encoding``, ``content_encoding_error``), a transfer
coding other than chunked (``unsupported_transfer_encoding``), a missing or wrong token
(``unauthorized``), and requests the HTTP parser itself refuses (a
malformed request line or header: ``bad_http_message``, ``line_too_long``,
...). Each is logged as one WARNING line with the reason; the service's
log handler rate-limits repeats (:mod:`feedback_stream._ratelimit`).

aiohttp logs parser refusals through the server's logger with a full
traceback (about 800 bytes per bad request). :meth:`Refusals.server_logger`
is a logger for :class:`aiohttp.web.AppRunner` that turns those into the
same counted one-line warning and keeps tracebacks for real failures.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter

__all__ = ["Refusals"]

_log = logging.getLogger("feedback_stream.http")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _reason_of(exc: BaseException) -> str:
    """``BadHttpMessage`` -> ``bad_http_message``: a bounded label (aiohttp's classes)."""
    return _CAMEL.sub("_", type(exc).__name__).lower()


class Refusals:
    """Counts and logs refused requests; one per service, shared by its listeners."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "feedback_stream_refused_requests",
            "HTTP requests refused with a 4xx status, by reason.",
            ["reason"],
            registry=registry,
        )
        self._children: dict[str, Any] = {}

    def refuse(self, reason: str, status: int, detail: str, peer: str | None) -> None:
        """Count one refusal and log it as one WARNING line."""
        child = self._children.get(reason)
        if child is None:
            child = self._children[reason] = self.counter.labels(reason)
        child.inc()
        _log.warning("refused a request from %s: %d %s: %s", peer or "?", status, reason, detail)

    def counts(self) -> dict[str, float]:
        """Refused requests so far, by reason."""
        return {reason: float(child._value.get()) for reason, child in self._children.items()}

    def count(self, reason: str) -> float:
        """How many requests were refused for ``reason`` (tests, diagnostics)."""
        child = self._children.get(reason)
        return float(child._value.get()) if child is not None else 0.0

    def server_logger(self) -> logging.Logger:
        """A logger for aiohttp's server: parser refusals become counted one-liners."""
        return cast(logging.Logger, _ServerLogger(self))


class _ServerLogger(logging.LoggerAdapter[logging.Logger]):
    """What aiohttp's ``RequestHandler`` logs through (``.exception``, ``.debug``, ...)."""

    def __init__(self, refusals: Refusals) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._refusals = refusals

    def _refused(self, args: tuple[object, ...], kwargs: dict[str, Any]) -> bool:
        exc = kwargs.get("exc_info")
        if not isinstance(exc, HttpProcessingError):
            return False
        peer = str(args[0]) if args else None
        self._refusals.refuse(_reason_of(exc), exc.code or 400, exc.message or str(exc), peer)
        return True

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            # A body its Content-Encoding cannot decode, met again when aiohttp drains
            # the rest of it after the answer: the answer was the 400, counted there.
            super().debug("%s (after the answer)", kwargs["exc_info"])
            return
        if not self._refused(args, kwargs):
            super().exception(msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # aiohttp logs a first request that is not HTTP at all (a scanner, TLS) at debug.
        if not self._refused(args, kwargs):
            super().debug(msg, *args, **kwargs)
