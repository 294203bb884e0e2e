"""Feed a replay file (one consumed Kafka record per JSON line) through an engine.

Each line is ``{"topic", "partition", "offset", "timestamp" (ms), "key",
"headers": {name: str}, "value"}``, ``value`` being the record value as JSON,
or a string where it was not JSON; a binary value (protobuf) is given as
``"value_base64"`` instead. Record timestamps are the event time and
the clock: before each record the engine's clock moves to the newest
timestamp seen and join entries past their TTL expire, so a replay gives
the numbers the live processor would have given.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.engine import Engine
from feedback_stream.events import Event, SourcePosition

__all__ = [
    "LineError",
    "RecordDecoder",
    "ReplayAborted",
    "ReplayResult",
    "parse_line",
    "parse_record",
    "replay",
]

RecordDecoder = Callable[
    [str, dict[str, str], str | None, Any, float, SourcePosition], Event | DecodeError | None
]
"""Decodes (topic, headers, key, value, timestamp_ms, position); ``None``: consumed, no event."""


@dataclass(frozen=True, slots=True)
class LineError:
    """An invalid line: its 1-based number and why."""

    line: int
    code: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}: {self.reason}"


class ReplayAborted(Exception):
    """Raised in strict mode at the first invalid line."""

    def __init__(self, error: LineError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class ReplayResult:
    records: int = 0
    errors: list[LineError] = field(default_factory=list)
    clock: float | None = None


_INT_FIELDS = ("partition", "offset")


def parse_record(line: bytes | str) -> tuple[dict[str, str], Any, float, SourcePosition]:
    """Read one replay line into (headers, value, timestamp_ms, position).

    Raises:
        ValueError: the line is not a replay record, with the reason.
    """
    headers, _, value, timestamp_ms, position = parse_line(line)
    return headers, value, timestamp_ms, position


def parse_line(
    line: bytes | str,
) -> tuple[dict[str, str], str | None, Any, float, SourcePosition]:
    """Read one replay line into (headers, key, value, timestamp_ms, position).

    Raises:
        ValueError: the line is not a replay record, with the reason.
    """
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("a replay line must be a JSON object (a Kafka record)")
    topic = record.get("topic")
    if not isinstance(topic, str):
        raise ValueError("'topic' must be a string")
    for name in _INT_FIELDS:
        number = record.get(name)
        if not isinstance(number, int) or isinstance(number, bool):
            raise ValueError(f"{name!r} must be an integer")
    timestamp = record.get("timestamp")
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise ValueError("'timestamp' must be a number of milliseconds since the epoch")
    headers = record.get("headers")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError("'headers' must be an object of string values")
    key = record.get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError("'key' must be a string or null")
    if "value_base64" in record:
        try:
            value: Any = base64.b64decode(record["value_base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ValueError("'value_base64' is not base64") from None
    elif "value" in record:
        value = record["value"]
    else:
        raise ValueError("'value' is missing")
    position = SourcePosition(topic, record["partition"], record["offset"])
    return headers, key, value, float(timestamp), position


def replay(
    lines: Iterable[bytes | str],
    engine: Engine,
    *,
    strict: bool = False,
    on_error: Callable[[LineError], None] | None = None,
    decoder: RecordDecoder | None = None,
) -> ReplayResult:
    """Process every line; count and report invalid ones.

    ``decoder`` reads the records instead of the CloudEvents decoder (the
    Seldon Core 2 source); a record it returns ``None`` for is counted
    only by the decoder itself.

    Raises:
        ReplayAborted: in strict mode, at the first invalid line.
    """
    result = ReplayResult()

    def fail(number: int, code: str, reason: str) -> None:
        error = LineError(number, code, reason)
        result.errors.append(error)
        if on_error is not None:
            on_error(error)
        if strict:
            raise ReplayAborted(error)

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        result.records += 1
        try:
            headers, key, value, timestamp_ms, position = parse_line(line)
        except ValueError as exc:
            engine.process_event(DecodeError(str(exc), "bad_record"))
            fail(number, "bad_record", str(exc))
            continue
        engine.advance(timestamp_ms / 1000.0)
        engine.expire(engine.clock)
        if decoder is None:
            item = decode_kafka_record(headers, value, timestamp_ms, position)
        else:
            decoded = decoder(position.topic, headers, key, value, timestamp_ms, position)
            if decoded is None:
                continue
            item = decoded
        joined = engine.process_event(item)
        if isinstance(item, DecodeError):
            fail(number, item.code, item.reason)
        elif joined is not None:
            for error in joined.errors:
                fail(number, error.code, error.reason)
    if engine.clock != float("-inf"):
        engine.expire(engine.clock)
        result.clock = engine.clock
    return result
