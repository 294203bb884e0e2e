"""Turn one Seldon request-logger document into the core's events (no I/O).

What the request logger writes (``components/seldon-request-logger``,
``default_logger.py`` + ``log_helper.py``, Seldon Core 1.2 to 1.13), and
what this module reads of it:

* **index** ``inference-log-[<SELDON_ENVIRONMENT>-]<engine>-<namespace>-
  <deployment>-<endpoint>``, ``<engine>`` being ``seldon`` or
  ``inferenceservice`` (KServe); a missing attribute is spelled
  ``unknown-namespace`` / ``unknown-inferenceservice`` /
  ``unknown-endpoint``. Names can contain ``-``, so the index name is not
  parsed for the model key; it is the fallback for the serving engine only.
* **document id** = the request id (Seldon's ``requestid``, KServe's
  CloudEvent ``id``); a request or response of ``n > 1`` rows is split into
  ``<id>-item-<i>`` documents, each with the whole payload and its own row
  in ``instance``. The feedback of a batch is not split: it lands in
  ``<id>``.
* **top level** ``RequestId`` (the puid, also in item documents),
  ``Ce-Namespace``, ``Ce-Inferenceservicename``, ``Ce-Endpoint``,
  ``Ce-Modelid`` (Seldon only), ``ServingEngine`` and ``@timestamp``. Each
  upsert merges into the document, so these hold the last writer's values.
* **sub-objects** ``request`` and ``response`` (``payload`` = the body as
  received, plus ``instance``, ``elements``, ``names``, ``dataType``,
  ``ce-time``, ``ce-source``) and ``feedback`` (the feedback body's own
  fields ``reward``, ``truth``, ``request``, ``response``, plus ``ce-time``,
  ``ce-source``). A later feedback for the same puid merges over the earlier
  one, so the document holds the last feedback.

One document gives up to three events, one per sub-object. Events of the
``n`` item documents of one batch are equal (same identity): the history
reader drops the repeats. Event identities start with
:data:`HISTORY_IDENTITY_TAG`, so the join store can tell a part that came
from history from one read live (docs/elasticsearch.md, "Overlap with the
live stream").
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from feedback_stream.decode import DecodeError, decode_attributes, parse_ce_time
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.outcomes import TimeBasis

__all__ = [
    "HISTORY_IDENTITY_TAG",
    "SOURCE_FIELDS",
    "TIME_FIELDS",
    "DocumentEvents",
    "document_events",
    "history_identity",
    "parse_es_time",
]

HISTORY_IDENTITY_TAG: Final = "es-history"
"""First element of the identity of every event read from Elasticsearch history."""

SOURCE_FIELDS: Final = (
    "RequestId",
    "ServingEngine",
    "Ce-Namespace",
    "Ce-Inferenceservicename",
    "Ce-Endpoint",
    "Ce-Modelid",
    "@timestamp",
    "request.ce-time",
    "response.ce-time",
    "response.payload",
    "feedback",
)
"""The ``_source`` fields the converter reads; the reader fetches only these.

Leaving out ``request.payload``, ``instance`` and ``elements`` keeps pages
small: the features are never needed to compute the metrics.
"""

TIME_FIELDS: Final = ("@timestamp", "request.ce-time", "response.ce-time", "feedback.ce-time")
"""Every date a document carries; a part's time is one of them."""

_POWERS_OF_TEN: Final[tuple[int, ...]] = tuple(10**n for n in range(20))
_ITEM_SUFFIX = re.compile(r"^(?P<puid>.+)-item-(?P<item>\d+)$")


@dataclass(frozen=True, slots=True)
class DocumentEvents:
    """The events of one document, and the times the history bounds look at.

    ``item`` is the row index of a ``<id>-item-<n>`` document, else None.
    ``errors`` holds the parts that gave no event, as the core's
    :class:`~feedback_stream.decode.DecodeError` (a response whose payload
    is not classifiable, a part without any time), so they are counted like
    invalid live events; the other parts still give their events.
    """

    puid: str
    key: ModelKey
    item: int | None
    events: tuple[Event, ...]
    errors: tuple[DecodeError, ...]
    request_time: float | None
    response_time: float | None
    feedback_time: float | None

    def basis_time(self, basis: TimeBasis | str) -> float | None:
        """The outcome time this document's pair would have under ``basis``.

        ``request``: the request's time, else the response's (EVENTS.md §4);
        ``feedback``: the feedback's. Whichever part is missing, the other
        times stand in, so that every document has a time to be bounded by.
        """
        first = self.request_time if self.request_time is not None else self.response_time
        if basis == TimeBasis.FEEDBACK and self.feedback_time is not None:
            return self.feedback_time
        return first if first is not None else self.feedback_time


