"""The processor's HTTP face: CloudEvents ingest, /metrics, the JSON API and the page.

Ingest accepts events exactly as Seldon's executor and a Knative broker
deliver them: binary mode (``Ce-*`` headers, payload body) and structured
mode (``application/cloudevents+json``), plus the batch mode
(``application/cloudevents-batch+json``) of the CloudEvents HTTP binding, on
``POST /`` and ``POST /events``. An accepted (or duplicate) event gets
``202`` with an empty body: Knative treats a non-empty reply as an event to
route. An event that cannot be decoded gets ``400`` and a JSON body naming
the problem::

    {"error": "missing_puid", "reason": "...", "position": "http/0@17"}

A batch is decoded whole before any of it is applied: if one element is
refused, none is applied, and the ``400`` lists every refused element by
index (``"applied": 0``). A structured event sent as plain
``application/json`` (a body carrying ``specversion``) is read as
structured. Large bodies are parsed and decoded in a worker thread and
batches are applied in slices, so a 16 MB body never holds up the event
loop (probes, scrapes) for long.

Bodies' content codings are undone here, not by aiohttp (serve the app with
``auto_decompress=False``, as :mod:`feedback_stream.http.listeners` does):
gzip, deflate and identity, stacked or not, in any case, and never past
``max_body`` inflated (:mod:`feedback_stream.http.content_coding`). A body
that cannot be read (a coding we do not support, corrupt or truncated
compressed data, a zip bomb) is answered as JSON like any refused event and
counted in ``feedback_stream_invalid_events_total{reason}``.

Every 4xx answer is counted by reason and logged as one WARNING line
(:mod:`feedback_stream.http.refusals`).

The app knows nothing of joins or windows: it talks to a :class:`Backend`
(the service), so tests can drive it with any object of that shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import orjson
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry

from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, SourcePosition
from feedback_stream.http.content_coding import (
    SUPPORTED,
    BodyRefusal,
    decode_content,
    is_plain,
    transfer_refusal,
)
from feedback_stream.http.feedback import FEEDBACK_PATH, feedback_event_headers
from feedback_stream.http.refusals import Refusals
from feedback_stream.payload import embedded_prediction, inflate

__all__ = ["Backend", "Problem", "Readiness", "create_app"]

_log = logging.getLogger(__name__)

_BATCH = "application/cloudevents-batch+json"
_STATIC = resources.files("feedback_stream.http") / "static"
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_OFF_LOOP_BYTES = 64 * 1024
"""Bodies from this size on are parsed and decoded in a worker thread."""
_ERROR = web.ResponseKey("error", str)
_REASON = web.ResponseKey("reason", str)
_APPLY_SLICE = 500
"""Events of a batch applied between two yields to the event loop."""
_UNREAD = SourcePosition("http", 0, -1)
"""Where a body refused before decoding (its coding, its size) is counted: HTTP's state."""
_FEEDBACK_TYPE = "io.seldon.serving.feedback"


