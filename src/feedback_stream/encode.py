"""Render events in the wire formats of EVENTS.md §1 and §2: the inverse of ``decode``.

The generator, the demo and the tests all build records here, so that one
module says what Seldon's executor and KServe's logger put on the wire:
header names and their spelling per encoding, content types, and the payload
shapes (Seldon ``ndarray`` / ``tensor``, TF ``predictions``, V2 ``outputs``).
The functions build plain dicts and lists, not models, because the generator
calls them millions of times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

__all__ = [
    "CLOUDEVENTS_JSON",
    "JSON",
    "KSERVE_REQUEST",
    "KSERVE_RESPONSE",
    "SELDON_FEEDBACK",
    "SELDON_REQUEST",
    "SELDON_RESPONSE",
    "CloudEvent",
    "KafkaMessage",
    "ReplayRecord",
    "http_binary_headers",
    "kafka_binary_headers",
    "kafka_partition",
    "kafka_structured_value",
    "murmur2",
    "one_hot_truth",
    "rfc3339",
    "seldon_direct_headers",
    "seldon_ndarray",
    "seldon_tensor",
    "tf_instances",
    "tf_predictions",
    "uuid_from_int",
    "v2_inputs",
    "v2_outputs",
]

SELDON_REQUEST: Final = "io.seldon.serving.inference.request"
SELDON_RESPONSE: Final = "io.seldon.serving.inference.response"
SELDON_FEEDBACK: Final = "io.seldon.serving.feedback"
KSERVE_REQUEST: Final = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE: Final = "org.kubeflow.serving.inference.response"

JSON: Final = "application/json"
CLOUDEVENTS_JSON: Final = "application/cloudevents+json"

# The attributes Seldon's executor puts on a directly logged Kafka record
# (executor/logger/worker.go, sendKafkaEvent): no id, no source, no time.
_DIRECT_ATTRIBUTES: Final = (
    "type",
    "modelid",
    "requestid",
    "inferenceservicename",
    "namespace",
    "endpoint",
    "protocol",
)


class ReplayRecord(TypedDict):
    """One line of the replay JSONL format: a Kafka record as consumed.

    ``value`` is the record value parsed as JSON, or a string where it is
    not JSON (a protobuf body, say). ``timestamp`` is in ms since the epoch.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None
    headers: dict[str, str]
    value: Any


# --- attributes and headers -------------------------------------------------


def http_binary_headers(attributes: Mapping[str, str], content_type: str) -> dict[str, str]:
    """HTTP binary mode, spelt as Go's CloudEvents SDK sends it (``Ce-Requestid``)."""
    headers = {"Ce-" + name.capitalize(): value for name, value in attributes.items()}
    headers["Content-Type"] = content_type
    return headers


def kafka_binary_headers(attributes: Mapping[str, str], content_type: str) -> dict[str, str]:
    """Kafka CloudEvents binary binding: ``ce_`` + attribute name, plus ``content-type``."""
    headers = {"ce_" + name: value for name, value in attributes.items()}
    headers["content-type"] = content_type
    return headers


def kafka_structured_value(
    attributes: Mapping[str, str], content_type: str, data: Any
) -> dict[str, Any]:
    """Structured mode: the whole CloudEvent as JSON, the payload under ``data``.

    The record's only header is ``content-type: application/cloudevents+json``.
    """
    event: dict[str, Any] = dict(attributes)
    event["datacontenttype"] = content_type
    event["data"] = data
    return event


def seldon_direct_headers(attributes: Mapping[str, str], content_type: str) -> dict[str, str]:
    """Seldon v1 executor direct Kafka logging: un-prefixed headers, no id, no time.

    Attributes missing from ``attributes`` (a feedback that names no model)
    are left out rather than sent empty.
    """
    headers = {name: attributes[name] for name in _DIRECT_ATTRIBUTES if name in attributes}
    headers["content-type"] = content_type
    return headers


def rfc3339(ms: int) -> str:
    """``ce-time`` as Go writes it (RFC 3339, UTC, nanoseconds) from ms since the epoch."""
    seconds, millis = divmod(ms, 1000)
    return _whole_second(seconds) + f".{millis:03d}000000Z"


@functools.lru_cache(maxsize=4096)
def _whole_second(seconds: int) -> str:
    # Streams stamp many events per second: format each second once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def uuid_from_int(bits: int) -> str:
    """A version-4-shaped UUID string from 128 random bits (ids and puids).

    The generator draws the bits from its own seeded random source, so ids
    are reproducible, which ``uuid.uuid4`` is not.
    """
    h = f"{bits & ((1 << 128) - 1):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


