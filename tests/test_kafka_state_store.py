"""The state topic against a real broker: a crash between writing the state and committing
it leaves the previous commit; a restore after a stop longer than the TTL keeps the
cumulative window and expires the join entries as usual; the topic is created compacted
(a broker that auto-creates topics notwithstanding); a commit the broker refuses for good
stops the processor (exit non-zero) instead of retrying forever."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.generator import GeneratorConfig, generate_records
from feedback_stream.kafka.state_store import StateCommitFailed, StateStore
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


@pytest.mark.parametrize("committed", [False, True], ids=["in-flight", "committed"])
async def test_a_crash_while_consumption_goes_on_during_a_commit_restores_a_commit(
    kafka_bootstrap: str, committed: bool
) -> None:
    """The service applies the next batches while a state transaction commits.

    A crash then leaves either the previous commit (the transaction was
    still open: the new owner aborts it) or this one, exactly as it was
    staged: nothing applied after the stage leaks into it.
    """
    topic, group = unique("inflight"), unique("inflight")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    settings = kafka_settings(kafka_bootstrap, topic, group, windows=list(WINDOWS))
    config = GeneratorConfig(
        seed=7, n_requests=400, feedback_share=0.8, amendment_share=0.2, topic=topic
    )
    lines = [orjson.dumps(r) for r in generate_records(config)]
    first, second, third = lines[:500], lines[500:800], lines[800:]

    crashed = Engine(WINDOWS)
    store = await _open(settings, tp, crashed)
    replay(first, crashed)
    assert await store.commit({tp: len(first)})
    first_clock, at_first = crashed.clock, crashed.report(crashed.clock)
    replay(second, crashed)
    staged = store.stage({tp: len(first) + len(second)})
    second_clock, at_second = crashed.clock, crashed.report(crashed.clock)
    (owned,) = store._owned.values()
    stalled = asyncio.Event()

    async def stall() -> None:
        stalled.set()
        await asyncio.Event().wait()  # the process dies before the commit returns

    if not committed:
        owned.producer.commit_transaction = stall
    write = asyncio.ensure_future(store.write(staged))
    replay(third, crashed)  # consumption goes on meanwhile
    if committed:
        assert await write
    else:
        await asyncio.wait_for(stalled.wait(), 30)
        assert not write.done()

    # A new owner, while the crashed one's producer still exists (a zombie).
    engine = Engine(WINDOWS)
    successor = await _open(settings, tp, engine)
    try:
        if committed:
            assert await _committed(kafka_bootstrap, group, tp) == len(first) + len(second)
            assert engine.report(second_clock) == at_second
            replay(third, engine)
        else:
            assert await _committed(kafka_bootstrap, group, tp) == len(first)
            assert engine.report(first_clock) == at_first
            replay(second, engine)
            replay(third, engine)
        assert engine.report(crashed.clock) == crashed.report(crashed.clock)
        assert await successor.commit({tp: len(lines)})
    finally:
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
        await successor.stop()
        await owned.producer.stop()
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


async def _topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        ((_, _, _, _, entries),) = response.resources
        return {name: value for name, value, *_ in entries}
    finally:
        await admin.close()


async def _set_topic_config(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()


async def test_the_state_topic_is_created_compacted_on_a_broker_that_auto_creates_topics(
    kafka_bootstrap: str,
) -> None:
    # The test broker has auto.create.topics.enable=true: a metadata request naming the
    # missing topic would create it with cleanup.policy=delete and 1 MiB records.
    topic, group = unique("created"), unique("created")
    await create_topic(kafka_bootstrap, topic, partitions=3)
    store = StateStore(kafka_settings(kafka_bootstrap, topic, group), Engine(("total",)))
    assert await store.ensure_topic([topic]) == 1
    config = await _topic_config(kafka_bootstrap, store.topic)
    assert config["cleanup.policy"] == "compact"
    assert int(config["max.message.bytes"]) == store.max_record_bytes == 64 << 20


async def test_an_existing_state_topic_that_deletes_by_age_is_refused(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("deleting"), unique("deleting")
    settings = kafka_settings(kafka_bootstrap, topic, group)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{group}-state", 1, 1)])
    finally:
        await admin.close()
    store = StateStore(settings, Engine(("total",)))
    with pytest.raises(StateCommitFailed, match=r"cleanup\.policy=delete"):
        await store.ensure_topic([topic])


async def test_a_commit_the_broker_refuses_for_good_fails_every_later_commit(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("refused"), unique("refused")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    settings = kafka_settings(kafka_bootstrap, topic, group, windows=list(WINDOWS))
    lines = [
        orjson.dumps(r)
        for r in generate_records(GeneratorConfig(seed=8, n_requests=60, topic=topic))
    ]
    engine = Engine(WINDOWS)
    store = await _open(settings, tp, engine)
    try:
        replay(lines[:40], engine)
        assert await store.commit({tp: 40})
        # The operator lowers the topic's limit under the running processor: the broker
        # now refuses the next commit's records (MESSAGE_TOO_LARGE), which no retry fixes.
        await _set_topic_config(
            kafka_bootstrap,
            store.topic,
            {"cleanup.policy": "compact", "max.message.bytes": "300"},
        )
        replay(lines[40:], engine)
        with pytest.raises(StateCommitFailed, match="MessageSizeTooLarge"):
            await store.commit({tp: len(lines)})
        with pytest.raises(StateCommitFailed):
            await store.commit({tp: len(lines)})
    finally:
        await store.stop()
    assert await _committed(kafka_bootstrap, group, tp) == 40


async def test_a_record_over_the_state_topics_limit_is_refused_before_it_is_sent(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("limit"), unique("limit")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    settings = kafka_settings(kafka_bootstrap, topic, group, windows=list(WINDOWS))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    f"{group}-state",
                    1,
                    1,
                    topic_configs={"cleanup.policy": "compact", "max.message.bytes": "2000"},
                )
            ]
        )
    finally:
        await admin.close()
    engine = Engine(WINDOWS)
    store = await _open(settings, tp, engine)
    try:
        assert store.max_record_bytes == 2000
        lines = [
            orjson.dumps(r)
            for r in generate_records(GeneratorConfig(seed=9, n_requests=30, topic=topic))
        ]
        replay(lines, engine)
        assert await store.commit({tp: len(lines)})  # every record fits
        (owned,) = store._owned.values()
        owned.unsent[b"*\x00Sbig"] = b"x" * 3000
        with pytest.raises(StateCommitFailed, match=r"max\.message\.bytes 2,000"):
            await store.commit({tp: len(lines)})
    finally:
        await store.stop()


async def test_a_restored_state_keeps_the_offsets_of_partitions_it_does_not_hold_yet(
    kafka_bootstrap: str,
) -> None:
    """route=puid after a SIGKILL: the new process gets partition 0 first, commits, and
    only then partition 1; the state still records partition 1's offset, so the next
    restore (with both partitions) finds the state instead of starting it empty."""
    topic, group = unique("later"), unique("later")
    await create_topic(kafka_bootstrap, topic, partitions=2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    settings = kafka_settings(kafka_bootstrap, topic, group, windows=list(WINDOWS))
    config = GeneratorConfig(seed=12, n_requests=300, feedback_share=0.8, topic=topic)
    lines = [orjson.dumps(r) for r in generate_records(config)]
    first, second = lines[:500], lines[500:]

    killed = Engine(WINDOWS)
    store = StateStore(settings, killed)
    await store.ensure_topic([topic])
    await store.prepare(ALL_PARTITIONS)
    await store.restore(ALL_PARTITIONS, {tp0: None, tp1: None})
    replay(first, killed)
    assert await store.commit({tp0: 300, tp1: 200})
    # SIGKILL: no stop, no revoke. The next process is assigned partition 0 alone first.
    engine = Engine(WINDOWS)
    successor = StateStore(settings, engine)
    await successor.ensure_topic([topic])
    await successor.prepare(ALL_PARTITIONS)
    await successor.restore(ALL_PARTITIONS, {tp0: 300})
    assert engine.report(killed.clock) == killed.report(killed.clock)
    replay(second, engine)
    assert await successor.commit({tp0: 300 + len(second)})
    pending, expected = engine.pending, engine.report(engine.clock)
    clock = engine.clock
    await successor.stop()
    await store._owned[ALL_PARTITIONS].producer.stop()

    # Whoever restores next with both partitions gets the state, not an empty one.
    again = Engine(WINDOWS)
    final = StateStore(settings, again)
    await final.ensure_topic([topic])
    await final.prepare(ALL_PARTITIONS)
    await final.restore(ALL_PARTITIONS, {tp0: 300 + len(second), tp1: 200})
    try:
        assert pending > 0
        assert again.pending == pending
        assert again.report(clock) == expected
    finally:
        await final.stop()
