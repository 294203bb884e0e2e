"""State restores on a real broker: one longer than the session timeout, a state topic lost.

aiokafka sends no heartbeat while a rebalance callback runs, so a restore
inside it that outlasts the session timeout got the member expelled, and it
restored again at the next generation, forever. The restore runs after the
callback now, with the partitions paused: it happens once, however long.

A state topic deleted under a running processor made its commits hang
silently; its restart recreated the topic and resumed, empty, at the
group's committed offsets, so every earlier count was gone. Now the hung
commit stops the process (exit 1), the restart refuses to start the state
empty, and resetting the group's offsets re-reads the input exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from feedback_stream.changelog import Restorer
from feedback_stream.engine import ALL_PARTITIONS, StateKey
from feedback_stream.kafka.state_store import StateStore
from tests._processor import create_topic, get_text, kafka_settings, produce, running, unique
from tests.test_kafka_durable_state import (
    AHEAD_MS,
    WINDOWS,
    _args,
    _caught_up,
    _committed,
    _consumed,
    _Processor,
    _records,
    _replay,
    _same,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

COUNT_WINDOW = WINDOWS.split(",")[-1]
SESSION_MS = 6000  # the broker's group.min.session.timeout.ms
RESTORE_DELAY_S = 9.0  # longer than a session


async def test_a_restore_longer_than_the_session_timeout_happens_once_then_consumes(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group, partitions = unique("slow"), unique("slow"), 2
    start = int(time.time() * 1000) + AHEAD_MS
    first = _records(61, 500, start, partitions, feedback_share=0.8, topic=topic)
    second = _records(62, 300, start + 60_000, partitions, feedback_share=0.8, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, first)
    config = kafka_settings(
        kafka_bootstrap,
        topic,
        group,
        kafka_auto_offset_reset="earliest",
        windows=WINDOWS.split(","),
        kafka_session_timeout_ms=SESSION_MS,
        kafka_heartbeat_interval_ms=1000,
    )
    async with running(config):
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
    await produce(kafka_bootstrap, topic, second)

    reads: list[StateKey] = []
    reading = asyncio.Event()
    read = StateStore._read

    async def slow_read(self: StateStore, key: StateKey, name: str) -> Restorer:
        reads.append(key)
        reading.set()
        await asyncio.sleep(RESTORE_DELAY_S)  # a large state's read, not blocking the loop
        return await read(self, key, name)

    monkeypatch.setattr(StateStore, "_read", slow_read)
    started = time.monotonic()
    async with running(config) as (service, url):
        seen_unready = False
        await asyncio.wait_for(reading.wait(), 60)
        assert service.kafka is not None
        assigned_in = service.kafka._require()._coordinator.generation
        while service.kafka is not None and (service.kafka.restoring or not service.kafka.assigned):
            status, text = await get_text(f"{url}/readyz")
            if service.kafka.restoring:
                assert status == 503, text
                assert "restoring the state" in text, text
                seen_unready = True
            await asyncio.sleep(0.2)
        restored_after = time.monotonic() - started
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)
        status, text = await get_text(f"{url}/readyz")
        assert status == 200, text
        document = await _document(url)
        assert service.kafka is not None
        generation = service.kafka._require()._coordinator.generation
    assert seen_unready
    assert restored_after > SESSION_MS / 1000
    # Restored once (route=puid: one state for every partition): no expulsion, no second
    # generation's restore.
    assert reads == [ALL_PARTITIONS], reads
    assert generation == assigned_in, (assigned_in, generation)
    report = _replay(await _consumed(kafka_bootstrap, topic, partitions, {}), tmp_path / "in.jsonl")
    _same(_without_count_window(document), _without_count_window(report))


def _without_count_window(document: Any) -> Any:
    """``document`` less its count window: the last N outcomes depend on the partitions'
    interleaving when several are consumed at once (docs/semantics.md)."""
    if isinstance(document, dict):
        return {
            k: _without_count_window(v)
            for k, v in document.items()
            if not (k == COUNT_WINDOW and "total" in document)
        }
    if isinstance(document, list):
        return [_without_count_window(v) for v in document]
    return document


async def _document(url: str) -> Any:
    from tests._processor import get_json

    return await get_json(f"{url}/api/v1/metrics")


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _reset_to_earliest(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """What ``kafka-consumer-groups.sh --reset-offsets --to-earliest --execute`` does.

    Like the tool, it takes effect only once the group is empty: a member that
    exited without leaving (its LeaveGroup timed out) stays in the group until
    its session expires, so the reset is retried until the committed offsets
    read back as the beginnings.
    """
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + 150
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        await consumer.start()
        try:
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            with contextlib.suppress(KafkaError):
                await consumer.commit(dict(begins))
        finally:
            await consumer.stop()
        wanted = {tp.partition: offset for tp, offset in begins.items()}
        if await _committed(bootstrap, group, topic, partitions) == wanted:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} could not be reset to {wanted}")
        await asyncio.sleep(2)


async def test_a_lost_state_topic_stops_the_processor_and_its_restart_refuses_to_start_empty(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = unique("lost"), unique("lost"), 2
    start = int(time.time() * 1000) + AHEAD_MS
    first = _records(71, 500, start, partitions, feedback_share=0.8, topic=topic)
    second = _records(72, 200, start + 60_000, partitions, feedback_share=0.8, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, first)
    args = _args(kafka_bootstrap, topic, group, "--state-commit-timeout-s", "5")
    log = tmp_path / "processor.log"
    processor = _Processor(args, log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        committed = await _committed(kafka_bootstrap, group, topic, partitions)
        await _delete_topic(kafka_bootstrap, f"{group}-state")
        await produce(kafka_bootstrap, topic, second)
        code = await processor.exit_after("did not complete within 5 s", 120)
    finally:
        processor.terminate()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "did not complete within 5 s" in text, text[-3000:]
    assert await _committed(kafka_bootstrap, group, topic, partitions) == committed

    # The restart finds no state where the group has committed offsets: it refuses.
    log.write_text("")
    refused = _Processor(args, log)
    try:
        # Promptly, the reason first (it waited 40 s for an unanswered LeaveGroup).
        code = await refused.exit_after("holds no state", 120)
    finally:
        refused.terminate()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert f"the state topic {group}-state holds no state" in text, text[-3000:]
    assert "--state-accept-empty" in text, text[-3000:]
    assert "--reset-offsets" in text, text[-3000:]
    assert await _committed(kafka_bootstrap, group, topic, partitions) == committed

    # The way out that keeps every count: re-read the input from the start.
    await _reset_to_earliest(kafka_bootstrap, group, topic, partitions)
    again = _Processor(args, log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)
        document = await again.document()
    finally:
        again.terminate()
    report = _replay(await _consumed(kafka_bootstrap, topic, partitions, {}), tmp_path / "in.jsonl")
    _same(_without_count_window(document), _without_count_window(report))


async def test_accepting_an_empty_state_starts_it_with_a_warning(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The upgrade path: a group that ran without durable state, accepted on purpose."""
    topic, group, partitions = unique("accept"), unique("accept"), 1
    start = int(time.time() * 1000) + AHEAD_MS
    first = _records(81, 200, start, partitions, feedback_share=0.8, topic=topic)
    second = _records(82, 200, start + 60_000, partitions, feedback_share=0.8, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, first)
    log = tmp_path / "processor.log"
    old = _Processor(_args(kafka_bootstrap, topic, group, "--no-state-changelog"), log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
    finally:
        old.terminate()
    ends = await _committed(kafka_bootstrap, group, topic, partitions)
    await produce(kafka_bootstrap, topic, second)
    upgraded = _Processor(_args(kafka_bootstrap, topic, group, "--state-accept-empty"), log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)
        document = await upgraded.document()
    finally:
        upgraded.terminate()
    text = log.read_text()
    assert "starting it empty (state_accept_empty)" in text, text[-3000:]
    # It counts what it read after the offsets the old processor committed, only.
    report = _replay(
        (await _consumed(kafka_bootstrap, topic, partitions, ends))[ends[0] :],
        tmp_path / "in.jsonl",
    )
    _same(document, report)
