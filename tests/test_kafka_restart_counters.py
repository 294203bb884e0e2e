"""Prometheus counters a restart must carry over: after SIGKILL and restore, every counter
equals what the uninterrupted process showed (docs/state.md: "every number ... is derived
from a per-partition state that lives in Kafka").
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests._processor import create_topic, produce, sample_sum, unique
from tests.test_kafka_durable_state import (
    FAST_GROUP,
    _args,
    _caught_up,
    _Processor,
    _wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def _record(topic: str, offset: int, value: Any, puid: str, kind: str) -> Any:
    ce_type = {
        "response": "io.seldon.serving.inference.response",
        "feedback": "io.seldon.serving.feedback",
    }[kind]
    return {
        "topic": topic,
        "partition": 0,
        "offset": offset,
        "timestamp": int(time.time() * 1000) + offset,
        "key": puid,
        "headers": {
            "type": ce_type,
            "content-type": "application/json",
            "requestid": puid,
            "namespace": "prod",
            "inferenceservicename": "dep",
            "endpoint": "default",
            "modelid": "m",
        },
        "value": value,
    }


def _classes(*rows: list[float]) -> Any:
    return {"data": {"names": ["a", "b"], "ndarray": list(rows)}}


async def _restart_and_compare(
    kafka_bootstrap: str, tmp_path: Path, records: list[Any], names: list[str]
) -> None:
    topic, group = records[0]["topic"], unique("ctr")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, records)
    args = _args(kafka_bootstrap, topic, group, *FAST_GROUP)
    log = tmp_path / "processor.log"
    first = _Processor(args, log)
    try:
        await _wait_ready(first, 60)
        await _caught_up(kafka_bootstrap, group, topic, 1, 60)
        await asyncio.sleep(0.5)
        before = await first.metrics()
    finally:
        first.kill()
    second = _Processor(args, log)
    try:
        await _wait_ready(second, 60)
        after = await second.metrics()
    finally:
        second.terminate()
    for name in names:
        assert sample_sum(after, name) == sample_sum(before, name), (
            name,
            sample_sum(before, name),
            sample_sum(after, name),
        )


async def test_reward_sum_counter_is_the_same_after_a_restart_with_negative_rewards(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Live, negative rewards are left out of the sum; a restore must not fold them back in."""
    topic = unique("reward")
    records = [
        _record(topic, 0, _classes([0.2, 0.8]), "p1", "response"),
        _record(topic, 1, {"reward": 1.0}, "p1", "feedback"),
        _record(topic, 2, _classes([0.7, 0.3]), "p2", "response"),
        _record(topic, 3, {"reward": -1.0}, "p2", "feedback"),
        _record(topic, 4, _classes([0.6, 0.4]), "p3", "response"),
        _record(topic, 5, {"reward": 0.5}, "p3", "feedback"),
    ]
    await _restart_and_compare(
        kafka_bootstrap,
        tmp_path,
        records,
        ["feedback_stream_reward_sum_total", "feedback_stream_reward_count_total"],
    )


async def test_needs_kind_counter_is_the_same_after_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A response refused as needs_kind is counted per model; a restore must carry it."""
    topic = unique("kind")
    single = {"data": {"names": ["proba"], "ndarray": [[0.1951846770138402]]}}
    records = [
        _record(topic, 0, single, "k1", "response"),
        _record(topic, 1, single, "k2", "response"),
        _record(topic, 2, _classes([0.2, 0.8]), "k3", "response"),
    ]
    await _restart_and_compare(
        kafka_bootstrap,
        tmp_path,
        records,
        ["feedback_stream_needs_kind_responses_total", "feedback_stream_invalid_events_total"],
    )
