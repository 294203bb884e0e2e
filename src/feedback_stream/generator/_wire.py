"""Rendering plans as Kafka records, and delivering them with the configured faults."""

from __future__ import annotations

import heapq
import itertools
import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from feedback_stream.encode import (
    CLOUDEVENTS_JSON,
    JSON,
    KSERVE_REQUEST,
    KSERVE_RESPONSE,
    SELDON_FEEDBACK,
    SELDON_REQUEST,
    SELDON_RESPONSE,
    ReplayRecord,
    kafka_binary_headers,
    kafka_partition,
    kafka_structured_value,
    one_hot_truth,
    rfc3339,
    seldon_direct_headers,
    seldon_ndarray,
    seldon_tensor,
    tf_instances,
    tf_predictions,
    uuid_from_int,
    v2_inputs,
    v2_outputs,
)
from feedback_stream.generator._config import (
    INVALID_KINDS,
    KSERVE_COMPONENT,
    DeploymentSpec,
    Encoding,
    GeneratorConfig,
    PredictorSpec,
)
from feedback_stream.generator._plan import Feedback, Plan, plans

_SELDON_SOURCE = "http:localhost:8000"  # what Seldon's request logger recorded
_KSERVE_SOURCE = "http://localhost:9081/"
_PROTOCOL = {"ndarray": "seldon", "tensor": "seldon", "tf": "tensorflow", "v2": "v2"}
_SELDON_WIRE: tuple[Encoding, ...] = ("ce_binary", "ce_structured", "seldon_direct")


