"""The Kafka batch handler's counters, incremented once per batch, equal per-event increments."""

from __future__ import annotations

import itertools
import random

import orjson
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import SourcePosition
from feedback_stream.generator import GeneratorConfig, generate_records
from feedback_stream.replay import parse_record
from feedback_stream.service import Service
from tests._processor import settings as service_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _records(seed: int, partitions: int) -> list[ConsumerRecord[bytes, bytes]]:
    """A generated stream as consumed records; numeric rewards made fractional (some < 0)."""
    config = GeneratorConfig(
        seed=seed,
        n_requests=120,
        feedback_share=0.9,
        truth_share=0.5,
        amendment_share=0.2,
        duplicate_share=0.1,
        invalid_share=0.1,
        partitions=partitions,
    )
    rng = random.Random(seed)
    out = []
    for offset, line in enumerate(generate_records(config)):
        headers, value, timestamp_ms, position = parse_record(orjson.dumps(line))
        if isinstance(value, dict) and type(value.get("reward")) is int:
            # Float sums depend on the order of their terms: these make it show.
            value["reward"] = rng.uniform(-0.2, 1.0) / 3
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        out.append(
            ConsumerRecord(
                position.topic,
                position.partition,
                offset,
                round(timestamp_ms),
                0,
                None,
                raw,
                None,
                0,
                len(raw),
                [(k, v.encode() if isinstance(v, str) else v) for k, v in headers.items()],
            )
        )
    return out


def _samples(service: Service) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in service.metrics.registry.collect()
        for sample in family.samples
    }


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    partitions=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 600), max_size=6),
)
async def test_batch_counters_equal_per_event_increments(
    seed: int, partitions: int, cuts: list[int]
) -> None:
    records = _records(seed, partitions)
    config = service_settings(windows=["total", "30s", "40"])
    one, batched = Service(config), Service(config)
    for record in records:
        item = decode_kafka_record(
            record.headers,
            record.value,
            record.timestamp,
            SourcePosition(record.topic, record.partition, record.offset),
        )
        one.engine.process_event(item)  # per event: the listeners flush after each
        if isinstance(item, DecodeError):
            one.metrics.on_invalid(item)
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    for start, end in itertools.pairwise(bounds):
        await batched.apply(records[start:end])
    expected = _samples(one)
    assert any(
        name == "feedback_stream_reward_sum_total" and v for (name, _), v in expected.items()
    )
    assert any(
        name == "feedback_stream_label_delay_seconds_sum" and v for (name, _), v in expected.items()
    )
    assert _samples(batched) == expected
