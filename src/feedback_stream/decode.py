"""Turn one record, in any of the encodings of EVENTS.md §1, into an :class:`Event`.

Every source calls one of three entry points: :func:`decode_kafka_record`
(a consumed Kafka record, or a replay line), :func:`decode_http` (an HTTP
CloudEvent, binary or structured) and :func:`decode_attributes` (CloudEvent
attributes and data already separated, as Elasticsearch history holds them).

Nothing raises out of this module: a record that cannot be read becomes a
:class:`DecodeError` whose ``code`` is a short, bounded label (for metrics
and dead letters) and whose ``reason`` tells a person which field was wrong
and what was expected. Internally a private exception carries the error up
from wherever the payload walk finds it, because threading error returns
through the row readers would cost more than it clarifies.

The per-record path checks plain dicts by hand and parses each value once
with orjson: pydantic only runs on a structured CloudEvent envelope that is
malformed, to word the error. A Kafka record's headers are read in one
comprehension and only the attributes the join needs are looked up. Bounded
memo tables share the model keys, class names and small class tuples that
millions of events repeat, so that pending puids point at one copy.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from feedback_stream.cloudevent_envelope import StructuredEvent
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition, new_event
from feedback_stream.outcomes import UNCLASSIFIED
from feedback_stream.payload import (
    embedded_prediction,
    holds_no_classes,
    inflate,
    read_reward,
    v2_response_names,
)

__all__ = [
    "EVENT_TYPES",
    "DecodeError",
    "decode_attributes",
    "decode_http",
    "decode_kafka_record",
    "parse_ce_time",
    "read_classes",
    "read_rows",
]

EVENT_TYPES: Final[Mapping[str, EventKind]] = {
    "io.seldon.serving.inference.request": EventKind.REQUEST,
    "io.seldon.serving.inference.response": EventKind.RESPONSE,
    "io.seldon.serving.feedback": EventKind.FEEDBACK,
    "org.kubeflow.serving.inference.request": EventKind.REQUEST,
    "org.kubeflow.serving.inference.response": EventKind.RESPONSE,
    "org.kubeflow.serving.feedback": EventKind.FEEDBACK,
}
"""CloudEvent types we read, Seldon's and KServe's, and what each one is."""

_KSERVE_PREFIX: Final = "org.kubeflow."
_FEEDBACK_TYPES: Final = frozenset(
    t for t, kind in EVENT_TYPES.items() if kind is EventKind.FEEDBACK
)
"""A feedback's model filter is its ``modelid`` only: a KServe ``component`` names the
part of a service that logged a prediction, which a V2 body may rename."""
_STRUCTURED: Final = "application/cloudevents"
_NUMBER_TYPES: Final = (int, float, bool)


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a record is not a usable event.

    ``code`` is one of a small fixed set (``missing_puid``, ``missing_type``,
    ``unknown_type``, ``bad_json``, ``bad_envelope``, ``bad_header``,
    ``bad_record``, ``unsupported_content_type``, ``bad_payload``,
    ``non_numeric``, ``not_classifiable``, ``bad_reward``, ``row_mismatch``,
    ``empty_value``) so it can label a metric; ``reason`` is for people.
    ``event_type`` and ``puid`` are filled in when they were readable, to
    help find the producer of a bad record.
    """

    reason: str
    code: str
    position: SourcePosition | None = None
    event_type: str | None = None
    puid: str | None = None

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position is not None else ""
        return f"{where}{self.code}: {self.reason}"


