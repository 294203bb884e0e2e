"""A batch through :meth:`Engine.process_events` equals the same events one by one."""

from __future__ import annotations

import itertools
from typing import Literal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.caps import Caps
from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.engine import Engine
from feedback_stream.events import Event
from feedback_stream.generator import GeneratorConfig, generate_records
from feedback_stream.replay import parse_record

WINDOWS = ("total", "30s", "40")


def _items(seed: int, partitions: int) -> list[Event | DecodeError]:
    config = GeneratorConfig(
        seed=seed,
        n_requests=150,
        feedback_share=0.8,
        amendment_share=0.2,
        duplicate_share=0.1,
        invalid_share=0.1,
        partitions=partitions,
    )
    out = []
    for record in generate_records(config):
        headers, value, timestamp_ms, position = parse_record(orjson.dumps(record))
        out.append(decode_kafka_record(headers, value, timestamp_ms, position))
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    partitions=st.integers(1, 3),
    route=st.sampled_from(["puid", "partition"]),
    max_pending=st.sampled_from([0, 7]),
    cuts=st.lists(st.integers(0, 700), max_size=6),
)
def test_batches_equal_one_by_one(
    seed: int,
    partitions: int,
    route: Literal["puid", "partition"],
    max_pending: int,
    cuts: list[int],
) -> None:
    items = _items(seed, partitions)
    assert any(isinstance(item, DecodeError) for item in items)

    def engine() -> Engine:
        caps = Caps(1 << 62, 1 << 62, max_pending) if max_pending else None
        return Engine(WINDOWS, route=route, caps=caps)

    one, batched = engine(), engine()
    for item in items:
        one.process_event(item)
    bounds = sorted({0, len(items), *(c for c in cuts if c < len(items))})
    for start, end in itertools.pairwise(bounds):
        batched.process_events(items[start:end])
    assert batched.clock == one.clock
    assert batched.pending == one.pending
    assert batched.report(one.clock) == one.report(one.clock)