def history_identity(kind: EventKind, puid: str, key: ModelKey) -> tuple[str, ...]:
    """The identity of a history event: one per (kind, puid, model key).

    The request logger keeps one sub-object per kind and document, so this
    is unique within the history, equal across the item documents of a
    batch, and stable across restarts.
    """
    return (
        HISTORY_IDENTITY_TAG,
        kind.value,
        puid,
        key.namespace,
        key.deployment,
        key.predictor,
        key.model,
    )


def parse_es_time(value: object) -> float | None:
    """Seconds since the epoch of an Elasticsearch date as the logger stores it.

    ``ce-time`` is RFC 3339 with up to nanoseconds (Go's ``time.RFC3339Nano``);
    ``@timestamp`` may also be Python's ``isoformat()`` (without a zone it is
    taken as UTC), or epoch milliseconds (Elasticsearch's ``epoch_millis``).
    Anything else gives None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Fast path for what Go's CloudEvents SDK writes, 2026-01-01T00:00:00.123456789Z:
    # documents of one second share the parse of their first 19 characters.
    if 20 < len(text) < 40 and text[19] == "." and text[-1] == "Z" and text[20:-1].isdigit():
        second = _second(text[:19])
        if second is not None:
            digits = text[20:-1]
            # The same arithmetic as decode.parse_ce_time, to the last bit.
            return second + int(digits) / _POWERS_OF_TEN[len(digits)]
    if text.isdigit():
        return int(text) / 1000.0
    return parse_ce_time(text)


@functools.lru_cache(maxsize=4096)
def _second(head: str) -> float | None:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` in UTC, None if it is not one."""
    if head[10] != "T":
        return None
    try:
        return datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def document_events(
    hit: Mapping[str, Any],
    position: SourcePosition,
    *,
    kserve_component: str = "predictor",
) -> DocumentEvents:
    """The events of one search hit (``_index``, ``_id``, ``_source``). Never raises.

    Args:
        hit: a search hit of a request-logger index.
        position: where it was read (``topic`` = the index, ``offset`` = the
            hit's ordinal in the read), kept on each event and error.
        kserve_component: the ``model`` label of KServe documents; the
            request logger does not store KServe's ``component``.
    """
    index = str(hit.get("_index", ""))
    doc_id = str(hit.get("_id", ""))
    source = hit.get("_source")
    if not isinstance(source, Mapping):
        source = {}
    puid, item = _puid_and_item(source, doc_id)
    engine = _text(source, "ServingEngine") or _engine_from_index(index)
    kserve = engine == "inferenceservice"
    key = _model_key(source, kserve, kserve_component)

    events: list[Event] = []
    errors: list[DecodeError] = []
    times: dict[EventKind, float | None] = {}
    for kind in (EventKind.REQUEST, EventKind.RESPONSE, EventKind.FEEDBACK):
        part = source.get(kind.value)
        if not isinstance(part, Mapping):
            continue
        time = parse_es_time(part.get("ce-time"))
        if time is None:
            time = parse_es_time(source.get("@timestamp"))
        times[kind] = time
        if time is None:
            errors.append(
                DecodeError(
                    f"{kind.value} of {puid} has neither ce-time nor @timestamp",
                    "missing_time",
                    position,
                    _TYPES[kserve, kind],
                    puid,
                )
            )
            continue
        decoded = _part_event(kind, part, puid, key, kserve, time, position)
        if isinstance(decoded, DecodeError):
            errors.append(decoded)
        else:
            events.append(decoded)
    if not times:
        errors.append(
            DecodeError(
                f"{index}/{doc_id} has no request, response or feedback: "
                "not a request-logger document",
                "bad_record",
                position,
                None,
                puid or None,
            )
        )
    return DocumentEvents(
        puid=puid,
        key=key,
        item=item,
        events=tuple(events),
        errors=tuple(errors),
        request_time=times.get(EventKind.REQUEST),
        response_time=times.get(EventKind.RESPONSE),
        feedback_time=times.get(EventKind.FEEDBACK),
    )