class Problem(Protocol):
    """Why an event was refused: a bounded ``code`` and a message for people."""

    @property
    def code(self) -> str: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """``/readyz``: ready once partitions are assigned and any history is loaded.

    ``reasons`` says, for a check that fails, why (``{"kafka_assigned":
    "topic seldon does not exist yet ..."}``). ``details`` are JSON-ready
    states shown beside the checks (the history's ``state`` and ``reason``,
    the outcome sink's figures).
    """

    ready: bool
    checks: Mapping[str, bool]
    reasons: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What the app serves; implemented by :class:`feedback_stream.service.Service`."""

    @property
    def registry(self) -> CollectorRegistry: ...

    def metrics_page(self, accept: str) -> tuple[bytes, str]:
        """(body, Content-Type) of ``/metrics`` for a request's ``Accept`` header."""

    def decode(
        self, headers: Mapping[str, str], body: bytes | dict[str, Any], arrival: float
    ) -> Event | DecodeError:
        """Decode one HTTP CloudEvent (header names lower-cased), applying nothing.

        ``body`` is the raw body, or one element of a batch already parsed.
        Thread-safe: large bodies are decoded in a worker thread.
        """

    def apply_events(self, items: Sequence[Event | DecodeError]) -> None:
        """Apply decoded events and count the errors, in order (on the event loop)."""

    def models(self, window: str | None) -> list[dict[str, Any]]:
        """Every model with its label coverage and current metrics in ``window``."""

    def metrics_document(self, windows: Sequence[str] | None) -> dict[str, Any]:
        """The ``replay --output json`` document; raises ``ValueError`` for a bad window."""

    def history(self, window: str | None) -> dict[str, Any]:
        """Accuracy over time per model in ``window``, for the live page's chart."""

    def comparisons(self, window: str | None) -> dict[str, Any]:
        """Every baseline vs candidate comparison in ``window`` (paired statistics)."""

    def readiness(self) -> Readiness: ...

    def status(self) -> dict[str, Any]:
        """Broker, pending joins, caps and refusals (:mod:`feedback_stream.status`)."""


@dataclass(frozen=True, slots=True)
class _BatchProblem:
    code: str
    reason: str


def _json(data: object, status: int = 200) -> web.Response:
    response = web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        content_type="application/json",
    )
    if status >= 400 and isinstance(data, dict):
        # For the error middleware, which counts and logs refusals by reason.
        response[_ERROR] = str(data.get("error"))
        response[_REASON] = str(data.get("reason"))
    return response


def _problem(problem: Problem, status: int = 400, **extra: object) -> web.Response:
    return _json({"error": problem.code, "reason": problem.reason, **extra}, status=status)


def create_app(
    backend: Backend,
    *,
    ingest: bool = True,
    read: bool = True,
    max_body: int = 16 << 20,
    refusals: Refusals | None = None,
    middlewares: Sequence[Any] = (),
) -> web.Application:
    """The aiohttp application.

    Args:
        backend: what the endpoints serve.
        ingest: serve CloudEvents ingest (``POST /`` and ``/events``).
        read: serve the read side (``/metrics``, the API, the page, the probes).
        max_body: largest request body, bytes, as sent and inflated (a larger
            one gets ``413``).
        refusals: where 4xx answers are counted (default: a counter in the
            backend's registry).
        middlewares: run inside the error middleware (authentication).
    """
    refusals = refusals if refusals is not None else Refusals(backend.registry)
    app = web.Application(
        client_max_size=max_body, middlewares=[_error_middleware(refusals), *middlewares]
    )
    handlers = _Handlers(backend, max_body)
    if ingest:
        app.router.add_post("/", handlers.ingest)
        app.router.add_post("/events", handlers.ingest)
        app.router.add_post(FEEDBACK_PATH, handlers.feedback)
    if not read:
        if not ingest:
            raise ValueError("an app must serve ingest, the read side, or both")
        app.router.add_get("/healthz", handlers.healthz)
        return app
    app.router.add_get("/", handlers.page)
    app.router.add_get("/static/{name}", handlers.static)
    app.router.add_get("/favicon.ico", _no_icon)  # browsers ask; not a refusal to count
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/api/v1/models", handlers.models)
    app.router.add_get("/api/v1/metrics", handlers.metrics_json)
    app.router.add_get("/api/v1/history", handlers.history)
    app.router.add_get("/api/v1/status", handlers.status)
    app.router.add_get("/api/v1/comparisons", handlers.comparisons)
    return app


async def _no_icon(request: web.Request) -> web.Response:
    """The page has no icon: ``204``, so a browser's request is no 404 to count."""
    return web.Response(status=204)


