"""Seldon Core 2's Kafka topic names: what a topic is, and which topics to read.

Core 2 names every topic ``<prefix>.<namespace>.<kind>.<name>.<direction>``
(the prefix is ``seldon`` unless the installation sets ``topicPrefix``):

========================================  ====================================
topic                                     holds
========================================  ====================================
``<prefix>.<ns>.model.<model>.inputs``    the requests a model got
``<prefix>.<ns>.model.<model>.outputs``   the model's responses
``<prefix>.<ns>.pipeline.<p>.inputs``     the requests of a pipeline
``<prefix>.<ns>.pipeline.<p>.outputs``    a pipeline's responses
``<prefix>.<ns>.errors.errors``           failed inferences, one topic a namespace
========================================  ====================================

The prefix may itself hold dots (Core 2 accepts ``[A-Za-z0-9._-]+``), so a
topic is read from its end: the last four parts are namespace, kind, name
and direction (three for the errors topic). Model and pipeline names are
Kubernetes resource names, without dots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "DEFAULT_FEEDBACK_TOPIC",
    "DEFAULT_PREFIX",
    "Core2Topic",
    "TopicKind",
    "parse_topic",
    "topic_pattern",
]

DEFAULT_PREFIX: Final = "seldon"
"""Core 2's topic prefix when its ``topicPrefix`` is not set."""

DEFAULT_FEEDBACK_TOPIC: Final = "feedback-stream.feedback"
"""Where feedback for Core 2 models is read from, unless configured otherwise."""


class TopicKind(StrEnum):
    """What a Core 2 topic carries."""

    MODEL_INPUTS = "model_inputs"
    MODEL_OUTPUTS = "model_outputs"
    PIPELINE_INPUTS = "pipeline_inputs"
    PIPELINE_OUTPUTS = "pipeline_outputs"
    ERRORS = "errors"


@dataclass(frozen=True, slots=True)
class Core2Topic:
    """A Core 2 topic, read from its name.

    ``name`` is the model or pipeline the topic belongs to (empty for the
    errors topic).
    """

    kind: TopicKind
    namespace: str
    name: str

    @property
    def is_pipeline(self) -> bool:
        return self.kind in (TopicKind.PIPELINE_INPUTS, TopicKind.PIPELINE_OUTPUTS)

    @property
    def is_request(self) -> bool:
        return self.kind in (TopicKind.MODEL_INPUTS, TopicKind.PIPELINE_INPUTS)


_KINDS: Final = {
    ("model", "inputs"): TopicKind.MODEL_INPUTS,
    ("model", "outputs"): TopicKind.MODEL_OUTPUTS,
    ("pipeline", "inputs"): TopicKind.PIPELINE_INPUTS,
    ("pipeline", "outputs"): TopicKind.PIPELINE_OUTPUTS,
}


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> Core2Topic | None:
    """What ``topic`` is, or ``None`` when it is not a Core 2 topic of ``prefix``.

    >>> parse_topic("seldon.prod.model.iris.outputs")
    Core2Topic(kind=<TopicKind.MODEL_OUTPUTS: 'model_outputs'>, namespace='prod', name='iris')
    >>> parse_topic("seldon.prod.errors.errors").kind.value
    'errors'
    """
    head = prefix + "."
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split(".")
    if len(parts) == 3 and parts[1:] == ["errors", "errors"] and parts[0]:
        return Core2Topic(TopicKind.ERRORS, parts[0], "")
    if len(parts) != 4 or not all(parts):
        return None
    kind = _KINDS.get((parts[1], parts[3]))
    if kind is None:
        return None
    return Core2Topic(kind, parts[0], parts[2])


def topic_pattern(
    prefix: str = DEFAULT_PREFIX,
    namespace: str = "",
    *,
    inputs: bool = False,
    errors: bool = True,
    feedback_topic: str = DEFAULT_FEEDBACK_TOPIC,
) -> str:
    """The regex of the topics a Core 2 reader subscribes to.

    Every model's outputs of ``namespace`` (any namespace when empty), and
    optionally their inputs (for request time), the namespace's errors topic
    and the feedback topic.

    >>> topic_pattern("seldon", "prod", errors=False, feedback_topic="")
    '^seldon\\\\.prod\\\\.model\\\\.[^.]+\\\\.outputs$'
    """
    ns = re.escape(namespace) if namespace else "[^.]+"
    base = f"{re.escape(prefix)}\\.{ns}"
    direction = "(?:inputs|outputs)" if inputs else "outputs"
    alternatives = [f"{base}\\.model\\.[^.]+\\.{direction}"]
    if errors:
        alternatives.append(f"{base}\\.errors\\.errors")
    if feedback_topic:
        alternatives.append(re.escape(feedback_topic))
    if len(alternatives) == 1:
        return f"^{alternatives[0]}$"
    return "^(?:" + "|".join(alternatives) + ")$"
