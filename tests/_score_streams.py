"""Random streams of scored responses (binary, probability rows, regression) and their oracle.

:func:`score_streams` draws replay records for one model whose kind is
declared: each puid has one response (one or two rows) and up to three
feedbacks (amendments: the latest feedback time wins, ties to the larger
identity hash, whatever the arrival order),
delivered in a random order with redeliveries. :func:`live_outcomes` works
out, without the engine's code, which (scores, truth, time, stamp) rows are
live at the end; :func:`expected` computes every number with scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st
from sklearn.metrics import (
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from feedback_stream.events import ModelKey
from feedback_stream.join import identity_hash
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.outcomes import to_tick
from feedback_stream.windows import WindowKind, WindowSpec

KEY = ModelKey("prod", "fraud", "default", "scorer")
CLASSES = ("a", "b", "c")
VARIANTS = ("binary", "binary2", "probability", "regression")
SCORES = (0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0)


def kinds_for(variant: str) -> ModelKinds:
    rule: dict[str, Any] = {"model": KEY.model}
    if variant == "binary":
        rule |= {"kind": "binary", "threshold": 0.5}
    elif variant == "binary2":
        rule |= {"kind": "binary", "positive": "yes"}
    elif variant == "probability":
        rule |= {"kind": "classification"}
    else:
        rule |= {"kind": "regression"}
    return ModelKinds.parse({"model": [rule]})


@dataclass(frozen=True)
class Feedback:
    time_ms: int
    truth: tuple[Any, ...] | None  # per row; None: reward-only (reward 1)
    rank: int = 0  # the event's identity hash: the tie-break between equal times


@dataclass
class Puid:
    rows: list[Any]  # per row: a score, a probability row, or a prediction
    feedbacks: list[tuple[int, Feedback]]  # (first arrival index, feedback)
    response_arrival: int = -1


@dataclass
class ScoreStream:
    variant: str
    records: list[dict[str, Any]]
    puids: dict[str, Puid]

    def lines(self) -> list[bytes]:
        return [orjson.dumps(r) for r in self.records]


def _headers(kind: str, puid: str, event_id: str) -> dict[str, str]:
    return {
        "ce_type": "io.seldon.serving."
        + ("feedback" if kind == "feedback" else "inference.response"),
        "ce_id": event_id,
        "ce_specversion": "1.0",
        "content-type": "application/json",
        "ce_requestid": puid,
        "ce_namespace": KEY.namespace,
        "ce_inferenceservicename": KEY.deployment,
        "ce_endpoint": KEY.predictor,
        "ce_modelid": KEY.model,
    }


def _number() -> st.SearchStrategy[float]:
    """Regression values: exact in fixed point from 2**-12 up (finer ones are truncated)."""
    return st.floats(-1e3, 1e3).filter(lambda v: v == 0.0 or abs(v) >= 1e-3)


def _score(draw: st.DrawFn) -> float:
    return draw(st.one_of(st.sampled_from(SCORES), st.floats(0.0, 1.0)))


def _row(draw: st.DrawFn, variant: str) -> Any:
    if variant in ("binary", "binary2"):
        return _score(draw)
    if variant == "probability":
        weights = [draw(st.integers(0, 6)) for _ in CLASSES]
        if not any(weights):
            weights[draw(st.integers(0, 2))] = 1
        total = sum(weights)
        return [w / total for w in weights]
    return draw(st.one_of(st.sampled_from([0.0, 1.5, -2.0, 10.0]), _number()))


def _truth(draw: st.DrawFn, variant: str) -> Any:
    if variant == "binary":
        return draw(st.sampled_from([0, 1]))
    if variant == "binary2":
        return draw(st.sampled_from(["no", "yes"]))
    if variant == "probability":
        return draw(st.sampled_from(CLASSES))
    return draw(st.one_of(st.sampled_from([0.0, 1.5, 3.0, -2.0]), _number()))


def _response_payload(variant: str, rows: list[Any]) -> dict[str, Any]:
    if variant == "binary":
        return {"data": {"names": ["proba"], "ndarray": [[s] for s in rows]}, "meta": {}}
    if variant == "binary2":
        return {"data": {"names": ["no", "yes"], "ndarray": [[1.0 - s, s] for s in rows]}}
    if variant == "probability":
        return {"data": {"names": list(CLASSES), "ndarray": rows}}
    # A V2 (Open Inference Protocol) FP32 output, as MLServer and Triton send it.
    return {
        "model_name": KEY.model,
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [len(rows), 1], "data": rows}],
    }


@st.composite
def score_streams(draw: st.DrawFn, variant: str, max_puids: int = 10) -> ScoreStream:
    events: list[tuple[dict[str, Any], str, str, Any]] = []  # record, puid, kind, detail
    puids: dict[str, Puid] = {}
    n = 0
    for p in range(draw(st.integers(1, max_puids))):
        puid = f"p{p}"
        width = draw(st.integers(1, 2))
        rows = [_row(draw, variant) for _ in range(width)]
        puids[puid] = Puid(rows, [])
        base = draw(st.integers(0, 200)) * 1000
        n += 1
        events.append(
            (
                {
                    "headers": _headers("response", puid, f"r{n}"),
                    "value": _response_payload(variant, rows),
                    "timestamp": base + draw(st.integers(0, 3000)),
                },
                puid,
                "response",
                None,
            )
        )
        for _ in range(draw(st.integers(0, 3))):
            time_ms = base + draw(st.integers(0, 90)) * 1000 + draw(st.sampled_from([0, 0, 1, 999]))
            n += 1
            rank = identity_hash((_headers("feedback", puid, f"f{n}")["ce_type"], f"f{n}"))
            if variant != "regression" and draw(st.integers(0, 4)) == 0:
                feedback = Feedback(time_ms, None, rank)
                value: dict[str, Any] = {"reward": 1}
            else:
                truth = tuple(_truth(draw, variant) for _ in rows)
                feedback = Feedback(time_ms, truth, rank)
                value = {"truth": {"data": {"ndarray": [[t] for t in truth]}}}
            events.append(
                (
                    {"headers": _headers("feedback", puid, f"f{n}"), "value": value,
                     "timestamp": time_ms},
                    puid,
                    "feedback",
                    feedback,
                )
            )  # fmt: skip
    order = draw(st.permutations(range(len(events))))
    arrival = [events[i] for i in order]
    for _ in range(draw(st.integers(0, 3))):  # redeliveries of the same event
        at = draw(st.integers(0, len(arrival) - 1))
        arrival.insert(draw(st.integers(at + 1, len(arrival))), arrival[at])
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, (record, puid, kind, detail) in enumerate(arrival):
        records.append({"topic": "scores", "partition": 0, "offset": index, "key": None, **record})
        event_id = record["headers"]["ce_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        if kind == "response":
            puids[puid].response_arrival = index
        else:
            puids[puid].feedbacks.append((index, detail))
    return ScoreStream(variant, records, puids)


@dataclass(frozen=True)
class Live:
    score: Any
    truth: Any  # None: no term (reward-only regression)
    time: float
    stamp: tuple[int, int]


def _positive(variant: str, score: float) -> Any:
    if variant == "binary":
        return 1 if score >= 0.5 else 0
    return "yes" if score >= 0.5 else "no"


def live_outcomes(stream: ScoreStream) -> list[Live]:
    """Each joined row's score, truth, window time and apply order, by the rules."""
    out: list[Live] = []
    for puid in stream.puids.values():
        if not puid.feedbacks:
            continue
        arrival, winner = max(puid.feedbacks, key=lambda af: (af[1].time_ms, af[1].rank))
        stamp = max(arrival, puid.response_arrival)
        for row, score in enumerate(puid.rows):
            if winner.truth is not None:
                truth = winner.truth[row]
            elif stream.variant == "probability":
                truth = CLASSES[int(np.argmax(score))]
            elif stream.variant in ("binary", "binary2"):
                truth = _positive(stream.variant, score)
            else:
                truth = None
            out.append(Live(score, truth, winner.time_ms / 1000.0, (stamp, row)))
    return out


