"""Records a Seldon client or KServe's V2 agent adds to a stream (for the core's property tests).

:func:`extras` draws V2 responses found by their body id (feedback naming
either id) and Seldon client feedback carrying its own response (with or
without a logged one); :func:`with_extras` appends them to a drawn stream.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from tests._oracle import CLASSES, Stream


def _kserve(kind: str, ce_id: str, time_ms: int, value: Any, **extra: str) -> dict[str, Any]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_type": f"org.kubeflow.serving.inference.{kind}",
        "ce_source": "http://iris-v2-predictor.kserve/",
        "ce_inferenceservicename": "iris-v2",
        "ce_namespace": "kserve",
        "ce_component": "predictor",
        "content-type": "application/json",
        **extra,
    }
    return {"headers": headers, "value": value, "timestamp": time_ms}


def _feedback(ce_id: str, puid: str, time_ms: int, value: Any) -> dict[str, Any]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": ce_id,
        "ce_type": "io.seldon.serving.feedback",
        "ce_source": "http://:8000/",
        "ce_requestid": puid,
        "ce_namespace": "seldon",
        "ce_inferenceservicename": "iris",
        "ce_endpoint": "default",
        "ce_modelid": "clf",
        "content-type": "application/json",
    }
    return {"headers": headers, "value": value, "timestamp": time_ms}


@st.composite
def extras(draw: st.DrawFn) -> list[dict[str, Any]]:
    """V2 responses joined by body id, and Seldon client feedback carrying its response."""
    records: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 3))):
        rows = draw(st.integers(1, 2))
        predicted = draw(st.lists(st.integers(0, 2), min_size=rows, max_size=rows))
        body = {
            "model_name": "iris",
            "id": f"body-{i}",
            "outputs": [
                {"name": "predict", "shape": [rows], "datatype": "INT64", "data": predicted}
            ],
        }
        if draw(st.booleans()):
            records.append(_kserve("response", f"log-{i}", draw(st.integers(0, 9000)), body))
        for j in range(draw(st.integers(1, 2))):
            truth = draw(st.lists(st.integers(0, 2), min_size=rows, max_size=rows))
            named = draw(st.sampled_from([f"body-{i}", f"log-{i}"]))
            records.append(
                _feedback(
                    f"kfb-{i}-{j}",
                    named,
                    draw(st.integers(0, 9000)),
                    {"truth": {"predictions": truth}},
                )
            )
    for i in range(draw(st.integers(1, 3))):
        puid = f"client-{i}"
        if draw(st.booleans()):
            logged = draw(st.sampled_from(CLASSES))
            records.append(
                {
                    "headers": {
                        "type": "io.seldon.serving.inference.response",
                        "requestid": puid,
                        "namespace": "seldon",
                        "inferenceservicename": "iris",
                        "endpoint": "default",
                        "modelid": "clf",
                        "content-type": "application/json",
                    },
                    "value": {"data": {"ndarray": [logged]}, "meta": {"puid": puid}},
                    "timestamp": draw(st.integers(0, 9000)),
                }
            )
        for j in range(draw(st.integers(1, 2))):
            embedded = draw(st.sampled_from(CLASSES))
            payload: dict[str, Any] = {
                "request": {"data": {"ndarray": [[1.0, 2.0]]}},
                "response": {"data": {"ndarray": [embedded]}, "meta": {"puid": puid}},
                "reward": draw(st.sampled_from([0, 1])),
            }
            if draw(st.booleans()):
                payload["truth"] = {"data": {"ndarray": [draw(st.sampled_from(CLASSES))]}}
            records.append(
                _feedback(f"cfb-{i}-{j}", f"fresh-{i}-{j}", draw(st.integers(0, 9000)), payload)
            )
    return records


def with_extras(stream: Stream, extras: list[dict[str, Any]]) -> list[bytes]:
    lines = stream.lines()
    for offset, extra in enumerate(extras):
        record = {
            "topic": "seldon",
            "partition": offset % 3,
            "offset": 500_000 + offset,
            "key": None,
            **extra,
        }
        lines.append(orjson.dumps(record))
    return lines
