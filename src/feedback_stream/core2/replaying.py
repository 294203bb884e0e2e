"""Replaying Core 2 records from a file: the decoder with its model-error tally."""

from __future__ import annotations

from collections import Counter
from typing import Any

from feedback_stream.core2.records import Core2Decoder, ModelError
from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, ModelKey, SourcePosition

__all__ = ["Core2Replay"]


class Core2Replay:
    """A :data:`~feedback_stream.replay.RecordDecoder` for Core 2 records.

    Failed inferences (the errors topic) are tallied per model instead of
    becoming events; :meth:`model_errors` lists them for the report.
    """

    def __init__(self, decoder: Core2Decoder) -> None:
        self.decoder = decoder
        self.errors: Counter[ModelKey] = Counter()

    def __call__(
        self,
        topic: str,
        headers: dict[str, str],
        key: str | None,
        value: Any,
        timestamp_ms: float,
        position: SourcePosition,
    ) -> Event | DecodeError | None:
        item = self.decoder.decode(topic, headers, key, value, timestamp_ms, position)
        if isinstance(item, ModelError):
            self.errors[item.key] += 1
            return None
        return item

    def model_errors(self) -> list[dict[str, Any]]:
        """``[{"namespace", "deployment", "predictor", "model", "errors"}]``, sorted by model."""
        return [
            {
                "namespace": key.namespace,
                "deployment": key.deployment,
                "predictor": key.predictor,
                "model": key.model,
                "errors": count,
            }
            for key, count in sorted(self.errors.items())
        ]
