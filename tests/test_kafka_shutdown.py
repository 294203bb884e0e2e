"""SIGTERM mid-stream: the batch finishes, offsets are committed, state is checkpointed,
and a new processor resumes without reading or counting anything twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import generate_latest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig, generate_records
from feedback_stream.service import Service
from tests._processor import (
    assert_window_matches,
    create_topic,
    get_json,
    kafka_settings,
    parse_metrics,
    planned,
    produce,
    sample_sum,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        out = {}
        for partition in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, partition))
            out[partition] = -1 if offset is None else offset
        return out
    finally:
        await consumer.stop()


async def test_sigterm_commits_checkpoints_and_a_new_processor_resumes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique("sigterm"), unique("sigterm")
    config = GeneratorConfig(
        seed=8,
        n_requests=240,
        deployments=(DeploymentSpec("iris", encoding="seldon_mixed"),),
        request_rate=20.0,
        start_ms=int(time.time() * 1000) - 60_000,
        feedback_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=3.0,
        amendment_share=0.1,
        partitions=2,
        topic=topic,
    )
    records, expected = planned(config)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    await create_topic(kafka_bootstrap, topic, partitions=2)
    member = kafka_settings(
        kafka_bootstrap,
        topic,
        group,
        kafka_max_batch=25,
        state_dir=str(tmp_path / "state"),
        windows=["total", "1000"],
    )

    await produce(kafka_bootstrap, topic, first)
    old = Service(member)
    running = asyncio.create_task(old.run())
    await wait_until(lambda: old.kafka is not None and old.kafka.records == len(first), 60, "A")
    pending_at_the_cut = old.engine.pending
    os.kill(os.getpid(), signal.SIGTERM)  # the real signal, through the real handler
    await asyncio.wait_for(running, timeout=30)
    old_samples = parse_metrics(generate_latest(old.registry).decode())

    per_partition = [sum(1 for r in first if r["partition"] == p) for p in range(2)]
    committed = await _committed(kafka_bootstrap, group, topic, 2)
    assert committed == {0: per_partition[0], 1: per_partition[1]}
    assert pending_at_the_cut > 0, "the cut must leave joins open for the test to mean anything"
    assert old.state_store is not None
    assert old.state_store.commits > 0, "the state went to the state topic with the offsets"

    await produce(kafka_bootstrap, topic, second)
    new = Service(member)
    await new.start()
    try:
        assert new.kafka is not None
        kafka = new.kafka
        await wait_until(lambda: kafka.records >= len(second), 60, "B")
        await asyncio.sleep(1.0)  # anything read twice would show up by now
        assert kafka.records == len(second)
        url = f"http://127.0.0.1:{new.http_port}"
        document = await get_json(f"{url}/api/v1/metrics")
        new_samples = parse_metrics(generate_latest(new.registry).decode())
    finally:
        await new.stop()

    # Windows: the restored state plus the new records, exactly the oracle.
    for model in document["models"]:
        key = next(k for k in expected if k.predictor == model["predictor"])
        assert_window_matches(model["windows"]["total"], expected[key])

    # Counters: the new processor continues from the restored values, so its
    # counters alone are the oracle (increase() across the restart is right).
    def net(predictor: str, result: str) -> float:
        match = {"predictor": predictor, "result": result}
        return sample_sum(new_samples, "feedback_stream_outcomes_total", **match) - sample_sum(
            new_samples, "feedback_stream_outcomes_retracted_total", **match
        )

    for key, want in expected.items():
        assert net(key.predictor, "correct") == want.correct
        assert net(key.predictor, "incorrect") == want.outcomes - want.correct
    events = sum(
        sample_sum(new_samples, "feedback_stream_events_total", status=status)
        for status in ("accepted", "amended", "duplicate")
    )
    assert events == len(records)
    old_events = sum(
        sample_sum(old_samples, "feedback_stream_events_total", status=status)
        for status in ("accepted", "amended", "duplicate")
    )
    assert old_events == len(first)


async def test_a_stale_checkpoint_is_not_restored(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A checkpoint whose offsets differ from the group's is dropped: never count twice."""
    topic, group = unique("stale"), unique("stale")
    config = GeneratorConfig(
        seed=9,
        n_requests=40,
        start_ms=int(time.time() * 1000) - 30_000,
        feedback_share=1.0,
        feedback_delay="fixed",
        feedback_delay_mean_s=0.5,
        topic=topic,
    )
    records = list(generate_records(config))
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, records)
    member = kafka_settings(
        kafka_bootstrap, topic, group, state_dir=str(tmp_path), windows=["total"]
    )
    old = Service(member)
    await old.start()
    assert old.kafka is not None
    old_kafka = old.kafka
    await wait_until(lambda: old_kafka.records == len(records), 60, "A")
    await old.stop()
    # Someone else's group moves the offset on: the checkpoint no longer fits.
    moved = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    await moved.start()
    try:
        await moved.commit({TopicPartition(topic, 0): len(records) - 5})
    finally:
        await moved.stop()
    new = Service(member)
    await new.start()
    try:
        assert new.kafka is not None
        new_kafka = new.kafka
        await wait_until(lambda: new_kafka.assigned_once.is_set(), 30, "assignment")
        await wait_until(lambda: new_kafka.records == 5, 30, "the last five records")
        document = await get_json(f"http://127.0.0.1:{new.http_port}/api/v1/metrics")
    finally:
        await new.stop()
    accepted = sum(document["events"][kind] for kind in ("request", "response", "feedback"))
    assert accepted + document["events"]["duplicate"] == 5
