"""The join both baseline jobs run, written once so they cannot drift apart.

Plain functions over plain dicts (what Quix Streams and Faust keep in their
state stores): a puid's responses by predictor and its waiting feedbacks.
The rules are EVENTS.md §3 as far as the benchmark stream needs them: a
feedback joins the responses whose predictor/model it names (all when it
names none); per row, a truth decides correctness, else reward 1 means
right and reward 0 wrong. Records are decoded by the project's own decoder,
so the decode cost is the same for every contender.
"""

from __future__ import annotations

from typing import Any

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import Event, EventKind, SourcePosition

__all__ = ["decode", "join"]

Outcome = dict[str, Any]


def decode(headers: Any, value: bytes, timestamp_ms: int, position: SourcePosition) -> Event | None:
    item = decode_kafka_record(headers or [], value, timestamp_ms, position)
    return None if isinstance(item, DecodeError) else item


def _outcomes(response: dict[str, Any], feedback: dict[str, Any], time: float) -> list[Outcome]:
    truth, reward = feedback["truth"], feedback["reward"]
    out: list[Outcome] = []
    for row, predicted in enumerate(response["classes"]):
        if truth is not None:
            correct: int | None = int(truth[row] == predicted)
        elif reward == 1.0:
            correct = 1
        elif reward == 0.0:
            correct = 0
        else:
            correct = None
        if correct is not None:
            out.append({"model": response["model"], "correct": correct, "time": time})
    return out


def _matches(feedback: dict[str, Any], response: dict[str, Any]) -> bool:
    return (not feedback["predictor"] or feedback["predictor"] == response["predictor"]) and (
        not feedback["modelid"] or feedback["modelid"] == response["modelid"]
    )


def join(event: Event, entry: dict[str, Any]) -> list[Outcome]:
    """Update a puid's ``entry`` (the state value) with ``event``; return new outcomes."""
    key = event.key
    if event.kind is EventKind.RESPONSE and event.classes is not None:
        response = {
            "predictor": key.predictor,
            "modelid": key.model,
            "model": f"{key.namespace}/{key.deployment}/{key.predictor}/{key.model}",
            "classes": list(event.classes),
        }
        entry.setdefault("responses", []).append(response)
        out: list[Outcome] = []
        for feedback in entry.get("feedbacks", ()):
            if _matches(feedback, response):
                out.extend(_outcomes(response, feedback, feedback["time"]))
        return out
    if event.kind is EventKind.FEEDBACK:
        feedback = {
            "predictor": key.predictor,
            "modelid": key.model,
            "truth": list(event.classes) if event.classes is not None else None,
            "reward": event.reward,
            "time": event.time,
        }
        entry.setdefault("feedbacks", []).append(feedback)
        out = []
        for response in entry.get("responses", ()):
            if _matches(feedback, response):
                out.extend(_outcomes(response, feedback, event.time))
        return out
    return []
