"""Seldon's feedback-metrics example as live traffic: iris, LogisticRegression vs Perceptron.

One SeldonDeployment (``iris-perf``, graph node ``classifier``, as in that
example) has two predictors: ``default`` (a LogisticRegression) and ``shadow``
(a Perceptron, trained as the example trains it). Both are fitted at start on
part of iris; the rest is the traffic. Every request is answered by both
predictors under one puid, as Seldon's shadow mirroring does, and a share
of requests later gets feedback carrying the true class.

This module only decides what to send and when. It reads no clock and
opens no socket: :meth:`IrisTraffic.schedule` yields events stamped with
seconds since the start of traffic, and the demo's sender sleeps until each
one is due, then POSTs it (:meth:`CloudEvent.http_headers`, ``body``) or
produces it to Kafka (:meth:`CloudEvent.kafka_message`).

The feedback is what a user posts to the deployment's ``/api/v1.0/feedback``
after seeing the *default* predictor's answer: the request, that response,
a reward (1 if the default was right) and the truth. Seldon mirrors the
post to the shadow, so each predictor's executor logs the same body under
its own ``endpoint``. The truth decides correctness, so the shadow's
accuracy is right; its reward is the default's (the client judged the
default's answer), and as the feedback carries that answer, a shadow that
disagrees is not counted as a conflict (docs/events.md, "Shadows").
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Perceptron
from sklearn.model_selection import train_test_split

from feedback_stream.encode import (
    JSON,
    SELDON_FEEDBACK,
    SELDON_REQUEST,
    SELDON_RESPONSE,
    CloudEvent,
    ReplayRecord,
    http_binary_headers,
    kafka_binary_headers,
    one_hot_truth,
    seldon_ndarray,
    uuid_from_int,
)
from feedback_stream.events import EventKind

__all__ = [
    "DEFAULT",
    "IRIS_CLASSES",
    "PREDICTORS",
    "SHADOW",
    "DemoConfig",
    "IrisModels",
    "IrisTraffic",
    "ScheduledEvent",
    "SimulatedRequest",
    "replay_record",
]

DEFAULT = "default"
SHADOW = "shadow"
PREDICTORS = (DEFAULT, SHADOW)
IRIS_CLASSES = ("setosa", "versicolor", "virginica")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What the demo's traffic looks like.

    Requests arrive with exponential gaps of mean ``request_interval_s``;
    each predictor answers after ``latency_s`` (±50 %); ``feedback_share`` of
    requests get feedback ``feedback_delay_s`` plus up to
    ``feedback_delay_jitter_s`` after the request. ``n_requests=None``
    means endless traffic, cycling the held-out rows in a new order each
    pass. ``train_share`` of iris (stratified) trains the two models.
    """

    seed: int = 0
    namespace: str = "seldon"
    deployment: str = "iris-perf"
    model: str = "classifier"
    train_share: float = 0.4
    request_interval_s: float = 0.5
    latency_s: float = 0.02
    feedback_share: float = 1.0
    feedback_delay_s: float = 2.0
    feedback_delay_jitter_s: float = 1.0
    n_requests: int | None = None
    source: str = "http:localhost:8000"
    class_names: tuple[str, ...] = IRIS_CLASSES

    def __post_init__(self) -> None:
        if not 0.0 < self.train_share < 1.0:
            raise ValueError("train_share must be in (0, 1)")
        if not 0.0 <= self.feedback_share <= 1.0:
            raise ValueError("feedback_share must be in [0, 1]")
        if self.request_interval_s <= 0:
            raise ValueError("request_interval_s must be > 0")
        if min(self.latency_s, self.feedback_delay_s, self.feedback_delay_jitter_s) < 0:
            raise ValueError("latency and feedback delays must be >= 0")
        if len(self.class_names) != len(IRIS_CLASSES):
            raise ValueError("iris has three classes")


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """One CloudEvent to send ``at`` seconds after the start of traffic."""

    at: float
    kind: EventKind
    puid: str
    predictor: str
    event: CloudEvent


@dataclass(frozen=True, slots=True)
class SimulatedRequest:
    """One simulated prediction request and everything it causes.

    ``predictions`` maps each predictor to the class its response names;
    ``events`` holds the request and response events of both predictors
    and, when ``feedback`` is set, the two (mirrored) feedback events.
    """

    puid: str
    at: float
    features: tuple[float, ...]
    truth: str
    predictions: dict[str, str]
    feedback: bool
    events: tuple[ScheduledEvent, ...]


class IrisModels:
    """The two predictors, trained on part of iris; the rest is held out as traffic.

    The Perceptron is configured as the example's training script did (40
    epochs, ``eta0=0.1``); it has no ``predict_proba``, so its response
    carries a softmax of its decision function, whose argmax is its
    prediction. Training takes milliseconds.
    """

    def __init__(self, *, seed: int = 0, train_share: float = 0.4) -> None:
        x, y = load_iris(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, train_size=train_share, random_state=seed, stratify=y
        )
        self.default = LogisticRegression(max_iter=1000).fit(x_train, y_train)
        self.shadow = Perceptron(max_iter=40, eta0=0.1, tol=None, random_state=seed).fit(
            x_train, y_train
        )
        self.x_test: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(x_test, dtype=np.float64)
        self.y_test: list[int] = [int(v) for v in y_test]

    def scores(
        self, predictor: str, rows: np.ndarray[Any, np.dtype[np.float64]]
    ) -> list[list[float]]:
        """Per-class scores of ``rows``, as the predictor's response carries them."""
        if predictor == DEFAULT:
            return [[float(v) for v in row] for row in self.default.predict_proba(rows)]
        out = []
        for row in self.shadow.decision_function(rows):
            top = max(float(v) for v in row)
            exps = [math.exp(float(v) - top) for v in row]
            total = sum(exps)
            out.append([e / total for e in exps])
        return out

    def holdout_accuracy(self) -> dict[str, float]:
        """Each predictor's accuracy on the held-out rows, by the decoder's argmax rule."""
        result = {}
        for predictor in PREDICTORS:
            hits = sum(
                _argmax(row) == truth
                for row, truth in zip(self.scores(predictor, self.x_test), self.y_test, strict=True)
            )
            result[predictor] = hits / len(self.y_test)
        return result


