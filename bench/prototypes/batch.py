"""Prototype: a whole batch of records through decode, join and windows in one call.

What a batched core saves over one :meth:`Engine.process_record` call per
record, in pure Python: the per-record layers (engine -> state routing ->
caps check -> state), attribute lookups hoisted out of the loop, the clock
kept in a local. The per-event work (decode, join, windows) is what it was:
a batch does not change what has to be computed per record, only what is
paid around it.

Where the engine has a batch entry point of its own
(``Engine.process_events``, a list of decoded events), the prototype
decodes the batch and hands it over; otherwise it runs its own loop. Same
semantics as :func:`bench.core.process_all` for the engine the core
benchmark builds (routed by puid, no pending cap): the expiry ticks fall at
the same offsets, and :mod:`bench.prototypes.measure` checks that the report
is identical before it times anything.
"""

from __future__ import annotations

from bench.stream import WireRecord
from feedback_stream import engine as engine_module
from feedback_stream.decode import DecodeError
from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import SourcePosition

__all__ = ["process_all_batched", "process_batch"]

_TICK_EVERY = 1000


def process_batch(engine: Engine, records: list[WireRecord], topic: str, first_offset: int) -> None:
    """Decode and process ``records`` (offsets from ``first_offset``) as one batch."""
    if engine.route != "puid" or engine.caps.max_pending:
        raise ValueError("the batch prototype covers the puid route without a pending cap")
    decode = getattr(engine_module, "decode_kafka_record")  # noqa: B009 (the Rust one, if installed)
    batched = getattr(engine, "process_events", None)
    if batched is not None:  # the engine's own batch entry point, where it has one
        batched(
            [
                decode(r.headers, r.value, r.timestamp, SourcePosition(topic, r.partition, i))
                for i, r in enumerate(records, first_offset)
            ]
        )
        return
    process = engine.state(ALL_PARTITIONS).process
    clock = engine.clock
    offset = first_offset
    for r in records:
        item = decode(r.headers, r.value, r.timestamp, SourcePosition(topic, r.partition, offset))
        offset += 1
        if type(item) is not DecodeError and item.time > clock:  # type: ignore[union-attr]
            clock = item.time  # type: ignore[union-attr]
            engine.clock = clock  # listeners may read the engine clock mid-batch
        process(item)
    engine.clock = clock


def process_all_batched(engine: Engine, records: list[WireRecord], topic: str = "bench") -> None:
    """:func:`bench.core.process_all` in batches that end where it expires (every 1000)."""
    start = 0
    n = len(records)
    while start < n:
        # process_all expires after offsets 0, 1000, 2000, ...: a batch ends on one.
        end = min(n, (start // _TICK_EVERY + 1) * _TICK_EVERY + 1 if start else 1)
        process_batch(engine, records[start:end], topic, start)
        if (end - 1) % _TICK_EVERY == 0:
            engine.expire(engine.clock)
        start = end
