"""Turn a v1 replay stream into the Seldon Core 2 records of the same traffic.

The synthetic generator writes Seldon Core v1 logger records;
:func:`to_core2` renders the same predictions as Core 2 would write them, so
that the demo and the tests can feed Core 2 records through the same
engine and compare. Each v1 predictor becomes a Core 2 model named
``<deployment>-<predictor>``; a deployment with several predictors becomes
an experiment of those models (:func:`experiments_for`), the first that is
not a shadow being the default.

Per response the layout is drawn from a seeded random source: V2 JSON,
protobuf with typed ``contents`` or protobuf with ``raw_output_contents``,
with the ``seldon-infer-type`` header present or not; integral classes get
a random integer or floating datatype that holds them, other classes a
BYTES tensor of their names. Feedback goes to the feedback topic with the
request id in ``x-request-id``, and, when the v1 feedback named its
predictor, the Core 2 model in ``seldon-model``.
"""

from __future__ import annotations

import base64
import random
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from feedback_stream.core2.grpc_predict_v2_pb2 import (
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from feedback_stream.core2.tensors import CONTENTS_FIELD, RAW_FORMAT
from feedback_stream.core2.topics import DEFAULT_FEEDBACK_TOPIC, DEFAULT_PREFIX
from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition

if TYPE_CHECKING:  # the generator's command line imports this module
    from feedback_stream.generator._config import GeneratorConfig

__all__ = ["LAYOUTS", "core2_model", "experiments_for", "to_core2"]

LAYOUTS: Final = ("json", "contents", "raw")

_INTEGER_RANGES: Final = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "FP16": (-2048, 2048),
    "BF16": (-256, 256),
    "FP32": (-(2**24), 2**24),
    "FP64": (-(2**53), 2**53),
}
"""Integers each datatype holds exactly."""


def core2_model(key: ModelKey) -> str:
    """The Core 2 model name a v1 predictor becomes."""
    return f"{key.deployment}-{key.predictor}"


def experiments_for(config: GeneratorConfig) -> list[str]:
    """``NAME=DEFAULT:OTHER`` of every deployment with several predictors."""
    out = []
    for deployment in config.deployments:
        if len(deployment.predictors) < 2:
            continue
        ordered = sorted(deployment.predictors, key=lambda p: p.shadow)
        members = ":".join(f"{deployment.name}-{p.name}" for p in ordered)
        out.append(f"{deployment.name}={members}")
    return out


def to_core2(
    records: Iterable[Mapping[str, Any]],
    *,
    seed: int = 0,
    prefix: str = DEFAULT_PREFIX,
    feedback_topic: str = DEFAULT_FEEDBACK_TOPIC,
    layouts: tuple[str, ...] = LAYOUTS,
) -> Iterator[dict[str, Any]]:
    """The Core 2 replay records of v1 replay ``records`` (invalid ones are dropped)."""
    rng = random.Random(f"feedback-stream/core2/{seed}")
    offsets: defaultdict[str, int] = defaultdict(int)
    names: dict[str, tuple[str, ...]] = {}
    for number, record in enumerate(records):
        position = SourcePosition(record["topic"], record["partition"], record["offset"])
        event = decode_kafka_record(
            record["headers"], record["value"], record["timestamp"], position
        )
        if isinstance(event, DecodeError):
            continue
        if event.kind is EventKind.RESPONSE and event.names is not None:
            names[event.puid] = event.names
        out = _render(event, rng, prefix, feedback_topic, layouts, number, names.get(event.puid))
        topic = out["topic"]
        out["offset"] = offsets[topic]
        offsets[topic] += 1
        out["timestamp"] = record["timestamp"]
        yield out


def _render(
    event: Event,
    rng: random.Random,
    prefix: str,
    feedback_topic: str,
    layouts: tuple[str, ...],
    number: int,
    names: tuple[str, ...] | None,
) -> dict[str, Any]:
    headers = {"x-request-id": event.puid}
    if event.kind is EventKind.FEEDBACK:
        if event.key.predictor:
            headers["seldon-model"] = core2_model(event.key)
        elif event.key.model:
            raise ValueError(f"record {number}: a feedback naming only a model has no Core 2 form")
        return {
            "topic": feedback_topic,
            "partition": 0,
            "key": event.puid,
            "headers": headers,
            "value": {"reward": event.reward, "truth": _truth(event, names)}
            if event.classes is not None
            else {"reward": event.reward},
        }
    model = core2_model(event.key)
    base = f"{prefix}.{event.key.namespace}.model.{model}"
    record: dict[str, Any] = {"partition": 0, "key": f"0.{model}.{event.puid}", "headers": headers}
    if event.kind is EventKind.REQUEST:
        record["topic"] = f"{base}.inputs"
        record["value_base64"] = _b64(ModelInferRequest(model_name=model).SerializeToString())
        return record
    record["topic"] = f"{base}.outputs"
    classes = event.classes or ()
    datatype = _datatype(classes, rng)
    layout = layouts[rng.randrange(len(layouts))]
    if datatype in ("FP16", "BF16") and layout != "raw":
        datatype = "FP32"  # 16-bit floats travel only as raw contents
    data: list[Any] = list(classes) if datatype == "BYTES" else [int(c) for c in classes]
    if datatype.startswith(("FP", "BF")):
        data = [float(v) for v in data]
    shape = [len(data)] if rng.random() < 0.5 else [len(data), 1]
    if layout == "json":
        record["value"] = {
            "model_name": model,
            "outputs": [{"name": "predict", "datatype": datatype, "shape": shape, "data": data}],
        }
        if rng.random() < 0.5:
            headers["seldon-infer-type"] = "json/inferModelResponse"
        return record
    tensor = ModelInferResponse.InferOutputTensor(name="predict", datatype=datatype, shape=shape)
    response = ModelInferResponse(model_name=model, outputs=[tensor])
    if layout == "raw":
        response.raw_output_contents.append(_raw(datatype, data))
    else:
        values = [v.encode() for v in data] if datatype == "BYTES" else data
        response.outputs[0].contents.CopyFrom(
            InferTensorContents(**{CONTENTS_FIELD[datatype]: values})
        )
    if rng.random() < 0.5:
        headers["seldon-infer-type"] = "proto/InferModelResponse"
    record["value_base64"] = _b64(response.SerializeToString())
    return record


def _truth(event: Event, names: tuple[str, ...] | None) -> dict[str, Any]:
    """The truth as one class per row, by name where the response named its classes.

    Core 2 responses carry class names in a BYTES tensor, not as ``names``
    to map indices through, so an index truth is written as its name here.
    """
    classes = list(event.classes or ())
    if event.names is None and names is not None:
        classes = [names[int(c)] if c.isdigit() and int(c) < len(names) else c for c in classes]
    return {"data": {"ndarray": [[c] for c in classes]}}


def _datatype(classes: tuple[str, ...], rng: random.Random) -> str:
    try:
        numbers = [int(c) for c in classes]
    except ValueError:
        return "BYTES"
    fits = [
        name
        for name, (low, high) in _INTEGER_RANGES.items()
        if all(low <= n <= high for n in numbers)
    ]
    if not classes or not fits:
        return "BYTES"
    return fits[rng.randrange(len(fits))]


def _raw(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in data))
    if datatype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in data)
    return struct.pack(f"<{len(data)}{RAW_FORMAT[datatype]}", *data)


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")
