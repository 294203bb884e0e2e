"""Seldon Core 2: its Kafka topics, Open Inference Protocol records and experiments.

Core 2 writes every inference of a pipeline to Kafka: a model's requests to
``<prefix>.<namespace>.model.<model>.inputs``, its responses to
``...outputs``, failures to ``<prefix>.<namespace>.errors.errors``.
:class:`Core2Decoder` reads those records (protobuf or JSON) into the same
events the Seldon Core v1 and KServe loggers give, plus a feedback topic;
:func:`topic_pattern` is the subscription of the ``seldon-core-2`` source.
"""

from feedback_stream.core2.experiments import Experiment, Experiments, routed_model
from feedback_stream.core2.records import Core2Decoder, ModelError, request_id_of
from feedback_stream.core2.topics import (
    DEFAULT_FEEDBACK_TOPIC,
    DEFAULT_PREFIX,
    Core2Topic,
    TopicKind,
    parse_topic,
    topic_pattern,
)

__all__ = [
    "DEFAULT_FEEDBACK_TOPIC",
    "DEFAULT_PREFIX",
    "Core2Decoder",
    "Core2Topic",
    "Experiment",
    "Experiments",
    "ModelError",
    "TopicKind",
    "parse_topic",
    "request_id_of",
    "routed_model",
    "topic_pattern",
]