class Wire:
    """Renders plans as records and delivers them through a reordering heap."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.payload_rng = random.Random(f"feedback-stream/{config.seed}/payload")
        self.delivery_rng = random.Random(f"feedback-stream/{config.seed}/delivery")
        self.heap: list[tuple[int, int, ReplayRecord, int]] = []
        self.seq = itertools.count()
        self.offsets = [0] * config.partitions
        self.disorder_ms = round(config.disorder_max_s * 1000)
        self.duplicate_ms = round(config.duplicate_delay_max_s * 1000)
        self.invalid_rng = random.Random(f"feedback-stream/{config.seed}/invalid")

    # delivery

    def push(self, record: ReplayRecord, deliver_ms: int, has_id: bool) -> None:
        """Queue a record; every delivery draw is made whether or not its knob is on."""
        cfg = self.config
        draw = self.delivery_rng.random
        u_part, u_dis, u_jitter, u_dup, u_mode, u_dup_delay = (
            draw(),
            draw(),
            draw(),
            draw(),
            draw(),
            draw(),
        )
        if not cfg.keyed:
            record["partition"] = int(u_part * cfg.partitions)
        if u_dis < cfg.disorder_share:
            deliver_ms += int(u_jitter * self.disorder_ms)
        redeliver = -1
        if u_dup < cfg.duplicate_share:
            dup_ms = deliver_ms + int(u_dup_delay * self.duplicate_ms)
            reproduce = has_id and (
                cfg.duplicate_mode == "id" or (cfg.duplicate_mode == "mixed" and u_mode < 0.5)
            )
            if reproduce:
                heapq.heappush(self.heap, (dup_ms, next(self.seq), record.copy(), -1))
            else:
                redeliver = dup_ms
        heapq.heappush(self.heap, (deliver_ms, next(self.seq), record, redeliver))

    def drain(self, before_ms: int | None) -> Iterator[ReplayRecord]:
        """Deliver every queued record due before ``before_ms`` (all of them for None)."""
        heap = self.heap
        offsets = self.offsets
        while heap and (before_ms is None or heap[0][0] < before_ms):
            _, _, record, redeliver = heapq.heappop(heap)
            if record["offset"] < 0:
                part = record["partition"]
                record["offset"] = offsets[part]
                offsets[part] += 1
            if redeliver >= 0:
                heapq.heappush(heap, (redeliver, next(self.seq), record.copy(), -1))
            yield record

    def maybe_invalid(self, plan: Plan) -> None:
        """Perhaps queue one invalid record after ``plan``'s request, from its own random source."""
        rng = self.invalid_rng
        u_invalid, u_kind, u_part = rng.random(), rng.random(), rng.random()
        puid = uuid_from_int(rng.getrandbits(128))
        event_id = uuid_from_int(rng.getrandbits(128))
        if u_invalid >= self.config.invalid_share:
            return
        kind = INVALID_KINDS[int(u_kind * len(INVALID_KINDS))]
        dep = plan.deployment
        attrs = {
            "specversion": "1.0",
            "id": event_id,
            "type": SELDON_RESPONSE,
            "source": _SELDON_SOURCE,
            "time": rfc3339(plan.time_ms),
            "requestid": puid,
            "modelid": dep.predictors[0].model,
            "inferenceservicename": dep.name,
            "namespace": dep.namespace,
            "endpoint": dep.predictors[0].name,
            "protocol": "seldon",
        }
        content_type = JSON
        value: Any = {"data": {"names": ["t:0", "t:1"], "ndarray": [[0.2, 0.8]]}, "meta": {}}
        if kind == "protobuf":
            content_type = "application/protobuf"
            value = "CgdwcmVkaWN0EgRGUDY0GgIBAg=="  # a gRPC body, not JSON
        elif kind == "nested_rows":
            value = {"data": {"ndarray": [[[0.2, 0.8]]]}, "meta": {}}
        elif kind == "no_puid":
            del attrs["requestid"]
        elif kind == "unknown_type":
            attrs["type"] = "io.seldon.serving.inference.explanation"
        else:
            value = '{"data": {"ndarray": [[0.2, 0.8]'
        cfg = self.config
        keyed = cfg.keyed and kind != "no_puid"
        record: ReplayRecord = {
            "topic": cfg.topic,
            "partition": (
                kafka_partition(puid.encode(), cfg.partitions)
                if keyed
                else int(u_part * cfg.partitions)
            ),
            "offset": -1,
            "timestamp": plan.time_ms,
            "key": puid if keyed else None,
            "headers": kafka_binary_headers(attrs, content_type),
            "value": value,
        }
        heapq.heappush(self.heap, (plan.time_ms, next(self.seq), record, -1))

    # rendering

    def render(self, plan: Plan) -> None:
        """Queue every record of one plan."""
        cfg = self.config
        dep = plan.deployment
        rng = self.payload_rng
        partition = kafka_partition(plan.puid.encode(), cfg.partitions) if cfg.keyed else 0
        key = plan.puid if cfg.keyed else None
        features = [
            [round(rng.random() * 8.0, 2) for _ in range(cfg.n_features)] for _ in plan.truth
        ]
        request_body = self._request_body(dep, plan.puid, features)
        responses: dict[int, Any] = {}
        kserve = dep.encoding == "kserve"
        for answer in plan.answers:
            p = answer.predictor
            response_body = self._response_body(dep, p, plan.puid, answer.predicted)
            responses[id(answer)] = response_body
            req_type, resp_type = (
                (KSERVE_REQUEST, KSERVE_RESPONSE) if kserve else (SELDON_REQUEST, SELDON_RESPONSE)
            )
            if plan.log_request:
                self._emit(plan, p, req_type, plan.time_ms, request_body, partition, key)
            self._emit(plan, p, resp_type, answer.time_ms, response_body, partition, key)
        for fb in plan.feedbacks:
            body = self._feedback_body(dep, fb)
            if cfg.feedback_echo:
                shown = fb.answer or plan.answers[0]
                body["request"] = request_body
                body["response"] = responses[id(shown)]
            predictor = fb.answer.predictor if fb.answer is not None else None
            self._emit(plan, predictor, SELDON_FEEDBACK, fb.time_ms, body, partition, key)

    def _emit(
        self,
        plan: Plan,
        predictor: PredictorSpec | None,
        ce_type: str,
        time_ms: int,
        body: Any,
        partition: int,
        key: str | None,
    ) -> None:
        dep = plan.deployment
        rng = self.payload_rng
        event_id = uuid_from_int(rng.getrandbits(128))
        encoding = dep.encoding
        if encoding == "seldon_mixed":
            encoding = _SELDON_WIRE[int(rng.random() * 3)]
        attrs: dict[str, str] = {"specversion": "1.0"}
        if encoding == "kserve":
            attrs["id"] = plan.puid if ce_type != SELDON_FEEDBACK else event_id
            attrs["type"] = ce_type
            attrs["source"] = _KSERVE_SOURCE
            attrs["time"] = rfc3339(time_ms)
            if ce_type == SELDON_FEEDBACK:
                attrs["requestid"] = plan.puid
            attrs["inferenceservicename"] = dep.name
            attrs["namespace"] = dep.namespace
            if predictor is not None:
                attrs["component"] = KSERVE_COMPONENT
                attrs["endpoint"] = predictor.name
        else:
            attrs["id"] = event_id
            attrs["type"] = ce_type
            attrs["source"] = _SELDON_SOURCE
            attrs["time"] = rfc3339(time_ms)
            attrs["requestid"] = plan.puid
            if predictor is not None:
                attrs["modelid"] = predictor.model
            attrs["inferenceservicename"] = dep.name
            attrs["namespace"] = dep.namespace
            if predictor is not None:
                attrs["endpoint"] = predictor.name
            attrs["protocol"] = _PROTOCOL[dep.payload]
        value: Any = body
        if encoding == "ce_structured":
            headers = {"content-type": CLOUDEVENTS_JSON}
            value = kafka_structured_value(attrs, JSON, body)
        elif encoding == "seldon_direct":
            headers = seldon_direct_headers(attrs, JSON)
        else:
            headers = kafka_binary_headers(attrs, JSON)
        record: ReplayRecord = {
            "topic": self.config.topic,
            "partition": partition,
            "offset": -1,
            "timestamp": time_ms,
            "key": key,
            "headers": headers,
            "value": value,
        }
        self.push(record, time_ms, has_id=encoding != "seldon_direct")

    def _request_body(self, dep: DeploymentSpec, puid: str, features: list[list[float]]) -> Any:
        if dep.payload == "ndarray":
            return {"data": {"ndarray": features}}
        if dep.payload == "tensor":
            return {"data": seldon_tensor(features)["data"]}
        if dep.payload == "tf":
            return tf_instances(features)
        return v2_inputs(puid, features)

    def _response_body(
        self, dep: DeploymentSpec, p: PredictorSpec, puid: str, predicted: list[int]
    ) -> Any:
        rows: list[Any]
        if dep.output == "label":
            rows = list(predicted)
        else:
            rows = [self._scores(dep.n_classes, c) for c in predicted]
        names = dep.labels if dep.carries_names else None
        if dep.payload == "ndarray":
            return seldon_ndarray(rows, names)
        if dep.payload == "tensor":
            return seldon_tensor(rows, names)
        if dep.payload == "tf":
            return tf_predictions(rows)
        return v2_outputs(p.model, puid, rows)

    def _scores(self, k: int, winner: int) -> list[float]:
        """Class scores summing to about 1 whose strict maximum is ``winner``.

        The winner gets the largest draw plus 0.5, so it stays the only
        maximum after rounding to 4 places (for any k below about 5000).
        """
        rng = self.payload_rng
        raw = [rng.random() for _ in range(k)]
        raw[winner] = max(raw) + 0.5
        total = sum(raw)
        return [round(v / total, 4) for v in raw]

    def _feedback_body(self, dep: DeploymentSpec, fb: Feedback) -> dict[str, Any]:
        rng = self.payload_rng
        u_bool, u_meta, u_form = rng.random(), rng.random(), rng.random()
        # Seldon's examples send rewards as 0/1 and as true/false; both mean the same.
        body: dict[str, Any] = {"reward": bool(fb.reward) if u_bool < 0.5 else fb.reward}
        meta = {"tags": {"user": "generator", "amendment": fb.amendment}}
        if fb.truth is not None:
            if dep.carries_names:
                truth = one_hot_truth(fb.truth, dep.n_classes, dep.labels)
            elif u_form < 0.5:
                truth = one_hot_truth(fb.truth, dep.n_classes)
            else:
                truth = {"data": {"ndarray": [[c] for c in fb.truth]}}
            if u_meta < 0.5:
                truth["meta"] = meta
            body["truth"] = truth
        elif u_meta < 0.5:
            # Seldon's example's "correct" feedback: a truth holding only meta.
            body["truth"] = {"meta": meta}
        return body


def generate_records(config: GeneratorConfig) -> Iterator[ReplayRecord]:
    """The stream's records in delivery order, lazily: memory grows with the
    records in flight (feedback delay × rate), not with the stream.

    A request's events can only be due at or after its request time, so
    everything queued before that time is final and can be delivered.
    """
    wire = Wire(config)
    for plan in plans(config):
        yield from wire.drain(plan.time_ms)
        wire.render(plan)
        wire.maybe_invalid(plan)
    yield from wire.drain(None)


def write_jsonl(records: Iterable[ReplayRecord], path: str | Path) -> int:
    """Write records as replay JSONL (``-`` for stdout); returns how many were written."""
    count = 0
    if str(path) == "-":
        out = sys.stdout.buffer
        for record in records:
            out.write(orjson.dumps(record) + b"\n")
            count += 1
        out.flush()
        return count
    with open(path, "wb", buffering=1 << 20) as f:
        for record in records:
            f.write(orjson.dumps(record) + b"\n")
            count += 1
    return count