# --- Kafka's default partitioner ---------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``), as unsigned."""
    mask = 0xFFFFFFFF
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    extra = length % 4
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a keyed record.

    Matches the Java client and aiokafka, so a generated keyed stream lands
    where a real producer would have put it.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# --- payloads -----------------------------------------------------------------


def seldon_ndarray(rows: list[Any], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Seldon protocol ``{"data": {"names", "ndarray"}, "meta": {}}``."""
    data: dict[str, Any] = {}
    if names is not None:
        data["names"] = list(names)
    data["ndarray"] = rows
    return {"data": data, "meta": {}}


def seldon_tensor(rows: list[Any], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Seldon protocol ``tensor``: shape ``[r, c]`` and row-major values (``[r]`` for labels)."""
    data: dict[str, Any] = {}
    if names is not None:
        data["names"] = list(names)
    if rows and isinstance(rows[0], list):
        tensor = {"shape": [len(rows), len(rows[0])], "values": [v for row in rows for v in row]}
    else:
        tensor = {"shape": [len(rows)], "values": list(rows)}
    data["tensor"] = tensor
    return {"data": data, "meta": {}}


def tf_instances(rows: list[Any]) -> dict[str, Any]:
    """TF / KServe V1 request body."""
    return {"instances": rows}


def tf_predictions(rows: list[Any]) -> dict[str, Any]:
    """TF / KServe V1 response body: a 2-D list of scores, or a 1-D list of labels."""
    return {"predictions": rows}


def _v2_tensor(name: str, rows: list[Any], datatype: str) -> dict[str, Any]:
    if rows and isinstance(rows[0], list):
        shape = [len(rows), len(rows[0])]
        flat = [v for row in rows for v in row]
    else:
        shape = [len(rows)]
        flat = rows
    return {"name": name, "shape": shape, "datatype": datatype, "data": flat}


def v2_inputs(request_id: str, rows: list[list[float]]) -> dict[str, Any]:
    """Open Inference Protocol request body (one FP64 input)."""
    return {"id": request_id, "inputs": [_v2_tensor("input-0", rows, "FP64")]}


def v2_outputs(model_name: str, request_id: str, rows: list[Any]) -> dict[str, Any]:
    """Open Inference Protocol response body: ``predict_proba`` scores or ``predict`` labels."""
    if rows and isinstance(rows[0], list):
        output = _v2_tensor("predict_proba", rows, "FP64")
    else:
        output = _v2_tensor("predict", rows, "INT64")
    return {"model_name": model_name, "id": request_id, "outputs": [output]}


def one_hot_truth(
    classes: Sequence[int], n_classes: int, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The feedback ``truth`` of Seldon's examples: one-hot ``ndarray`` rows, names if given."""
    rows = []
    for c in classes:
        row = [0] * n_classes
        row[c] = 1
        rows.append(row)
    data: dict[str, Any] = {}
    if names is not None:
        data["names"] = list(names)
    data["ndarray"] = rows
    return {"data": data}


# --- one event, for senders ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaMessage:
    """What a producer sends: ``key``, ``value`` and headers as aiokafka takes them."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent in HTTP binary mode: ``Ce-*`` headers plus ``Content-Type``, body bytes.

    HTTP is the form the executor POSTs; :meth:`kafka_headers` gives the
    Kafka binary binding of the same event, so one schedule feeds both
    ``--http`` and ``--kafka`` senders.
    """

    headers: dict[str, str]
    body: bytes

    def http_headers(self) -> dict[str, str]:
        """The headers to POST (a copy: senders may add their own)."""
        return dict(self.headers)

    def attributes(self) -> dict[str, str]:
        """The CloudEvent attributes by their lowercase names (``id``, ``requestid``, ...)."""
        return {
            name[3:].lower(): value
            for name, value in self.headers.items()
            if name.lower().startswith("ce-")
        }

    @property
    def content_type(self) -> str:
        """The payload's media type."""
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value
        return JSON

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Kafka binary-binding headers (``ce_requestid``, ...), as aiokafka takes them."""
        return [
            (name, value.encode())
            for name, value in kafka_binary_headers(self.attributes(), self.content_type).items()
        ]

    def kafka_message(self, *, keyed: bool = False) -> KafkaMessage:
        """The event as a Kafka record: unkeyed like Seldon's executor, or keyed by puid."""
        key = self.attributes().get("requestid") if keyed else None
        return KafkaMessage(
            key=key.encode() if key is not None else None,
            value=self.body,
            headers=self.kafka_headers(),
        )
