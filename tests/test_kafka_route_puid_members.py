"""route=puid keeps one state for every partition, so a group runs one processor.

A second member (a surge pod of a rolling update, a second replica) makes
both hold their part of the input, unconsumed, with the reason logged; once
one leaves, the other takes everything and its numbers equal
``feedback-stream replay`` of the whole input.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests._processor import create_topic, produce, unique
from tests.test_kafka_durable_state import (
    AHEAD_MS,
    COUNT,
    FAST_GROUP,
    _args,
    _assert_counters_match,
    _caught_up,
    _consumed,
    _end_offsets,
    _Processor,
    _records,
    _replay,
    _same,
    _wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


async def test_a_second_member_with_route_puid_holds_until_the_group_has_one_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = unique("puid2"), unique("puid2"), 4
    start = int(time.time() * 1000) + AHEAD_MS
    bulk = _records(
        71,
        3000,
        start,
        partitions,
        feedback_share=0.9,
        duplicate_share=0.1,
        invalid_share=0.02,
        topic=topic,
    )
    middle = _records(73, 500, start + 100_000, partitions, feedback_share=1.0, topic=topic)
    tail = _records(72, COUNT, start + 200_000, partitions, feedback_share=1.0, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, bulk)
    args = _args(
        kafka_bootstrap, topic, group, "--dlq-topic", f"{topic}-dlq", "--kafka-max-batch", "50"
    )
    args += FAST_GROUP
    log = tmp_path / "group.log"
    first = _Processor(args, log)
    await _wait_ready(first, 120)
    await _caught_up(kafka_bootstrap, group, topic, partitions, 240)
    second = _Processor(args, log)
    try:
        # Both members hold their half: neither consumes what comes meanwhile.
        deadline = time.monotonic() + 120
        while log.read_text().count("route=puid keeps one state") < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        await produce(kafka_bootstrap, topic, middle)
        await asyncio.sleep(3.0)
        with pytest.raises(AssertionError):
            await _caught_up(kafka_bootstrap, group, topic, partitions, 2)
        second.terminate()
        assert second.process.returncode == 0, log.read_text()[-3000:]
        await _caught_up(kafka_bootstrap, group, topic, partitions, 240)
        bulk_ends = await _end_offsets(kafka_bootstrap, topic, partitions)
        await produce(kafka_bootstrap, topic, tail)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)
        assert first.process.poll() is None, log.read_text()[-3000:]
        document = await first.document()
        samples = await first.metrics()
    finally:
        first.terminate()
        second.terminate()
    report = _replay(
        await _consumed(kafka_bootstrap, topic, partitions, bulk_ends), tmp_path / "in.jsonl"
    )
    _same(document, report)
    _assert_counters_match(samples, report)