# -- the document's identity and labels -------------------------------------------------


def _puid_and_item(source: Mapping[str, Any], doc_id: str) -> tuple[str, int | None]:
    """The puid (``RequestId``, else the id less an item suffix) and the item index."""
    request_id = source.get("RequestId")
    if isinstance(request_id, str) and request_id:
        suffix = doc_id[len(request_id) :] if doc_id.startswith(request_id) else ""
        item = int(suffix[len("-item-") :]) if re.fullmatch(r"-item-\d+", suffix) else None
        return request_id, item
    match = _ITEM_SUFFIX.match(doc_id)
    if match:
        return match["puid"], int(match["item"])
    return doc_id, None


def _text(source: Mapping[str, Any], field: str) -> str:
    value = source.get(field)
    return value if isinstance(value, str) else ""


def _model_key(source: Mapping[str, Any], kserve: bool, kserve_component: str) -> ModelKey:
    """The labels the live decoder gives the same model (EVENTS.md §1).

    The logger's ``Ce-Inferenceservicename`` already falls back to
    ``Ce-Modelid`` for KServe versions that did not send the former. KServe
    sends no ``modelid``; its ``component`` is not stored, so KServe
    documents take ``kserve_component`` as the model.
    """
    model = kserve_component if kserve else _text(source, "Ce-Modelid")
    return ModelKey(
        namespace=_text(source, "Ce-Namespace"),
        deployment=_text(source, "Ce-Inferenceservicename"),
        predictor=_text(source, "Ce-Endpoint"),
        model=model,
    )


def _engine_from_index(index: str) -> str:
    """``seldon`` or ``inferenceservice`` from a request-logger index name, else ``""``."""
    parts = index.split("-")
    if len(parts) >= 3 and parts[1] == "log":
        for candidate in parts[2:4]:  # after the optional SELDON_ENVIRONMENT
            if candidate in ("seldon", "inferenceservice"):
                return candidate
    return ""


# -- the parts ------------------------------------------------------------------------

_TYPES: Final[Mapping[tuple[bool, EventKind], str]] = {
    (False, EventKind.REQUEST): "io.seldon.serving.inference.request",
    (False, EventKind.RESPONSE): "io.seldon.serving.inference.response",
    (False, EventKind.FEEDBACK): "io.seldon.serving.feedback",
    (True, EventKind.REQUEST): "org.kubeflow.serving.inference.request",
    (True, EventKind.RESPONSE): "org.kubeflow.serving.inference.response",
    # KServe has no feedback type: its feedback is Seldon-shaped (EVENTS.md §1).
    (True, EventKind.FEEDBACK): "io.seldon.serving.feedback",
}


def _part_event(
    kind: EventKind,
    part: Mapping[str, Any],
    puid: str,
    key: ModelKey,
    kserve: bool,
    time: float,
    position: SourcePosition,
) -> Event | DecodeError:
    """Decode one sub-object through the core's decoder, as the live path would.

    The payload of a response is ``payload``; a feedback's body is the
    sub-object itself less the logger's ``ce-*`` fields. The identity is
    then replaced by :func:`history_identity`.
    """
    if kind is EventKind.REQUEST:
        # The decoder reads nothing of a request but its attributes: skip it.
        identity = history_identity(kind, puid, key)
        return Event(kind, puid, key, time, identity, position=position)
    attributes = {
        "type": _TYPES[kserve, kind],
        "requestid": puid,
        "namespace": key.namespace,
        "inferenceservicename": key.deployment,
        "endpoint": key.predictor,
        ("component" if kserve else "modelid"): key.model,
    }
    data: object
    if kind is EventKind.FEEDBACK:
        data = {name: value for name, value in part.items() if not name.startswith("ce-")}
    else:
        data = part.get("payload")
        if not isinstance(data, Mapping):
            return DecodeError(
                f"{position}: response of {puid} has no payload object "
                "(stored by a request logger that dropped it?)",
                "bad_payload",
                position,
                _TYPES[kserve, kind],
                puid,
            )
    decoded = decode_attributes(attributes, data, time, position)
    if isinstance(decoded, DecodeError):
        return replace(decoded, event_type=_TYPES[kserve, kind], puid=puid)
    # replace() keeps every field the decoder set (the class names too).
    return replace(decoded, identity=history_identity(kind, puid, key))
