"""The same records in any read order give the same report (docs/semantics.md, read order).

Seldon's executor writes unkeyed records, so one puid's events sit on
several partitions and a reader interleaves them in any order: the live
consumer, a group re-reading the topic and ``replay`` each see another one.
Every rule of the join must therefore depend on the set of events only.
These properties draw streams (duplicates, retried responses, amendments,
row mismatches, several models, feedback carrying its own prediction, V2
responses found by their body id) and read them in two random orders.

Only the revision counters (amendments, and the outcomes they retracted and
re-applied) may differ: they count how often a reader changed its mind.
The join TTL is longer than the streams' span, as it is when partitions are
read within the TTL of each other.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.engine import Engine
from feedback_stream.replay import replay
from tests._oracle import CLASSES, Stream, order_free, streams

_WINDOWS = ("total", "5m")
_TTL = 100_000.0


def _report(lines: list[bytes]) -> dict[str, Any]:
    engine = Engine(_WINDOWS, ttl=_TTL)
    replay(lines, engine)
    return order_free(engine.report())


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
def _extras(draw: st.DrawFn) -> list[dict[str, Any]]:
    """V2 responses joined by body id, and Seldon client feedback carrying its response."""
    records: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 3))):
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
        for j in range(draw(st.integers(0, 2))):
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
    for i in range(draw(st.integers(0, 3))):
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


def _lines(stream: Stream, extras: list[dict[str, Any]]) -> list[bytes]:
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), extras=_extras(), data=st.data())
def test_any_read_order_gives_the_same_report(
    stream: Stream, extras: list[dict[str, Any]], data: st.DataObject
) -> None:
    lines = _lines(stream, extras)
    first = data.draw(st.permutations(lines))
    second = data.draw(st.permutations(lines))
    assert _report(list(first)) == _report(list(second))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), extras=_extras(), data=st.data())
def test_any_interleaving_of_partitions_gives_the_same_report(
    stream: Stream, extras: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Each partition read in its own order, the partitions interleaved at random."""
    lines = _lines(stream, extras)
    by_partition: dict[int, list[bytes]] = {}
    for line in lines:
        by_partition.setdefault(orjson.loads(line)["partition"], []).append(line)
    queues = [list(q) for q in by_partition.values()]
    interleaved: list[bytes] = []
    while any(queues):
        live = [q for q in queues if q]
        queue = live[data.draw(st.integers(0, len(live) - 1))]
        interleaved.append(queue.pop(0))
    assert _report(interleaved) == _report(lines)
