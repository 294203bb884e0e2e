"""A small reader of generated streams, independent of the core's decoder.

The generator's tests check records against EVENTS.md with this, so that a
bug shared by the generator and ``decode`` cannot hide itself.
"""

from __future__ import annotations

import json
from typing import Any

from feedback_stream.encode import (
    CLOUDEVENTS_JSON,
    KSERVE_REQUEST,
    KSERVE_RESPONSE,
    ReplayRecord,
)
from feedback_stream.events import ModelKey
from feedback_stream.generator import DeploymentSpec, GeneratorConfig, generate_records

# EVENTS.md (Kafka, direct logging): the eight headers Seldon's v1 executor puts on a record.
DIRECT_HEADERS = {
    "type",
    "content-type",
    "modelid",
    "requestid",
    "inferenceservicename",
    "namespace",
    "endpoint",
    "protocol",
}


def records(**changes: Any) -> list[ReplayRecord]:
    return list(generate_records(GeneratorConfig(**changes)))


def one_deployment(**changes: Any) -> tuple[DeploymentSpec, ...]:
    return (DeploymentSpec(**changes),)


def attrs(record: ReplayRecord) -> dict[str, Any]:
    """CloudEvent attributes of a record, whatever its encoding."""
    headers = record["headers"]
    if headers.get("content-type") == CLOUDEVENTS_JSON:
        return {k: v for k, v in record["value"].items() if k != "data"}
    if "ce_type" in headers:
        return {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    return {k: v for k, v in headers.items() if k != "content-type"}


def data(record: ReplayRecord) -> Any:
    if record["headers"].get("content-type") == CLOUDEVENTS_JSON:
        return record["value"]["data"]
    return record["value"]


def puid_of(record: ReplayRecord) -> str:
    a = attrs(record)
    if a["type"] in (KSERVE_REQUEST, KSERVE_RESPONSE):
        return str(a["id"])
    return str(a["requestid"])


def row_class(row: Any, names: list[str] | None) -> str:
    """EVENTS.md §2: argmax of a vector (names where given), a scalar as a string."""
    if isinstance(row, list) and len(row) >= 2:
        index = row.index(max(row))
        return names[index] if names else str(index)
    value = row[0] if isinstance(row, list) else row
    return str(int(value))


def classes(payload: Any) -> list[str]:
    if "data" in payload and isinstance(payload["data"], dict):
        d = payload["data"]
        names = d.get("names")
        if "ndarray" in d:
            rows = d["ndarray"]
        else:
            shape, values = d["tensor"]["shape"], d["tensor"]["values"]
            rows = (
                values
                if len(shape) == 1
                else [values[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
            )
        return [row_class(r, names) for r in rows]
    if "predictions" in payload:
        return [row_class(r, None) for r in payload["predictions"]]
    out = payload["outputs"][0]
    shape, flat = out["shape"], out["data"]
    rows = (
        flat
        if len(shape) == 1
        else [flat[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
    )
    return [row_class(r, None) for r in rows]


def model_key(record: ReplayRecord) -> ModelKey:
    a = attrs(record)
    return ModelKey(
        a["namespace"],
        a["inferenceservicename"],
        a.get("endpoint", ""),
        a.get("modelid", a.get("component", "")),
    )


def by_type(rs: list[ReplayRecord], ce_type: str) -> list[ReplayRecord]:
    return [r for r in rs if attrs(r)["type"] == ce_type]


def content(r: ReplayRecord) -> tuple[int, int, str, str]:
    """A record without its offset: what stays when deliveries move."""
    return (
        r["timestamp"],
        r["partition"],
        json.dumps(r["headers"], sort_keys=True),
        json.dumps(r["value"], sort_keys=True),
    )
