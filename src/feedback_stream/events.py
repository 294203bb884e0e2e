"""Typed events: what every source decodes into and the core joins.

An :class:`Event` keeps only what the join and the metrics need (the model
key, the class of each row, the reward, the event time), never the payload,
so that a pending puid costs a few hundred bytes, not a copy of the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "Event",
    "EventKind",
    "ModelKey",
    "SourcePosition",
    "new_event",
]


class EventKind(StrEnum):
    """The three parts of one prediction's life that the join puts together."""

    REQUEST = "request"
    RESPONSE = "response"
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True, order=True)
class ModelKey:
    """Which model an outcome belongs to: the labels of every metric.

    Ordered so that reports list models in (namespace, deployment,
    predictor, model) order without a key function.
    """

    namespace: str = ""
    deployment: str = ""
    predictor: str = ""
    model: str = ""


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a record was read, for dead letters and for dedupe without an id.

    HTTP ingest uses topic ``"http"``, partition 0 and a per-process sequence
    number, so every source can be named the same way in an error.
    """

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded request, response or feedback.

    ``key`` is the full model key for a request or response. For a feedback
    it holds only what the feedback named: an empty ``model`` or
    ``predictor`` means "every response of this puid" on that attribute
    (EVENTS.md §3, which responses a feedback joins).

    ``classes`` is, per row, the predicted class (response) or the true
    class (feedback with a truth); ``None`` for a request, or for a feedback
    without truth. ``reward`` is the feedback's reward (``true``/``false``
    as 1.0/0.0), ``None`` when absent.

    ``identity`` is what makes two deliveries "the same event": the
    CloudEvent (type, id), or, without an id, the source position.

    ``names`` are the class names the rows were read with: for a response,
    the ``names`` its score rows were mapped through (``None`` when its
    classes are plain values); for a feedback, the names its truth was given
    with. A truth given without names is read in its response's names when
    the join pairs them (docs/semantics.md), so copy it along when rebuilding
    an event (``dataclasses.replace``).

    ``values`` are a response's rows as decoded, before any class was taken
    from them: a list with, per row, a number, a string, a boolean or a list
    of numbers (the parsed payload itself, not a copy: never mutate it).
    :mod:`feedback_stream.model_kinds` reads scores from them; ``None`` for
    requests and feedback.
    ``alias`` is a second join key of a response: the id a KServe V2 body
    gives the prediction when it differs from the logger's (the id the
    client saw), so that feedback naming either joins. ``embedded`` is, for
    a feedback that carries its own prediction (Seldon's client
    ``feedback(request, response, reward, truth)``), the predicted class of
    each row of that embedded response, with ``embedded_names`` its names;
    the join uses it only when no logged response of the puid matches.
    """

    kind: EventKind
    puid: str
    key: ModelKey
    time: float
    identity: tuple[str, ...]
    classes: tuple[str, ...] | None = None
    reward: float | None = None
    position: SourcePosition | None = None
    names: tuple[str, ...] | None = None
    values: list[Any] | None = None
    alias: str | None = None
    embedded: tuple[str, ...] | None = None
    embedded_names: tuple[str, ...] | None = None


def new_event(
    kind: EventKind,
    puid: str,
    key: ModelKey,
    time: float,
    identity: tuple[str, ...],
    classes: tuple[str, ...] | None,
    reward: float | None,
    position: SourcePosition | None,
    names: tuple[str, ...] | None,
    values: list[Any] | None = None,
    alias: str | None = None,
    embedded: tuple[str, ...] | None = None,
    embedded_names: tuple[str, ...] | None = None,
) -> Event:
    """``Event(...)`` with every field positional, for the decoder's per-record path.

    Compiled (mypyc), this is a direct native constructor call; a frozen
    dataclass's ``__init__`` in plain Python assigns every field through
    ``object.__setattr__``.
    """
    return Event(
        kind,
        puid,
        key,
        time,
        identity,
        classes,
        reward,
        position,
        names,
        values,
        alias,
        embedded,
        embedded_names,
    )
