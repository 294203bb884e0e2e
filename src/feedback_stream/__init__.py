"""feedback-stream: live, exact classification metrics for Seldon Core and KServe models."""

from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition

__all__ = ["Event", "EventKind", "ModelKey", "SourcePosition"]
__version__ = "0.1.0"
