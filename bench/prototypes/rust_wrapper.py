"""The Python side of the Rust decoder prototype: Rust reads, Python builds the event.

:func:`decode_kafka_record` has the signature of
:func:`feedback_stream.decode.decode_kafka_record`. The Rust function
``decode(headers, value)`` reads the common record (lower-case ``ce_*``
headers, a Seldon event, ``data.ndarray`` rows of scores) and returns its
parts; the event is built here with the decoder's own helpers, so model keys
are the shared ones. Anything the Rust side does not read, errors included,
goes to the Python decoder: its wording of every error stays the only one.

:func:`install` makes the engine (and the service) call this instead of the
Python decoder, for one process. Measuring only: never imported by the
package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feedback_stream import decode as py_decode
from feedback_stream import engine as engine_module
from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, EventKind, SourcePosition, new_event

__all__ = ["Counter", "decode_kafka_record", "install"]

_REQUEST, _RESPONSE, _FEEDBACK = EventKind.REQUEST, EventKind.RESPONSE, EventKind.FEEDBACK
_python = py_decode.decode_kafka_record
_model_key = py_decode._model_key


class Counter:
    """How many records the Rust side read, how many went to Python."""

    rust = 0
    python = 0


def _load() -> Callable[[Any, bytes], tuple[Any, ...] | None]:
    import feedback_stream_rust_decode  # type: ignore[import-not-found]

    fast: Callable[[Any, bytes], tuple[Any, ...] | None] = feedback_stream_rust_decode.decode
    return fast


_fast: Callable[[Any, bytes], tuple[Any, ...] | None] | None = None


def decode_kafka_record(
    headers: Any, value: Any, timestamp_ms: int | float, position: SourcePosition
) -> Event | DecodeError:
    """:func:`feedback_stream.decode.decode_kafka_record`, the common case read in Rust."""
    fast = _fast
    got = (
        fast(headers, value)
        if fast is not None and type(value) is bytes and type(headers) in (list, tuple)
        else None
    )
    if got is None:
        Counter.python += 1
        return _python(headers, value, timestamp_ms, position)
    Counter.rust += 1
    kind, puid, ce_type, source, ce_id, ns, dep, pred, model, classes, names, rows, reward = got
    identity = (ce_type, source, ce_id) if source else (ce_type, ce_id)
    key = _model_key(ns, dep, pred, model)
    time = timestamp_ms / 1000.0
    if kind == 0:
        return new_event(_REQUEST, puid, key, time, identity, None, None, position, None)
    if kind == 1:
        return new_event(_RESPONSE, puid, key, time, identity, classes, None, position, names, rows)
    return new_event(_FEEDBACK, puid, key, time, identity, classes, reward, position, names)


def install() -> None:
    """Route this process's engine decode through the Rust prototype."""
    global _fast
    _fast = _load()
    setattr(engine_module, "decode_kafka_record", decode_kafka_record)  # noqa: B010
