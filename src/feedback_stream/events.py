"""Typed events: what every source decodes into and the core joins.

An :class:`Event` keeps only what the join and the metrics need (the model
key, the class of each row, the reward, the event time), never the payload,
so that a pending puid costs a few hundred bytes, not a copy of the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

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


class ModelKey:
    """Which model an outcome belongs to: the labels of every metric.

    Immutable (``Final`` attributes), hashable, and ordered so that reports
    list models in (namespace, deployment, predictor, model) order without a
    key function. A plain class rather than a frozen dataclass: it is hashed
    several times per record, and compiled (mypyc) its hash is a stored
    field where a dataclass's ``__hash__`` would run interpreted.
    """

    __slots__ = ("_hash", "deployment", "model", "namespace", "predictor")

    def __init__(
        self, namespace: str = "", deployment: str = "", predictor: str = "", model: str = ""
    ) -> None:
        self.namespace: Final = namespace
        self.deployment: Final = deployment
        self.predictor: Final = predictor
        self.model: Final = model
        self._hash: Final = hash((namespace, deployment, predictor, model))

    def _fields(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.deployment, self.predictor, self.model)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, ModelKey):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.model == other.model
            and self.predictor == other.predictor
            and self.deployment == other.deployment
            and self.namespace == other.namespace
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __lt__(self, other: ModelKey) -> bool:
        return self._fields() < other._fields()

    def __le__(self, other: ModelKey) -> bool:
        return self._fields() <= other._fields()

    def __gt__(self, other: ModelKey) -> bool:
        return self._fields() > other._fields()

    def __ge__(self, other: ModelKey) -> bool:
        return self._fields() >= other._fields()

    def __reduce__(self) -> tuple[type[ModelKey], tuple[str, str, str, str]]:
        return (ModelKey, self._fields())  # the hash is per process: recompute it

    def __repr__(self) -> str:
        return (
            f"ModelKey(namespace={self.namespace!r}, deployment={self.deployment!r}, "
            f"predictor={self.predictor!r}, model={self.model!r})"
        )


class SourcePosition:
    """Where a record was read, for dead letters and for dedupe without an id.

    HTTP ingest uses topic ``"http"``, partition 0 and a per-process sequence
    number, so every source can be named the same way in an error. Immutable
    (``Final`` attributes); a plain class, built once per record, whose
    constructor compiles to native code (a dataclass's runs interpreted).
    """

    __slots__ = ("offset", "partition", "topic")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic: Final = topic
        self.partition: Final = partition
        self.offset: Final = offset

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourcePosition):
            return NotImplemented
        return (
            self.offset == other.offset
            and self.partition == other.partition
            and self.topic == other.topic
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.topic, self.partition, self.offset))

    def __reduce__(self) -> tuple[type[SourcePosition], tuple[str, int, int]]:
        return (SourcePosition, (self.topic, self.partition, self.offset))

    def __repr__(self) -> str:
        return (
            f"SourcePosition(topic={self.topic!r}, partition={self.partition!r}, "
            f"offset={self.offset!r})"
        )

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(slots=True)
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

    def __init__(
        self,
        kind: EventKind,
        puid: str,
        key: ModelKey,
        time: float,
        identity: tuple[str, ...],
        classes: tuple[str, ...] | None = None,
        reward: float | None = None,
        position: SourcePosition | None = None,
        names: tuple[str, ...] | None = None,
        values: list[Any] | None = None,
        alias: str | None = None,
        embedded: tuple[str, ...] | None = None,
        embedded_names: tuple[str, ...] | None = None,
    ) -> None:
        # Written out, not generated: compiled (mypyc), an explicit __init__ is
        # native code, a dataclass's generated one runs interpreted.
        self.kind = kind
        self.puid = puid
        self.key = key
        self.time = time
        self.identity = identity
        self.classes = classes
        self.reward = reward
        self.position = position
        self.names = names
        self.values = values
        self.alias = alias
        self.embedded = embedded
        self.embedded_names = embedded_names


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