def in_window(live: list[Live], spec: WindowSpec, clock: float) -> list[Live]:
    if spec.kind is WindowKind.TOTAL:
        return live
    if spec.kind is WindowKind.COUNT:
        return sorted(live, key=lambda o: o.stamp)[-spec.size :]
    high = to_tick(clock)
    low = high - round(spec.width_s * 1_000_000)
    return [o for o in live if low < to_tick(o.time) <= high]


def expected(variant: str, live: list[Live]) -> dict[str, Any] | None:
    """The report's score object for ``variant`` (``binary``, ``probability`` or ``regression``)."""
    scored = [o for o in live if o.truth is not None]
    if not scored:
        return None
    warnings.filterwarnings("ignore", category=UserWarning)
    if variant in ("binary", "binary2"):
        positive = 1 if variant == "binary" else "yes"
        y = np.array([1 if o.truth == positive else 0 for o in scored])
        s = np.array([o.score for o in scored], dtype=float)
        both = 0 < y.sum() < len(y)
        return {
            "scored": len(scored),
            "positives": int(y.sum()),
            "roc_auc": float(roc_auc_score(y, s)) if both else None,
            "log_loss": float(log_loss(y, s, labels=[0, 1])),
            "brier": float(brier_score_loss(y, s, labels=[0, 1])),
        }
    if variant == "probability":
        y_true = [o.truth for o in scored]
        proba = np.array([o.score for o in scored], dtype=float)
        confidence = proba.max(axis=1)
        correct = np.array(
            [CLASSES[int(np.argmax(r))] == t for r, t in zip(proba, y_true, strict=True)]
        )
        bins = np.minimum((confidence * 10).astype(int), 9)
        ece = sum(
            abs(correct[bins == b].sum() - confidence[bins == b].sum()) for b in range(10)
        ) / len(scored)
        return {
            "scored": len(scored),
            "log_loss": float(log_loss(y_true, proba, labels=list(CLASSES))),
            "brier": float(brier_score_loss(y_true, proba, labels=list(CLASSES))),
            "ece": float(ece),
        }
    y = np.array([float(o.truth) for o in scored])
    p = np.array([float(o.score) for o in scored])
    zeros = int((y == 0).sum())
    result: dict[str, Any] = {
        "scored": len(scored),
        "mae": float(mean_absolute_error(y, p)),
        "mse": float(mean_squared_error(y, p)),
        "rmse": float(root_mean_squared_error(y, p)),
        "mean_error": float(np.mean(p - y)),
        "mape": None if zeros else float(mean_absolute_percentage_error(y, p)),
        "zero_truths": zeros,
    }
    if len(scored) >= 2 and len(set(y.tolist())) > 1:
        result["r2"] = float(r2_score(y, p))
    return result


def assert_numbers(actual: Any, wanted: Any, path: str = "") -> None:
    """Equal structures; floats to 1e-9 relative (sklearn sums floats, we sum fixed point)."""
    if isinstance(wanted, dict):
        assert isinstance(actual, dict), (path, actual)
        for k, v in wanted.items():
            assert_numbers(actual[k], v, f"{path}.{k}")
    elif isinstance(wanted, float):
        assert actual is not None, (path, wanted)
        assert math.isclose(actual, wanted, rel_tol=1e-9, abs_tol=1e-9), (path, actual, wanted)
    else:
        assert actual == wanted, (path, actual, wanted)
