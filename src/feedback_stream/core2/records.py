"""Decode one Seldon Core 2 Kafka record into an :class:`~feedback_stream.events.Event`.

What a record is follows from its topic (:mod:`feedback_stream.core2.topics`):
a model's (or pipeline's) ``outputs`` record is a response, an ``inputs``
record a request (it gives the request time; its payload is not read), a
record of the namespace's ``errors`` topic a failed inference
(:class:`ModelError`), and a record of the feedback topic a feedback.

Read from each record, as Core 2's model gateway writes them:

* **request id**: the ``x-request-id`` header, which the pipeline gateway
  sets on every record and the model gateway copies from a model's input
  to its output. Without it, the record key: Core 2 keys a request's
  records ``<partition>.<pipeline or model>.<request id>``, and such a key
  is read as its last part (so is an id given in that form anywhere);
* **encoding**: the ``seldon-infer-type`` header (``proto/InferModelRequest``,
  ``proto/InferModelResponse``, ``json/inferModelRequest``,
  ``json/inferModelResponse``) says protobuf or JSON. Only its ``proto`` /
  ``json`` part is used: an output record keeps its input's header, which
  may say "request". Without the header (the usual case: Core 2's gateways
  do not set it), a value starting with ``{`` is JSON and anything else
  protobuf. A value framed for a schema registry (magic byte 0, a 4-byte
  schema id, message index 0) is read past its frame;
* **payload**: protobuf values are ``inference.ModelInferResponse``
  messages of the Open Inference Protocol, decoded with classes generated
  from KServe's ``grpc_predict_v2.proto``. The first output tensor, from
  ``contents`` or ``raw_output_contents``, is turned into V2 JSON and read
  by the V2 JSON rules (:func:`feedback_stream.decode.decode_attributes`):
  the first output reshaped by its shape, one class per row, BYTES
  elements as class names;
* **labels**: ``namespace`` from the topic; ``model``: the model that
  answered (the topic's model, or the one the ``x-seldon-route`` header
  names, see :mod:`feedback_stream.core2.experiments`); ``deployment``: the
  pipeline (a pipeline topic's, or the ``pipeline`` header of a step's
  record), or the declared experiment; ``predictor``: ``default`` for an
  experiment's default, else the member's name.

Nothing raises: a record that cannot be read becomes a
:class:`~feedback_stream.decode.DecodeError` with a code and a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError as ProtobufDecodeError

from feedback_stream.core2.experiments import Experiments, routed_model
from feedback_stream.core2.grpc_predict_v2_pb2 import ModelInferResponse
from feedback_stream.core2.tensors import TensorError, first_output
from feedback_stream.core2.topics import (
    DEFAULT_FEEDBACK_TOPIC,
    DEFAULT_PREFIX,
    Core2Topic,
    TopicKind,
    parse_topic,
)
from feedback_stream.decode import DecodeError, decode_attributes
from feedback_stream.events import Event, ModelKey, SourcePosition

__all__ = [
    "INFER_TYPE_HEADER",
    "REQUEST_ID_HEADER",
    "ROUTE_HEADER",
    "Core2Decoder",
    "ModelError",
    "request_id_of",
]

REQUEST_ID_HEADER: Final = "x-request-id"
INFER_TYPE_HEADER: Final = "seldon-infer-type"
ROUTE_HEADER: Final = "x-seldon-route"
PIPELINE_HEADER: Final = "pipeline"
ERROR_HEADER: Final = "seldon-pipeline-errors"
MODEL_HEADER: Final = "seldon-model"

_RESPONSE: Final = "io.seldon.serving.inference.response"
_REQUEST: Final = "io.seldon.serving.inference.request"
_FEEDBACK: Final = "io.seldon.serving.feedback"
_COMPOSITE_KEY: Final = re.compile(r"^[0-9]+\.[^.]+\.(.+)$")
_REASON_MAX: Final = 300


@dataclass(frozen=True, slots=True)
class ModelError:
    """A failed inference, read from the namespace's errors topic.

    ``key`` labels the model that failed (its ``model`` is empty when the
    record does not name it: Core 2's pre-releases wrote the header empty);
    ``reason`` is the start of the error text Core 2 recorded.
    """

    key: ModelKey
    request_id: str | None
    reason: str
    position: SourcePosition


Item = Event | DecodeError | ModelError


def request_id_of(text: str) -> str:
    """A request id as given, or the id inside a Core 2 record key ``<partition>.<name>.<id>``."""
    match = _COMPOSITE_KEY.match(text)
    return match.group(1) if match else text


class Core2Decoder:
    """Reads Core 2 records of one installation (topic prefix) and its feedback topic.

    Args:
        prefix: Core 2's ``topicPrefix`` (default ``seldon``).
        feedback_topic: the topic feedback is produced to; empty for none.
        experiments: declared experiments, for the deployment and predictor labels.
    """

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        feedback_topic: str = DEFAULT_FEEDBACK_TOPIC,
        experiments: Experiments | None = None,
    ) -> None:
        self.prefix = prefix
        self.feedback_topic = feedback_topic
        self.experiments = experiments if experiments is not None else Experiments()

    def decode(
        self,
        topic: str,
        headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes | None]],
        key: bytes | str | None,
        value: Any,
        timestamp_ms: int | float,
        position: SourcePosition,
    ) -> Item:
        """Decode one consumed record (``value`` as bytes, or parsed JSON from a replay file)."""
        try:
            lowered, routes = _read_headers(headers)
        except ValueError as exc:
            return DecodeError(str(exc), "bad_header", position)
        time = timestamp_ms / 1000.0
        request_id = _request_id(lowered, key)
        if topic == self.feedback_topic:
            return self._feedback(lowered, request_id, value, time, position)
        where = parse_topic(topic, self.prefix)
        if where is None:
            return DecodeError(
                f"topic {topic!r} is neither a Seldon Core 2 topic of prefix {self.prefix!r} "
                f"nor the feedback topic {self.feedback_topic!r}",
                "unknown_topic",
                position,
            )
        if where.kind is TopicKind.ERRORS:
            return self._model_error(where, lowered, request_id, value, position)
        if request_id is None:
            return DecodeError(
                f"{where.kind.value} record of {where.name!r} has no x-request-id header "
                "and no key to join it by",
                "missing_puid",
                position,
            )
        attrs = self._labels(where, lowered, routes)
        attrs["requestid"] = request_id
        if where.is_request:
            attrs["type"] = _REQUEST
            return decode_attributes(attrs, None, time, position)
        attrs["type"] = _RESPONSE
        try:
            data = _response_payload(lowered.get(INFER_TYPE_HEADER), value)
        except TensorError as exc:
            return DecodeError(
                f"{where.name} response {request_id}: {exc.reason}", exc.code, position
            )
        return decode_attributes(attrs, data, time, position)

    # -- the parts -----------------------------------------------------------

    def _labels(
        self, where: Core2Topic, headers: Mapping[str, str], routes: list[str]
    ) -> dict[str, str]:
        if where.is_pipeline:
            pipeline, model = where.name, ""
            found = self.experiments.find(pipeline)
        else:
            pipeline = headers.get(PIPELINE_HEADER, "")
            if pipeline == where.name:
                pipeline = ""  # a model inferred on its own: the gateway names it as "pipeline"
            model = where.name
            if where.kind is TopicKind.MODEL_OUTPUTS:
                model = routed_model(routes) or model
            found = self.experiments.find(model, pipeline)
        deployment, predictor = found if found is not None else (pipeline, "")
        return {
            "namespace": where.namespace,
            "inferenceservicename": deployment,
            "endpoint": predictor,
            "modelid": model,
        }

    def _feedback(
        self,
        headers: Mapping[str, str],
        request_id: str | None,
        value: Any,
        time: float,
        position: SourcePosition,
    ) -> Event | DecodeError:
        if request_id is None:
            return DecodeError(
                "feedback record has no x-request-id header and no key: "
                "set either to the request id of the prediction",
                "missing_puid",
                position,
            )
        attrs = {"type": _FEEDBACK, "requestid": request_id}
        model = headers.get(MODEL_HEADER)
        if model:
            attrs["modelid"] = model
        return decode_attributes(attrs, value, time, position)

    def _model_error(
        self,
        where: Core2Topic,
        headers: Mapping[str, str],
        request_id: str | None,
        value: Any,
        position: SourcePosition,
    ) -> ModelError:
        model = headers.get(ERROR_HEADER, "")
        pipeline = headers.get(PIPELINE_HEADER, "")
        if pipeline == model:
            pipeline = ""
        found = self.experiments.find(model, pipeline)
        deployment, predictor = found if found is not None else (pipeline, "")
        if isinstance(value, bytes | bytearray):
            text = bytes(value[:_REASON_MAX]).decode("utf-8", "replace")
        else:
            text = str(value)[:_REASON_MAX]
        return ModelError(
            ModelKey(where.namespace, deployment, predictor, model), request_id, text, position
        )


def _read_headers(
    headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes | None]],
) -> tuple[dict[str, str], list[str]]:
    """Header names in lower case (later duplicates win), and every ``x-seldon-route`` value."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    routes: list[str] = []
    for name, raw in items:
        if raw is None:
            continue
        if isinstance(raw, str):
            text = raw
        else:
            try:
                text = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"header {name!r} is not UTF-8 text") from None
        lowered_name = name.lower()
        lowered[lowered_name] = text
        if lowered_name == ROUTE_HEADER:
            routes.append(text)
    return lowered, routes