def _error_middleware(refusals: Refusals) -> Callable[..., Any]:
    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        """Every error answers JSON; every 4xx is counted and logged as one line."""
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _json(
                {"error": exc.reason.lower().replace(" ", "_"), "reason": exc.text or ""},
                status=exc.status,
            )
            response.headers.update(
                {k: v for k, v in exc.headers.items() if k.lower() == "www-authenticate"}
            )
        except web.RequestPayloadError as exc:
            # A body aiohttp's parser cannot read (bad chunked framing): the client's fault.
            response = _json(
                {"error": "bad_body", "reason": f"the body cannot be read: {exc}"},
                status=400,
            )
        except ConnectionResetError:
            # The client went away mid-request (a half-sent body): its refusal, not our error.
            response = _json(
                {"error": "client_disconnected", "reason": "the connection closed mid-request"},
                status=400,
            )
        except Exception:
            _log.exception("error serving %s %s", request.method, request.path)
            return _json({"error": "internal", "reason": "see the processor's log"}, status=500)
        if 400 <= response.status < 500:
            refusals.refuse(
                response.get(_ERROR, "refused"),
                response.status,
                f"{request.method} {request.path}: {response.get(_REASON, '')}",
                request.remote,
            )
        return response

    return errors


async def _off_loop(size: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, in a worker thread when the body is large."""
    if size >= _OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _body_puid(body: bytes) -> str | None:
    """The ``response.meta.puid`` a Seldon client's feedback body carries, if any."""
    try:
        document = orjson.loads(inflate(body))
    except (orjson.JSONDecodeError, ValueError):
        return None  # the decoder words the error
    return embedded_prediction(document)[1] if isinstance(document, dict) else None


class _Handlers:
    def __init__(self, backend: Backend, max_body: int) -> None:
        self._backend = backend
        self._max_body = max_body

    async def _read_body(self, request: web.Request) -> bytes | BodyRefusal:
        """The body, its content codings undone, or why it cannot be read."""
        refusal = transfer_refusal(",".join(request.headers.getall(hdrs.TRANSFER_ENCODING, ())))
        if refusal is not None:
            return refusal
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return BodyRefusal("request_entity_too_large", exc.text or "", exc.status)
        coding = ",".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))
        if is_plain(coding, body):
            return body
        result: bytes | BodyRefusal = await asyncio.to_thread(
            decode_content, coding, body, self._max_body
        )
        return result

    def _refuse(self, refusal: BodyRefusal, event_type: str | None) -> web.Response:
        """Count a body that cannot be read as an invalid event and answer it as JSON."""
        error = DecodeError(refusal.reason, refusal.code, _UNREAD, event_type)
        self._backend.apply_events([error])
        response = _problem(refusal, status=refusal.status)
        if refusal.code == "unsupported_content_encoding":
            response.headers[hdrs.ACCEPT_ENCODING] = SUPPORTED  # RFC 9110 §12.5.3
        return response

    async def ingest(self, request: web.Request) -> web.Response:
        arrival = time.time()
        body = await self._read_body(request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        if isinstance(body, BodyRefusal):
            return self._refuse(body, headers.get("ce-type"))
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == _BATCH:
            return await self._ingest_batch(headers, body, arrival)
        item = await _off_loop(len(body), self._backend.decode, headers, body, arrival)
        self._backend.apply_events([item])
        if isinstance(item, DecodeError):
            return _problem(item)
        return web.Response(status=202)

    async def feedback(self, request: web.Request) -> web.Response:
        """Seldon's feedback API (:mod:`feedback_stream.http.feedback`): 200 and the puid."""
        arrival = time.time()
        body = await self._read_body(request)
        if isinstance(body, BodyRefusal):
            return self._refuse(body, _FEEDBACK_TYPE)
        headers = {name.lower(): value for name, value in request.headers.items()}
        event_headers, puid = feedback_event_headers(headers, request.query, _body_puid(body))
        item = await _off_loop(len(body), self._backend.decode, event_headers, body, arrival)
        self._backend.apply_events([item])
        if isinstance(item, DecodeError):
            return _problem(item)
        response = _json({"meta": {"puid": puid}})
        response.headers["Seldon-Puid"] = puid
        return response

    async def _ingest_batch(
        self, headers: Mapping[str, str], body: bytes, arrival: float
    ) -> web.Response:
        structured = {name: value for name, value in headers.items() if not name.startswith("ce-")}
        structured["content-type"] = "application/cloudevents+json"
        result = await _off_loop(len(body), self._decode_batch, structured, body, arrival)
        if isinstance(result, _BatchProblem):
            return _problem(result)
        items: list[Event | DecodeError] = result
        failures = [
            {"index": index, "error": item.code, "reason": item.reason}
            for index, item in enumerate(items)
            if isinstance(item, DecodeError)
        ]
        if failures:
            # Validated whole: a batch with a refused element applies none of its events.
            self._backend.apply_events([item for item in items if isinstance(item, DecodeError)])
            return _json(
                {
                    "error": failures[0]["error"],
                    "reason": f"{len(failures)} of {len(items)} events refused; none applied",
                    "applied": 0,
                    "events": failures,
                },
                status=400,
            )
        for start in range(0, len(items), _APPLY_SLICE):
            if start:
                await asyncio.sleep(0)  # let probes and scrapes in between slices
            self._backend.apply_events(items[start : start + _APPLY_SLICE])
        return web.Response(status=202)

    def _decode_batch(
        self, headers: Mapping[str, str], body: bytes, arrival: float
    ) -> list[Event | DecodeError] | _BatchProblem:
        try:
            events = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _BatchProblem("bad_json", f"batch body is not JSON: {exc}")
        if not isinstance(events, list):
            return _BatchProblem("bad_batch", "a CloudEvents batch is a JSON array")
        items: list[Event | DecodeError] = []
        for index, event in enumerate(events):
            if isinstance(event, dict):
                items.append(self._backend.decode(headers, event, arrival))
            else:
                items.append(
                    DecodeError(
                        f"batch element {index} must be a CloudEvent (a JSON object)",
                        "bad_envelope",
                    )
                )
        return items

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(_STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8"
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        resource = _STATIC / name
        if "/" in name or suffix not in _STATIC_TYPES or not resource.is_file():
            raise web.HTTPNotFound(text=f"no static file {name!r}")
        return web.Response(
            body=resource.read_bytes(), content_type=_STATIC_TYPES[suffix], charset="utf-8"
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._backend.metrics_page(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        readiness = self._backend.readiness()
        return _json(
            {
                "ready": readiness.ready,
                "checks": dict(readiness.checks),
                "reasons": dict(readiness.reasons),
                **readiness.details,
            },
            status=200 if readiness.ready else 503,
        )

    async def models(self, request: web.Request) -> web.Response:
        try:
            return _json({"models": self._backend.models(request.query.get("window"))})
        except ValueError as exc:
            return _problem(_BatchProblem("bad_window", str(exc)))

    async def metrics_json(self, request: web.Request) -> web.Response:
        windows = [
            part.strip()
            for value in request.query.getall("window", [])
            for part in value.split(",")
            if part.strip()
        ]
        try:
            document = self._backend.metrics_document(windows or None)
        except ValueError as exc:
            return _problem(_BatchProblem("bad_window", str(exc)))
        return _json(document)

    async def status(self, request: web.Request) -> web.Response:
        return _json(self._backend.status())

    async def history(self, request: web.Request) -> web.Response:
        try:
            return _json(self._backend.history(request.query.get("window")))
        except ValueError as exc:
            return _problem(_BatchProblem("bad_window", str(exc)))

    async def comparisons(self, request: web.Request) -> web.Response:
        try:
            return _json(self._backend.comparisons(request.query.get("window")))
        except ValueError as exc:
            return _problem(_BatchProblem("bad_window", str(exc)))
