"""Durable state after the sliced commits and incremental pair records: SIGKILL the real
``feedback-stream run`` often (so kills land mid-slice and mid-transaction) on a stream
with shadow/default pairs, feedback before responses, duplicates, amendments and invalid
records; every number must end equal to ``feedback-stream replay``.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests._processor import create_topic, produce, unique
from tests.test_kafka_durable_state import (
    AHEAD_MS,
    BIN,
    COUNT,
    WINDOWS,
    _args,
    _assert_counters_match,
    _caught_up,
    _caught_up_with,
    _consumed,
    _end_offsets,
    _Processor,
    _records,
    _same,
    _wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

# A killed member leaves the group after 6 s (the broker's minimum), not 45 s.
FAST_GROUP = ("--kafka-session-timeout-ms", "6000", "--kafka-heartbeat-interval-ms", "1000")


def _replay_json(lines: list[bytes], path: Path) -> object:
    path.write_bytes(b"\n".join(lines) + b"\n")
    args = [str(BIN), "replay", str(path), "--output", "json"]
    for window in WINDOWS.split(","):
        args += ["--window", window]
    done = subprocess.run(args, capture_output=True, check=True, timeout=300)
    return orjson.loads(done.stdout)


async def test_frequent_sigkills_with_pairs_disorder_and_duplicates_equal_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = unique("slice"), unique("slice"), 4
    start = int(time.time() * 1000) + AHEAD_MS
    bulk = _records(
        51,
        6000,
        start,
        partitions,
        feedback_share=0.9,
        feedback_delay_mean_s=4.0,
        amendment_share=0.2,
        duplicate_share=0.1,
        disorder_share=0.3,
        disorder_max_s=3.0,
        invalid_share=0.02,
        topic=topic,
    )
    tail = _records(52, COUNT, start + 200_000, partitions, feedback_share=1.0, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, bulk)
    rng = random.Random(7)
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--dlq-topic",
        f"{topic}-dlq",
        "--kafka-max-batch",
        "50",
        *FAST_GROUP,
    )
    log = tmp_path / "processor.log"
    for _ in range(8):
        processor = _Processor(args, log)
        await _wait_ready(processor, 120)  # consuming: the kill lands mid-slice or mid-commit
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        processor.kill()
    await _caught_up_with(args, log, kafka_bootstrap, group, topic, partitions)
    bulk_ends = await _end_offsets(kafka_bootstrap, topic, partitions)
    await produce(kafka_bootstrap, topic, tail)
    last = _Processor(args, log)
    try:
        await _wait_ready(last, 120)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 180)
        await asyncio.sleep(0.5)
        document = await last.document()
        samples = await last.metrics()
    finally:
        last.terminate()
    report = _replay_json(
        await _consumed(kafka_bootstrap, topic, partitions, bulk_ends), tmp_path / "in.jsonl"
    )
    (tmp_path / "document.json").write_bytes(orjson.dumps(document))
    (tmp_path / "report.json").write_bytes(orjson.dumps(report))
    assert report["comparisons"], "the stream has shadow/default pairs"
    _same(document, report)
    _assert_counters_match(samples, report)


async def test_members_joining_and_killed_mid_stream_with_pairs_equal_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = unique("sreb"), unique("sreb"), 4
    start = int(time.time() * 1000) + AHEAD_MS
    bulk = _records(
        61,
        5000,
        start,
        partitions,
        feedback_share=0.9,
        feedback_delay_mean_s=4.0,
        amendment_share=0.2,
        duplicate_share=0.1,
        disorder_share=0.3,
        disorder_max_s=3.0,
        invalid_share=0.02,
        topic=topic,
    )
    tail = _records(62, COUNT, start + 200_000, partitions, feedback_share=1.0, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, bulk)
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--dlq-topic",
        f"{topic}-dlq",
        "--route",
        "partition",
        "--kafka-max-batch",
        "50",
        *FAST_GROUP,
    )
    log = tmp_path / "group.log"
    a = _Processor(args, log)
    await asyncio.sleep(4.0)
    b = _Processor(args, log)  # a rebalance to a second member, mid-stream
    await asyncio.sleep(6.0)
    b.kill()
    c = _Processor(args, log)
    await asyncio.sleep(5.0)
    a.kill()
    await asyncio.sleep(3.0)
    c.terminate()
    last = _Processor(args, log)
    try:
        await _wait_ready(last, 120)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 240)
        bulk_ends = await _end_offsets(kafka_bootstrap, topic, partitions)
        await produce(kafka_bootstrap, topic, tail)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)
        document = await last.document()
        samples = await last.metrics()
    finally:
        last.terminate()
    report = _replay_json(
        await _consumed(kafka_bootstrap, topic, partitions, bulk_ends), tmp_path / "in.jsonl"
    )
    (tmp_path / "document.json").write_bytes(orjson.dumps(document))
    (tmp_path / "report.json").write_bytes(orjson.dumps(report))
    assert report["comparisons"], "the stream has shadow/default pairs"
    _same(document, report)
    _assert_counters_match(samples, report)
