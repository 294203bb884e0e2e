"""Scored streams for the core benchmark: a binary model (ROC AUC) and a regression model.

Each request of the stream has one response and, for 80% of them, one
feedback with the truth a few seconds later, in time order, as the
classification stream: four deployments, a default and a shadow predictor
each. Binary responses are Seldon's request-logger shape (``names:
["proba"]``, one score per row); regression responses are V2 (Open
Inference Protocol) FP32 outputs. The engine is told each model's kind
through the same TOML rules a user writes (:func:`kinds`).
"""

from __future__ import annotations

import random
from typing import Final

import orjson

from bench.stream import WireRecord
from feedback_stream.model_kinds import ModelKinds

__all__ = ["KINDS", "kinds", "scored_stream"]

KINDS: Final = ("binary", "regression")
_FEEDBACK_SHARE: Final = 0.8


def kinds() -> ModelKinds:
    """The rules of both scored streams, as ``--models-config`` would give them."""
    return ModelKinds.parse(
        {
            "model": [
                {"deployment": "fraud-*", "kind": "binary", "threshold": 0.5},
                {"deployment": "price-*", "kind": "regression"},
            ]
        }
    )


def _headers(
    ce_type: str, puid: str, event_id: str, deployment: str, predictor: str
) -> list[tuple[str, bytes]]:
    return [
        (name, text.encode())
        for name, text in (
            ("ce_type", ce_type),
            ("ce_id", event_id),
            ("ce_specversion", "1.0"),
            ("ce_source", "bench"),
            ("content-type", "application/json"),
            ("ce_requestid", puid),
            ("ce_namespace", "bench"),
            ("ce_inferenceservicename", deployment),
            ("ce_endpoint", predictor),
            ("ce_modelid", "model"),
        )
    ]


def scored_stream(kind: str, n_requests: int, *, seed: int = 7) -> list[WireRecord]:
    """Responses and feedback of ``n_requests`` requests to ``kind`` models, in time order."""
    rng = random.Random(seed)
    records: list[tuple[int, WireRecord]] = []
    prefix = "fraud" if kind == "binary" else "price"
    for i in range(n_requests):
        at = 1_780_000_000_000 + i  # 1000 requests a second
        deployment = f"{prefix}-{i % 4}"
        puid = f"{prefix}-{i}"
        truth: float
        if kind == "binary":
            label = rng.random() < 0.3
            truth = 1 if label else 0
        else:
            truth = round(rng.uniform(10.0, 500.0), 2)
        for predictor, noise in (("default", 0.15), ("shadow", 0.3)):
            if kind == "binary":
                score = min(1.0, max(0.0, (0.7 if label else 0.3) + rng.gauss(0.0, noise)))
                value: object = {"data": {"names": ["proba"], "ndarray": [[score]]}, "meta": {}}
            else:
                prediction = truth * (1.0 + rng.gauss(0.0, noise))
                value = {
                    "model_name": "model",
                    "outputs": [{"name": "predict", "datatype": "FP32", "shape": [1, 1],
                                 "data": [prediction]}],
                }  # fmt: skip
            records.append(
                (
                    at,
                    WireRecord(
                        0,
                        at,
                        None,
                        _headers("io.seldon.serving.inference.response", puid, f"r-{predictor}-{i}",
                                 deployment, predictor),
                        orjson.dumps(value),
                    ),
                )
            )  # fmt: skip
        if rng.random() < _FEEDBACK_SHARE:
            delay = int(rng.expovariate(1 / 5000.0))
            feedback = {"truth": {"data": {"ndarray": [[truth]]}}}
            records.append(
                (
                    at + delay,
                    WireRecord(
                        0,
                        at + delay,
                        None,
                        _headers("io.seldon.serving.feedback", puid, f"f-{i}", deployment, ""),
                        orjson.dumps(feedback),
                    ),
                )
            )
    records.sort(key=lambda r: r[0])
    return [r for _, r in records]
