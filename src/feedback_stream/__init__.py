"""feedback-stream: live, exact model metrics for Seldon Core and KServe models.

Classification, binary scores at a threshold, probability quality and regression.
"""

from feedback_stream._compiled import STATUS as CORE_BUILD
from feedback_stream.decode import DecodeError, decode_attributes, decode_http, decode_kafka_record
from feedback_stream.engine import ALL_PARTITIONS, Engine, StateKey
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.join import EventStatus, JoinResult, JoinStore
from feedback_stream.metrics import Counts, WindowMetrics, compute
from feedback_stream.model_kinds import KindRule, KindSpec, ModelKinds, ModelKindsError
from feedback_stream.outcomes import Outcome, OutcomeResult, TimeBasis
from feedback_stream.partition import EventCounters, ModelCounters, PartitionState
from feedback_stream.scores import ModelKind, ResponseScores, top_scores
from feedback_stream.windows import WindowSpec

__all__ = [
    "ALL_PARTITIONS",
    "CORE_BUILD",
    "Counts",
    "DecodeError",
    "Engine",
    "Event",
    "EventCounters",
    "EventKind",
    "EventStatus",
    "JoinResult",
    "JoinStore",
    "KindRule",
    "KindSpec",
    "ModelCounters",
    "ModelKey",
    "ModelKind",
    "ModelKinds",
    "ModelKindsError",
    "Outcome",
    "OutcomeResult",
    "PartitionState",
    "ResponseScores",
    "SourcePosition",
    "StateKey",
    "TimeBasis",
    "WindowMetrics",
    "WindowSpec",
    "compute",
    "decode_attributes",
    "decode_http",
    "decode_kafka_record",
    "top_scores",
]
__version__ = "0.1.0"