def _argmax(row: list[float]) -> int:
    """Index of the maximum, first on ties (EVENTS.md §2)."""
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


class IrisTraffic:
    """The demo's traffic: simulated requests, and their events in send order."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self.models = IrisModels(seed=self.config.seed, train_share=self.config.train_share)

    def requests(self) -> Iterator[SimulatedRequest]:
        """Simulated requests in arrival order; endless when ``n_requests`` is None."""
        cfg = self.config
        rng = random.Random(f"feedback-stream-demo/{cfg.seed}")
        rows = range(len(self.models.y_test))
        count = itertools.count() if cfg.n_requests is None else range(cfg.n_requests)
        order: list[int] = []
        at = 0.0
        for _ in count:
            if not order:
                order = rng.sample(rows, len(rows))
            index = order.pop()
            at += rng.expovariate(1.0 / cfg.request_interval_s)
            yield self._simulate(rng, at, index)

    def schedule(self) -> Iterator[ScheduledEvent]:
        """Every event of :meth:`requests`, ordered by send time (ties keep creation order)."""
        heap: list[tuple[float, int, ScheduledEvent]] = []
        seq = itertools.count()
        for request in self.requests():
            while heap and heap[0][0] < request.at:
                yield heapq.heappop(heap)[2]
            for event in request.events:
                heapq.heappush(heap, (event.at, next(seq), event))
        while heap:
            yield heapq.heappop(heap)[2]

    def _simulate(self, rng: random.Random, at: float, index: int) -> SimulatedRequest:
        cfg = self.config
        names = cfg.class_names
        puid = uuid_from_int(rng.getrandbits(128))
        x = self.models.x_test[index : index + 1]
        features = tuple(float(v) for v in x[0])
        request_body = {"data": {"ndarray": [list(features)]}}
        request_bytes = orjson.dumps(request_body)
        events: list[ScheduledEvent] = []
        predictions: dict[str, str] = {}
        responses: dict[str, dict[str, Any]] = {}
        for predictor in PREDICTORS:
            scores = self.models.scores(predictor, x)
            predictions[predictor] = names[_argmax(scores[0])]
            responses[predictor] = seldon_ndarray(scores, names)
            events.append(self._event(rng, at, EventKind.REQUEST, puid, predictor, request_bytes))
            answered = at + cfg.latency_s * (0.5 + rng.random())
            body = orjson.dumps(responses[predictor])
            events.append(self._event(rng, answered, EventKind.RESPONSE, puid, predictor, body))
        truth = self.models.y_test[index]
        u_feedback, u_delay = rng.random(), rng.random()
        feedback = u_feedback < cfg.feedback_share
        if feedback:
            when = at + cfg.feedback_delay_s + u_delay * cfg.feedback_delay_jitter_s
            body = orjson.dumps(
                {
                    "request": request_body,
                    "response": responses[DEFAULT],
                    "reward": int(predictions[DEFAULT] == names[truth]),
                    "truth": one_hot_truth([truth], len(names), names),
                }
            )
            for predictor in PREDICTORS:
                events.append(self._event(rng, when, EventKind.FEEDBACK, puid, predictor, body))
        return SimulatedRequest(
            puid, at, features, names[truth], predictions, feedback, tuple(events)
        )

    def _event(
        self,
        rng: random.Random,
        at: float,
        kind: EventKind,
        puid: str,
        predictor: str,
        body: bytes,
    ) -> ScheduledEvent:
        cfg = self.config
        ce_type = {
            EventKind.REQUEST: SELDON_REQUEST,
            EventKind.RESPONSE: SELDON_RESPONSE,
            EventKind.FEEDBACK: SELDON_FEEDBACK,
        }[kind]
        attributes = {
            "id": uuid_from_int(rng.getrandbits(128)),
            "type": ce_type,
            "source": cfg.source,
            "specversion": "1.0",
            "requestid": puid,
            "modelid": cfg.model,
            "inferenceservicename": cfg.deployment,
            "namespace": cfg.namespace,
            "endpoint": predictor,
            "protocol": "seldon",
        }
        event = CloudEvent(headers=http_binary_headers(attributes, JSON), body=body)
        return ScheduledEvent(at, kind, puid, predictor, event)


def replay_record(
    scheduled: ScheduledEvent,
    *,
    start_ms: int,
    topic: str = "seldon-logs",
    partition: int = 0,
    offset: int = 0,
    keyed: bool = False,
) -> ReplayRecord:
    """The event as the Kafka record a consumer would read (binary binding, replay JSONL form).

    The record timestamp is the send time: ``start_ms`` plus the event's offset.
    """
    event = scheduled.event
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": start_ms + round(scheduled.at * 1000),
        "key": scheduled.puid if keyed else None,
        "headers": kafka_binary_headers(event.attributes(), event.content_type),
        "value": orjson.loads(event.body),
    }
