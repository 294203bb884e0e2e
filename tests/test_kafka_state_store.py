"""The state topic against a real broker: a crash between writing the state and committing
it leaves the previous commit; a restore after a stop longer than the TTL keeps the
cumulative window and expires the join entries as usual."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.generator import GeneratorConfig, generate_records
from feedback_stream.kafka.state_store import StateStore
from feedback_stream.replay import replay
from feedback_stream.service import Service
from tests._processor import (
    create_topic,
    get_json,
    kafka_settings,
    produce,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

WINDOWS = ("total", "1m", "50")


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        offset = await consumer.committed(tp)
        return None if offset is None else int(offset)
    finally:
        await consumer.stop()


async def _open(settings: Any, tp: TopicPartition, engine: Engine) -> StateStore:
    """What a new owner does on assignment: fence, read the group's offset, restore."""
    store = StateStore(settings, engine)
    await store.ensure_topic([tp.topic])
    await store.prepare(ALL_PARTITIONS)
    offset = await _committed(settings.kafka_bootstrap_servers, settings.kafka_group_id, tp)
    await store.restore(ALL_PARTITIONS, {tp: offset})
    return store


class _InjectedCrash(Exception):
    """The process dies here."""


async def test_a_crash_between_writing_state_and_committing_leaves_the_last_commit(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("fault"), unique("fault")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    settings = kafka_settings(kafka_bootstrap, topic, group, windows=list(WINDOWS))
    config = GeneratorConfig(
        seed=5, n_requests=400, feedback_share=0.8, amendment_share=0.2, topic=topic
    )
    lines = [orjson.dumps(r) for r in generate_records(config)]
    first, second, third = lines[:500], lines[500:800], lines[800:]

    crashed = Engine(WINDOWS)
    store = await _open(settings, tp, crashed)
    replay(first, crashed)
    assert await store.commit({tp: len(first)})
    at_commit = crashed.report(crashed.clock)
    replay(second, crashed)
    (owned,) = store._owned.values()

    async def die() -> None:
        raise _InjectedCrash

    # Records and offsets are in the open transaction; the commit never happens.
    owned.producer.commit_transaction = die
    with pytest.raises(_InjectedCrash):
        await store.commit({tp: len(first) + len(second)})

    # A new owner, while the crashed one's producer still exists (a zombie).
    engine = Engine(WINDOWS)
    successor = await _open(settings, tp, engine)
    try:
        assert await _committed(kafka_bootstrap, group, tp) == len(first)
        assert engine.report(crashed.clock) == at_commit
        # It goes on from the commit and ends where the crashed one would have.
        replay(second, engine)
        replay(third, engine)
        replay(third, crashed)
        assert engine.report(crashed.clock) == crashed.report(crashed.clock)
        assert await successor.commit({tp: len(lines)})
    finally:
        await successor.stop()
        await owned.producer.stop()
    # What the successor committed is what the next owner restores.
    again = Engine(WINDOWS)
    final = await _open(settings, tp, again)
    try:
        assert again.report(crashed.clock) == crashed.report(crashed.clock)
    finally:
        await final.stop()


async def test_a_restore_after_a_stop_longer_than_the_ttl_keeps_the_total_window(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique("downtime"), unique("downtime")
    ttl = 3.0
    config = GeneratorConfig(
        seed=6,
        n_requests=200,
        start_ms=int(time.time() * 1000) - 2_000,
        request_rate=400.0,
        feedback_share=0.6,
        feedback_delay="fixed",
        feedback_delay_mean_s=0.1,
        partitions=2,
        topic=topic,
    )
    records = list(generate_records(config))
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await produce(kafka_bootstrap, topic, records)
    member = kafka_settings(kafka_bootstrap, topic, group, windows=["total"], ttl_s=ttl)

    before = Service(member)
    await before.start()
    try:
        assert before.kafka is not None
        source = before.kafka
        await wait_until(lambda: source.records == len(records), 60, "every record")
        document = await get_json(f"http://127.0.0.1:{before.http_port}/api/v1/metrics")
    finally:
        await before.stop()
    assert document["events"]["pending"] > 0, "some puids must wait for their feedback"
    await asyncio.sleep(ttl + 2.0)  # the state outlives its TTL in Kafka

    after = Service(member)
    await after.start()
    try:
        url = f"http://127.0.0.1:{after.http_port}/api/v1/metrics"
        await wait_until(lambda: after.engine.states and after.engine.pending == 0, 30, "expiry")
        restored = await get_json(url)
    finally:
        await after.stop()
    for old, new in zip(document["models"], restored["models"], strict=True):
        assert new["windows"]["total"] == old["windows"]["total"]
        assert new["counters"] == old["counters"]
    expired = restored["events"]["expired"]
    assert sum(expired.values()) > 0, "the stale join entries expired, counted as usual"
    assert restored["events"]["pending"] == 0