class _Invalid(Exception):
    """Carries a code and reason from deep in the payload walk to the entry point."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------- entry points


def decode_kafka_record(
    headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes | None]],
    value: Any,
    timestamp_ms: int | float,
    position: SourcePosition,
) -> Event | DecodeError:
    """Decode a consumed Kafka record (any of the three Kafka encodings).

    ``headers`` is a mapping or aiokafka's list of ``(name, bytes)``.
    ``value`` is the raw record value (bytes), or, from a replay file, the
    value already parsed as JSON, or a string where it was not JSON. The
    record timestamp is the event time (EVENTS.md §4), whatever ``ce_time``
    says.
    """
    time = timestamp_ms / 1000.0
    try:
        lowered = _lower_headers(headers)
        get = lowered.get
        content_type = get("content-type")
        if content_type is not None and content_type.lower().startswith(_STRUCTURED):
            return _decode_structured(value, time, position, content_type)
        if "ce_type" in lowered or "ce_id" in lowered:
            declared = get("ce_datacontenttype")
            request_id = get("ce_x-request-id")
            return _event_from(
                lowered,
                _KAFKA_CE,
                content_type if declared is None else declared,
                get("x-request-id") if request_id is None else request_id,
                value,
                time,
                position,
            )
        # Seldon's executor logging straight to Kafka: attribute names unprefixed.
        return _event_from(
            lowered,
            _PLAIN,
            get("datacontenttype") if content_type is None else content_type,
            get("x-request-id"),
            value,
            time,
            position,
        )
    except _Invalid as exc:
        return DecodeError(exc.reason, exc.code, position)
    except Exception as exc:  # the core never lets a record crash the stream
        return _unreadable(exc, position)


def decode_http(
    headers: Mapping[str, str],
    body: bytes | str | dict[str, Any],
    arrival_time: float,
    position: SourcePosition,
) -> Event | DecodeError:
    """Decode an HTTP CloudEvent, binary (``Ce-*`` headers) or structured mode.

    The arrival time is the event time over HTTP (EVENTS.md §4). ``body`` is
    the raw body, or a structured event already parsed (one of a batch).
    """
    try:
        lowered = _lower_headers(headers)
        content_type = lowered.get("content-type")
        if content_type is not None and content_type.lower().startswith(_STRUCTURED):
            return _decode_structured(body, arrival_time, position, content_type)
        if _looks_structured(lowered, body):
            # A structured event sent as plain JSON (the CloudEvents SDKs accept it too).
            return _decode_structured(body, arrival_time, position, "application/json")
        declared = lowered.get("ce-datacontenttype")
        request_id = lowered.get("ce-x-request-id")
        return _event_from(
            lowered,
            _HTTP_CE,
            content_type if declared is None else declared,
            lowered.get("x-request-id") if request_id is None else request_id,
            body,
            arrival_time,
            position,
        )
    except _Invalid as exc:
        return DecodeError(exc.reason, exc.code, position)
    except Exception as exc:  # the core never lets a record crash the stream
        return _unreadable(exc, position)


def _looks_structured(headers: Mapping[str, str], body: bytes | str | dict[str, Any]) -> bool:
    """A body with ``specversion`` and no ``Ce-*`` attributes: a structured CloudEvent.

    Binary mode always carries ``Ce-Specversion`` and ``Ce-Type``; without
    them, a JSON object body naming its ``specversion`` is the event itself.
    """
    if "ce-specversion" in headers or "ce-type" in headers or isinstance(body, dict):
        return False
    marker = b'"specversion"' if isinstance(body, bytes | bytearray) else '"specversion"'
    return marker in body and body.lstrip()[:1] in (b"{", "{")  # type: ignore[operator]


def decode_attributes(
    attributes: Mapping[str, str],
    data: Any,
    time: float,
    position: SourcePosition,
) -> Event | DecodeError:
    """Decode CloudEvent attributes (lower-case, unprefixed) and their data.

    For sources that have already taken the event apart, such as the
    request logger's Elasticsearch documents. ``data`` is bytes, a JSON
    string, or the parsed payload.
    """
    try:
        attrs = _lower_headers({k: str(v) for k, v in attributes.items()})
        return _event_from(
            attrs,
            _PLAIN,
            attrs.get("datacontenttype"),
            attrs.get("x-request-id"),
            data,
            time,
            position,
        )
    except _Invalid as exc:
        return DecodeError(exc.reason, exc.code, position)
    except Exception as exc:  # the core never lets a record crash the stream
        return _unreadable(exc, position)


def _unreadable(exc: Exception, position: SourcePosition) -> DecodeError:
    return DecodeError(f"unreadable record ({type(exc).__name__}: {exc})", "bad_record", position)


def parse_ce_time(text: str) -> float | None:
    """Parse an RFC 3339 ``ce-time`` (nanosecond digits allowed) into epoch seconds.

    Go's CloudEvents SDK writes nine fractional digits, which
    :meth:`datetime.fromisoformat` refuses, so the fraction is read apart.
    Returns ``None`` for text that is not a timestamp.
    """
    text = text.strip()
    if not text:
        return None
    head, fraction = text, 0.0
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        digits = text[dot + 1 : end]
        if not digits:
            return None
        fraction = int(digits) / 10 ** len(digits)
        head = text[:dot] + text[end:]
    if head.endswith(("Z", "z")):
        head = head[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(head)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() + fraction


# ---------------------------------------------------------------- envelope


def _lower_headers(
    headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes | None]],
) -> dict[str, str]:
    """Header names in lower case, values as text; later duplicates win.

    aiokafka hands over a tuple of ``(name, bytes)`` (its ``ConsumerRecord``
    holds ``tuple(record.headers)``) whose names producers write in lower
    case: that case is read in one tight loop (header reading dominated
    decoding). Anything else (upper-case names, ``None`` values, text that
    is not UTF-8) goes through the general loop, which also produces the
    precise error.
    """
    if type(headers) is tuple or type(headers) is list:
        fast: dict[str, str] = {}
        known = _LOWER_NAMES
        try:
            for item in headers:
                if type(item) is not tuple or len(item) != 2:
                    break  # aiokafka's are pairs; anything else, the general loop
                name, raw = item[0], item[1]
                if not isinstance(raw, bytes) or not isinstance(name, str):
                    break
                # Typed bytes, compiled (mypyc), this is a direct UTF-8 decode, not a
                # method lookup and call per header. The insertion hashes the name
                # (the hash is kept in the string), so the probe after it is cheap.
                fast[name] = raw.decode("utf-8")
                if name not in known:  # producers use a handful of names
                    if name != name.lower():
                        break
                    if len(known) < _KEYS_MAX:
                        known.add(name)
            else:
                return fast
        except (TypeError, ValueError):  # UnicodeDecodeError is a ValueError
            pass
    elif type(headers) is dict and all(type(v) is str and v.isascii() for v in headers.values()):
        # The replay (and HTTP) fast path: a plain dict of ASCII strings.
        return {name.lower(): text for name, text in headers.items()}
    items = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    for name, raw in items:
        if raw is None:
            continue
        if isinstance(raw, bytes | bytearray | memoryview):
            try:
                text = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                if _is_attribute(name):
                    raise _Invalid("bad_header", f"header {name!r} is not UTF-8 text") from None
                continue  # a header we never read (a trace id, a user agent): ignored
        elif isinstance(raw, str):
            if not raw.isascii() and not _is_utf8(raw):
                # aiohttp hands over undecodable header bytes as lone surrogates, which
                # no exposition (Prometheus text, JSON) can carry: refused, never stored.
                if _is_attribute(name):
                    raise _Invalid("bad_header", f"header {name!r} is not UTF-8 text")
                continue
            text = raw
        else:
            raise _Invalid("bad_header", f"header {name!r} must be a string, got {_kind(raw)}")
        lowered[name.lower()] = text
    return lowered


_LOWER_NAMES: set[str] = set()
"""Header names seen to be in lower case already (producers use a handful)."""

_ATTRIBUTES: Final = frozenset(
    (
        "type", "id", "source", "specversion", "time", "requestid", "namespace",
        "inferenceservicename", "endpoint", "modelid", "component", "datacontenttype",
        "content-type", "x-request-id",
    )
)  # fmt: skip
"""Unprefixed attribute names an event is read from (Kafka's plain encoding, ES history)."""


def _is_attribute(name: str) -> bool:
    """Whether a header can carry a CloudEvent attribute: ``ce-*``, ``ce_*`` or a plain name."""
    lowered = name.lower()
    return lowered.startswith(("ce-", "ce_")) or lowered in _ATTRIBUTES


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode_structured(
    value: Any, time: float, position: SourcePosition, content_type: str
) -> Event | DecodeError:
    if "batch" in content_type.lower():
        raise _Invalid(
            "unsupported_content_type",
            f"content-type {content_type!r}: batched CloudEvents are not supported, "
            "send one event per record",
        )
    envelope = _parse_json(value, "the structured CloudEvent")
    if not isinstance(envelope, dict):
        raise _Invalid(
            "bad_envelope", f"a structured CloudEvent must be a JSON object, got {_kind(envelope)}"
        )
    attrs, data, data_base64 = _envelope(envelope)
    if data_base64 is not None:
        try:
            data = base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid("bad_envelope", "data_base64 is not valid base64") from None
    elif isinstance(data, str):
        # Some producers put the JSON payload in as a string: read it as the body.
        data = data.encode("utf-8")
    return _event_from(
        attrs, _PLAIN, attrs.get("datacontenttype"), attrs.get("x-request-id"), data, time, position
    )


_OPTIONAL_TEXT: Final = ("id", "source", "time", "datacontenttype", "data_base64")
_ENVELOPE_FIELDS: Final = frozenset(("specversion", "type", "data", *_OPTIONAL_TEXT))


def _envelope(envelope: dict[str, Any]) -> tuple[dict[str, str], Any, str | None]:
    """The attributes, data and ``data_base64`` of a structured CloudEvent.

    A well-formed envelope (text where the spec wants text) is read by hand;
    pydantic (:class:`~feedback_stream.cloudevent_envelope.StructuredEvent`)
    only runs to word the error of one that is not, so the common case skips
    building a model per record.
    """
    specversion = envelope.get("specversion")
    ce_type = envelope.get("type")
    if (
        type(specversion) is not str
        or type(ce_type) is not str
        or any(
            (value := envelope.get(name)) is not None and type(value) is not str
            for name in _OPTIONAL_TEXT
        )
    ):
        return _validated_envelope(envelope)
    attrs: dict[str, str] = {"specversion": specversion, "type": ce_type}
    ce_id = envelope.get("id")
    if ce_id is not None:
        attrs["id"] = ce_id
    source = envelope.get("source")
    if source is not None:
        attrs["source"] = source
    content_type = envelope.get("datacontenttype")
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    for name, extra in envelope.items():
        if name in _ENVELOPE_FIELDS or extra is None or isinstance(extra, dict | list):
            continue
        attrs[name.lower()] = _attribute_text(extra)
    return attrs, envelope.get("data"), envelope.get("data_base64")


def _validated_envelope(envelope: dict[str, Any]) -> tuple[dict[str, str], Any, str | None]:
    try:
        event = StructuredEvent.model_validate(envelope)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "envelope"
        raise _Invalid(
            "bad_envelope", f"structured CloudEvent field {field!r}: {first['msg']}"
        ) from None
    attrs: dict[str, str] = {"specversion": event.specversion, "type": event.type}
    if event.id is not None:
        attrs["id"] = event.id
    if event.source is not None:
        attrs["source"] = event.source
    if event.datacontenttype is not None:
        attrs["datacontenttype"] = event.datacontenttype
    for name, extra in (event.model_extra or {}).items():
        if extra is None or isinstance(extra, dict | list):
            continue
        attrs[name.lower()] = _attribute_text(extra)
    return attrs, event.data, event.data_base64


def _attribute_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class _AttributeNames:
    """Where one encoding keeps the attributes an event is read from."""

    type: str
    id: str
    source: str
    requestid: str
    namespace: str
    deployment: str
    predictor: str
    model: str
    component: str

    @classmethod
    def prefixed(cls, prefix: str) -> _AttributeNames:
        return cls(
            *(
                prefix + name
                for name in (
                    "type",
                    "id",
                    "source",
                    "requestid",
                    "namespace",
                    "inferenceservicename",
                    "endpoint",
                    "modelid",
                    "component",
                )
            )
        )


_PLAIN: Final = _AttributeNames.prefixed("")
_KAFKA_CE: Final = _AttributeNames.prefixed("ce_")
_HTTP_CE: Final = _AttributeNames.prefixed("ce-")


def _event_from(
    attrs: dict[str, str],
    names: _AttributeNames,
    content_type: str | None,
    request_id: str | None,
    data: Any,
    time: float,
    position: SourcePosition,
) -> Event:
    """Read the event of ``attrs`` (header or attribute names as ``names`` says).

    Looking up the few attributes we use, rather than first copying every
    prefixed header into a dict of unprefixed names, is a measurable part
    of a record's cost.
    """
    get = attrs.get
    model = get(names.model)
    ce_type = get(names.type)
    component = get(names.component) if ce_type not in _FEEDBACK_TYPES else None
    return _event(
        ce_type,
        get(names.id),
        get(names.source),
        get(names.requestid),
        request_id,
        _model_key(
            get(names.namespace, ""),
            get(names.deployment, ""),
            get(names.predictor, ""),
            model or component or "",
        ),
        content_type,
        data,
        time,
        position,
        not model,
    )


def _event(
    ce_type: str | None,
    ce_id: str | None,
    ce_source: str | None,
    requestid: str | None,
    request_id: str | None,
    key: ModelKey,
    content_type: str | None,
    data: Any,
    time: float,
    position: SourcePosition,
    model_unnamed: bool,
) -> Event:
    if not ce_type:
        raise _Invalid(
            "missing_type",
            "no event type: expected a 'type' attribute (ce_type / Ce-Type / type header)",
        )
    kind = EVENT_TYPES.get(ce_type)
    if kind is None:
        raise _Invalid(
            "unknown_type",
            f"event type {ce_type!r} is not one of {', '.join(sorted(EVENT_TYPES))}",
        )
    ce_id = ce_id or None
    puid = requestid or None
    if puid is None and ce_type.startswith(_KSERVE_PREFIX):
        puid = ce_id
    if puid is None:
        puid = request_id or None
    if puid is None:
        raise _Invalid(
            "missing_puid",
            f"{kind.value} event has no join key: expected a 'requestid' attribute "
            "(the seldon-puid), a KServe CloudEvent id, or an x-request-id header",
        )
    identity: tuple[str, ...]
    if ce_id is not None:
        # CloudEvents identity is (source, id): a broker fanning one event out to two
        # services makes both log the same id from different sources.
        identity = (ce_type, ce_source, ce_id) if ce_source else (ce_type, ce_id)
    else:
        identity = ("@", position.topic, str(position.partition), str(position.offset))
    if content_type is not None and _is_binary_content(content_type):
        raise _Invalid(
            "unsupported_content_type",
            f"content-type {content_type!r} (gRPC traffic) cannot be read as JSON",
        )
    try:
        if kind is EventKind.REQUEST:
            # A request contributes only its time and model key: its payload is never read.
            return new_event(kind, puid, key, time, identity, None, None, position, None)
        payload = _parse_json(data, _PAYLOAD[kind])
        if kind is EventKind.RESPONSE:
            classes, names, rows = _response_classes(payload, "response")
            alias = None
            if ce_type.startswith(_KSERVE_PREFIX):
                model_name, body_id = v2_response_names(payload)
                if model_name is not None and model_unnamed:
                    # KServe's agent names only the component: the body names the model.
                    key = _model_key(key.namespace, key.deployment, key.predictor, model_name)
                if body_id != puid:
                    alias = body_id
            return new_event(
                kind, puid, key, time, identity, classes, None, position, names, rows, alias
            )
        truth, reward, truth_names = _read_feedback(payload)
        embedded, embedded_names = None, None
        message, named_puid = embedded_prediction(payload)
        if message is not None:
            embedded, embedded_names, _ = _response_classes(message, "feedback.response")
        if named_puid is not None:
            # The embedded response names the original request; the logger's own id may be new.
            puid = named_puid
        return new_event(
            kind,
            puid,
            key,
            time,
            identity,
            truth,
            reward,
            position,
            truth_names,
            None,
            None,
            embedded,
            embedded_names,
        )
    except _Invalid as exc:
        exc.reason = f"{ce_type} {puid}: {exc.reason}"
        raise


def _response_classes(
    payload: Any, what: str
) -> tuple[tuple[str, ...], tuple[str, ...] | None, list[Any] | None]:
    """The classes of a response message, the names they were read in, and its rows.

    A Seldon ``jsonData`` / ``strData`` / ``binData`` response is one row
    whose class is unknown (:data:`~feedback_stream.outcomes.UNCLASSIFIED`),
    without rows to read scores from.
    """
    if holds_no_classes(payload):
        return _UNCLASSIFIED_ROW, None, None
    classes, rows = read_rows(payload, what)
    names = _given_names(payload)
    if names is not None:
        for predicted in classes:
            if predicted not in names:
                return classes, None, rows  # the names label columns of scalar rows, not classes
    return classes, names, rows


_UNCLASSIFIED_ROW: Final = (UNCLASSIFIED,)
_PAYLOAD: Final = {kind: f"the {kind.value} payload" for kind in EventKind}
_BINARY_CONTENT: dict[str, bool] = {}


def _is_binary_content(content_type: str) -> bool:
    """Whether a content type is protobuf / gRPC (memoised: producers use a handful)."""
    binary = _BINARY_CONTENT.get(content_type)
    if binary is None:
        lowered = content_type.lower()
        binary = "protobuf" in lowered or "grpc" in lowered
        if len(_BINARY_CONTENT) < _KEYS_MAX:
            _BINARY_CONTENT[content_type] = binary
    return binary


_KEYS: dict[tuple[str, str, str, str], ModelKey] = {}
_ROWS: dict[tuple[str, ...], tuple[str, ...]] = {}
_KEYS_MAX: Final = 10_000


def _model_key(namespace: str, deployment: str, predictor: str, model: str) -> ModelKey:
    """One shared :class:`ModelKey` per label set: decoding builds millions, models are few."""
    parts = (namespace, deployment, predictor, model)
    key = _KEYS.get(parts)
    if key is None:
        key = ModelKey(*(_intern(p) for p in parts))
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[parts] = key
    return key


def _parse_json(data: Any, what: str) -> Any:
    if data is None:
        raise _Invalid("empty_value", f"{what} is empty")
    if isinstance(data, bytes | bytearray | memoryview | str):
        if len(data) == 0:
            raise _Invalid("empty_value", f"{what} is empty")
        if data[:2] == b"\x1f\x8b" and not isinstance(data, str):
            # gzip whatever the headers say (KServe's agent logs compressed bodies unlabelled).
            try:
                data = inflate(bytes(data))
            except ValueError as exc:
                raise _Invalid("bad_json", f"{what} is gzip that cannot be read: {exc}") from None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _Invalid("bad_json", f"{what} is not valid JSON: {exc}") from None
    return data


# ---------------------------------------------------------------- payloads


def _given_names(message: Any) -> tuple[str, ...] | None:
    """The non-empty ``data.names`` of a Seldon message, shared, or ``None``."""
    data = message.get("data") if isinstance(message, dict) else None
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names:
        return None
    return _shared_names(names)


def _shared_names(names: list[Any]) -> tuple[str, ...]:
    """``names`` as one shared tuple of interned text, found by value when seen before.

    Every response of a model repeats its names: a lookup of the list's
    tuple replaces converting and interning each name again. Only tuples of
    text are keys, so a list holding numbers never matches and is converted.
    """
    try:
        shared = _ROWS.get(tuple(names))
    except TypeError:  # an unhashable name (a list or object): converted below
        shared = None
    if shared is not None:
        return shared
    given = tuple(_intern(str(n)) for n in names)
    shared = _ROWS.get(given)
    if shared is not None:
        return shared
    if len(_ROWS) < _KEYS_MAX:
        _ROWS[given] = given
    return given


def _read_feedback(
    payload: Any,
) -> tuple[tuple[str, ...] | None, float | None, tuple[str, ...] | None]:
    if not isinstance(payload, dict):
        raise _Invalid(
            "bad_payload",
            f"feedback must be a JSON object with 'reward' and/or 'truth', got {_kind(payload)}",
        )
    try:
        reward = read_reward(payload.get("reward"))
    except ValueError as exc:
        raise _Invalid("bad_reward", str(exc)) from None
    truth = payload.get("truth")
    if truth is None:
        return None, reward, None
    if not isinstance(truth, dict):
        raise _Invalid("bad_payload", f"feedback.truth must be a JSON object, got {_kind(truth)}")
    if not _has_rows(truth):
        # {"meta": ...} or {}: the seed's "correct" feedback gives no truth.
        return None, reward, None
    return read_classes(truth, "truth"), reward, _given_names(truth)


def _has_rows(message: dict[str, Any]) -> bool:
    data = message.get("data")
    if isinstance(data, dict) and not data.keys() <= {"names", "meta"}:
        return True
    return any(
        name in message
        for name in ("predictions", "outputs", "instances", "strData", "jsonData", "binData")
    )


def read_classes(message: Any, what: str) -> tuple[str, ...]:
    """The class of each row of a response or truth message (EVENTS.md §2).

    Seldon ``data`` (``ndarray`` or ``tensor``, with ``names``), TF / KServe
    V1 ``predictions`` (or ``instances``) and V2 ``outputs`` (the first one,
    reshaped). Raises the module's private error, so call it through an
    entry point unless you catch ``Exception``.
    """
    return read_rows(message, what)[0]


def read_rows(message: Any, what: str) -> tuple[tuple[str, ...], list[Any]]:
    """The class of each row (as :func:`read_classes`) and the rows themselves.

    The rows are the payload's own list (reshaped for tensors): per row a
    number, string or boolean, or a list of numbers. They are what a
    model's kind reads scores from (:mod:`feedback_stream.model_kinds`).
    """
    if not isinstance(message, dict):
        raise _Invalid("bad_payload", f"{what} must be a JSON object, got {_kind(message)}")
    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise _Invalid("bad_payload", f"{what}.data must be an object, got {_kind(data)}")
        names = data.get("names")
        if names is not None and not isinstance(names, list):
            raise _Invalid("bad_payload", f"{what}.data.names must be a list, got {_kind(names)}")
        shared = _shared_names(names) if names else None
        if "ndarray" in data:
            rows = data["ndarray"]
            return _rows_classes(rows, shared, what, ".data.ndarray"), rows
        if "tensor" in data:
            rows = _tensor_rows(data["tensor"], f"{what}.data.tensor")
            return _rows_classes(rows, shared, what, ".data.tensor"), rows
        for other in ("tftensor", "strData", "jsonData", "binData"):
            if other in data:
                raise _Invalid("not_classifiable", f"{what}.data.{other} holds no classes")
        raise _Invalid(
            "bad_payload", f"{what}.data has none of 'ndarray' or 'tensor' to read classes from"
        )
    if "predictions" in message:
        rows = message["predictions"]
        return _rows_classes(rows, None, what, ".predictions"), rows
    if "outputs" in message:
        return _v2_rows(message["outputs"], f"{what}.outputs")
    if "instances" in message:
        rows = message["instances"]
        return _rows_classes(rows, None, what, ".instances"), rows
    for other in ("strData", "jsonData", "binData"):
        if other in message:
            raise _Invalid(
                "not_classifiable", f"{what}.{other} holds no classes (not a numeric batch)"
            )
    raise _Invalid(
        "bad_payload",
        f"{what} has no 'data', 'predictions' or 'outputs' to read classes from",
    )


def _tensor_rows(tensor: Any, what: str) -> list[Any]:
    if not isinstance(tensor, dict):
        raise _Invalid("bad_payload", f"{what} must be an object, got {_kind(tensor)}")
    shape = tensor.get("shape")
    values = tensor.get("values")
    if not isinstance(values, list):
        raise _Invalid("bad_payload", f"{what}.values must be a list, got {_kind(values)}")
    return _reshape(values, shape, what)


def _v2_rows(outputs: Any, what: str) -> tuple[tuple[str, ...], list[Any]]:
    if not isinstance(outputs, list) or not outputs:
        raise _Invalid("bad_payload", f"{what} must be a non-empty list of tensors")
    first = outputs[0]
    if not isinstance(first, dict):
        raise _Invalid("bad_payload", f"{what}[0] must be an object, got {_kind(first)}")
    data = first.get("data")
    if not isinstance(data, list):
        raise _Invalid("bad_payload", f"{what}[0].data must be a list, got {_kind(data)}")
    flat = _flatten(data, f"{what}[0].data")
    rows = _reshape(flat, first.get("shape"), f"{what}[0]")
    return _rows_classes(rows, None, what, "[0].data"), rows


def _flatten(data: list[Any], what: str) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _reshape(values: list[Any], shape: Any, what: str) -> list[Any]:
    if shape is None:
        return values
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _Invalid(
            "bad_payload", f"{what}.shape must be a list of non-negative integers, got {shape!r}"
        )
    size = math.prod(shape) if shape else 1
    if size != len(values):
        raise _Invalid(
            "bad_payload",
            f"{what}.shape {shape} needs {size} values, got {len(values)}",
        )
    if len(shape) <= 1:
        return values
    inner = [d for d in shape[1:] if d != 1]
    if len(inner) > 1:
        raise _Invalid(
            "not_classifiable",
            f"{what}.shape {shape}: rows of rank {len(inner)} have no single class",
        )
    width = size // shape[0] if shape[0] else 0
    return [values[i : i + width] for i in range(0, size, width)] if width else []


def _rows_classes(
    rows: Any, names: tuple[str, ...] | None, message: str, field: str
) -> tuple[str, ...]:
    """The class of each row; ``message + field`` names the rows in errors.

    The name is passed in two parts and joined only when an error needs it:
    formatting it for every record cost more than reading a one-row batch.
    """
    if not isinstance(rows, list):
        raise _Invalid("bad_payload", f"{message}{field} must be a list of rows, got {_kind(rows)}")
    if not rows:
        raise _Invalid("bad_payload", f"{message}{field} has no rows")
    classes: list[str] = []
    for index, row in enumerate(rows):
        if isinstance(row, list):
            width = len(row)
            if width >= 2:
                classes.append(_argmax_class(row, names, message, field, index))
            elif width == 1:
                classes.append(_scalar_class(row[0], f"{message}{field}[{index}][0]"))
            else:
                raise _Invalid("bad_payload", f"{message}{field}[{index}] is an empty row")
        else:
            classes.append(_scalar_class(row, f"{message}{field}[{index}]"))
    rows_classes = tuple(classes)
    if len(rows_classes) <= 2:
        # Small batches repeat: share one tuple per class pattern (pending puids hold them).
        shared = _ROWS.get(rows_classes)
        if shared is not None:
            return shared
        if len(_ROWS) < _KEYS_MAX:
            _ROWS[rows_classes] = rows_classes
    return rows_classes


_NUMBER_SET: Final = frozenset(_NUMBER_TYPES)
_INDEX_CLASSES: Final = tuple(sys.intern(str(index)) for index in range(256))


def _argmax_class(
    row: list[Any], names: tuple[str, ...] | None, message: str, field: str, index: int
) -> str:
    for value in row:
        if type(value) not in _NUMBER_SET:
            _non_numeric(row, f"{message}{field}[{index}]")
    best = row.index(max(row))
    if names is None:
        return _INDEX_CLASSES[best] if best < 256 else _intern(str(best))
    if len(names) != len(row):
        raise _Invalid(
            "bad_payload",
            f"{message}{field}[{index}] has {len(row)} values but names has {len(names)} entries",
        )
    return names[best]


def _non_numeric(row: list[Any], what: str) -> None:
    for position, value in enumerate(row):
        if type(value) not in _NUMBER_TYPES:
            if isinstance(value, list):
                raise _Invalid(
                    "not_classifiable",
                    f"{what}[{position}] is nested: rows deeper than 2 dimensions have no class",
                )
            raise _Invalid(
                "non_numeric",
                f"{what}[{position}] is {_kind(value)}: a row of several values must be numbers "
                "(scores), to take the index of its maximum",
            )


def _scalar_class(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return _intern(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("non_numeric", f"{what} is {value}, not a class")
        if value.is_integer():
            return _intern(str(int(value)))
        return _intern(repr(value))
    if isinstance(value, str):
        return _intern(value)
    if isinstance(value, list):
        raise _Invalid(
            "not_classifiable", f"{what} is nested: rows deeper than 2 dimensions have no class"
        )
    raise _Invalid(
        "not_classifiable", f"{what} is {_kind(value)}: expected a number, string or boolean"
    )


def _intern(text: str) -> str:
    return sys.intern(text) if len(text) <= 64 else text


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