def _request_id(headers: Mapping[str, str], key: bytes | str | None) -> str | None:
    given = headers.get(REQUEST_ID_HEADER)
    if not given and key:
        given = key if isinstance(key, str) else bytes(key).decode("utf-8", "replace")
    return request_id_of(given) if given else None


def _response_payload(infer_type: str | None, value: Any) -> Any:
    """The response as V2 JSON: parsed or raw JSON as is, protobuf converted.

    Raises:
        TensorError: a protobuf value that is not a readable response.
    """
    if isinstance(value, dict | list) or value is None:
        return value  # a replay file's value, already parsed JSON
    if isinstance(value, str):
        value = value.encode("utf-8")
    payload = bytes(value)
    encoding = infer_type.split("/", 1)[0].lower() if infer_type else None
    if encoding is None:
        encoding = "json" if payload.lstrip()[:1] == b"{" else "proto"
    if encoding == "json":
        return payload
    if encoding != "proto":
        raise TensorError(
            "unsupported_content_type",
            f"{INFER_TYPE_HEADER} {infer_type!r} is neither proto/... nor json/...",
        )
    if payload[:1] == b"\x00" and len(payload) >= 6:
        if payload[5:6] != b"\x00":
            raise TensorError(
                "unsupported_content_type",
                "schema-registry framed value whose message index is not 0 "
                "(ModelInferResponse is the first message of Core 2's schema)",
            )
        payload = payload[6:]
    try:
        response = ModelInferResponse.FromString(payload)
    except ProtobufDecodeError as exc:
        raise TensorError(
            "bad_payload", f"value is not an inference.ModelInferResponse message ({exc})"
        ) from None
    return {"model_name": response.model_name, "outputs": [first_output(response)]}
