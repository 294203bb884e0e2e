"""Orphan feedback resolved by asking the model: a configured prediction URL per predictor.

Seldon's own example posts feedback ``{"reward": 0, "request": {...},
"truth": {...}}`` with no ``Seldon-Puid``: the executor logs it under a puid
no response has, so it can never join. When a prediction URL is configured
for the feedback's predictor (the model's own microservice, so the call is
not logged again), the feedback's ``request`` is posted there as it is and
the answer read like a logged response; the feedback then carries that
prediction as its own (:attr:`Event.embedded`), which the join uses only
when no logged response of the puid matches (docs/semantics.md). A logged
response still wins, so nothing is counted twice.

Calls have a timeout and a bound on how many run at once. A feedback whose
prediction cannot be had (no request, refused, timed out, unreadable) goes
on without one and is counted in ``unresolved`` by reason; it never waits
longer than the timeout.

Configuration: ``KEY=URL`` entries, where ``KEY`` is ``predictor``,
``deployment/predictor`` or ``namespace/deployment/predictor`` (the most
specific that matches wins), e.g. ``iris/default=http://iris-default:9000/predict``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import orjson

from feedback_stream.decode import DecodeError, decode_attributes
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.payload import inflate

__all__ = ["PredictionResolver", "parse_prediction_urls"]

_log = logging.getLogger(__name__)


def parse_prediction_urls(entries: Iterable[str]) -> dict[tuple[str, ...], str]:
    """``KEY=URL`` entries as ``{(namespace?, deployment?, predictor): url}``.

    Raises:
        ValueError: an entry without ``=``, an empty key or URL, a key of more
            than three parts, or a URL that is not ``http(s)://``.
    """
    urls: dict[tuple[str, ...], str] = {}
    for entry in entries:
        key, sep, url = entry.partition("=")
        key, url = key.strip(), url.strip()
        if not sep or not key or not url:
            raise ValueError(f"prediction URL {entry!r}: expected KEY=URL")
        parts = tuple(key.split("/"))
        if len(parts) > 3 or not all(parts):
            raise ValueError(
                f"prediction URL {entry!r}: KEY is predictor, deployment/predictor or "
                "namespace/deployment/predictor"
            )
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"prediction URL {entry!r}: the URL must be http:// or https://")
        urls[parts] = url
    return urls


class PredictionResolver:
    """Asks a predictor's own prediction URL for the prediction of an orphan feedback.

    Args:
        urls: from :func:`parse_prediction_urls`.
        timeout_s: the most one call may take, seconds.
        concurrency: calls in flight at most; more wait their turn.
    """

    def __init__(
        self, urls: Mapping[tuple[str, ...], str], timeout_s: float, concurrency: int
    ) -> None:
        if timeout_s <= 0 or concurrency < 1:
            raise ValueError("timeout_s must be positive and concurrency at least 1")
        self._urls = dict(urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.resolved = 0
        """Feedback that got its prediction from the model."""
        self.unresolved: Counter[str] = Counter()
        """Feedback whose prediction could not be had, by reason."""

    def url_for(self, key: ModelKey) -> str | None:
        """The prediction URL configured for a feedback naming ``key``, if any."""
        for parts in (
            (key.namespace, key.deployment, key.predictor),
            (key.deployment, key.predictor),
            (key.predictor,),
        ):
            url = self._urls.get(parts)
            if url is not None:
                return url
        return None

    def wants(self, event: Event) -> bool:
        """Whether ``event`` is feedback this resolver could give a prediction to."""
        return (
            event.kind is EventKind.FEEDBACK
            and event.embedded is None
            and self.url_for(event.key) is not None
        )

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def resolve(self, event: Event, body: bytes | str | Any) -> Event:
        """``event`` with the model's prediction of its ``request`` as its own; else as is.

        ``body`` is the feedback's payload as received (bytes, text, or parsed).
        Never raises: what went wrong is counted in :attr:`unresolved`.
        """
        url = self.url_for(event.key)
        if url is None:
            return event
        request = _request_of(body)
        if request is None:
            self.unresolved["no_request"] += 1
            return event
        try:
            prediction = await self._predict(url, request)
        except TimeoutError:
            return self._fail(event, "timeout", url)
        except aiohttp.ClientError as exc:
            return self._fail(event, "unreachable", url, exc)
        if isinstance(prediction, str):
            return self._fail(event, prediction, url)
        decoded = decode_attributes(
            {"type": "io.seldon.serving.inference.response", "requestid": event.puid},
            prediction,
            event.time,
            event.position or SourcePosition("resolver", 0, 0),
        )
        if isinstance(decoded, DecodeError):
            return self._fail(event, "bad_prediction", url, decoded)
        self.resolved += 1
        return replace(event, embedded=decoded.classes, embedded_names=decoded.names)

    async def _predict(self, url: str, request: Any) -> bytes | str:
        """The model's answer, or a reason (``status_<code>``) why there is none."""
        session = self._session
        if session is None:
            await self.start()
            session = self._session
        assert session is not None
        async with self._slots, session.post(url, data=orjson.dumps(request), headers=_JSON) as r:
            answer = await r.read()
            if r.status >= 300:
                return f"status_{r.status // 100}xx"
            return answer

    def _fail(self, event: Event, reason: str, url: str, detail: object = None) -> Event:
        self.unresolved[reason] += 1
        _log.debug("no prediction for feedback %s from %s: %s %s", event.puid, url, reason, detail)
        return event


_JSON = {"Content-Type": "application/json"}


def _request_of(body: bytes | str | Any) -> Any:
    """The ``request`` a feedback payload carries, or ``None``."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = orjson.loads(inflate(bytes(body)))
        except (orjson.JSONDecodeError, ValueError):
            return None
    elif isinstance(body, str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    request = body.get("request") if isinstance(body, dict) else None
    return request if isinstance(request, dict) and request else None
