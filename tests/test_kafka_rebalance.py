"""A rebalance moves partition state: a member joining mid-stream takes its partitions'
joins over through the checkpoints, and the group still counts every outcome once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig
from feedback_stream.service import Service
from tests._processor import (
    create_topic,
    kafka_settings,
    net_outcomes,
    planned,
    produce,
    scrape,
    summed,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def test_a_member_joining_mid_stream_takes_its_partitions_state(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique("rebalance"), unique("rebalance")
    config = GeneratorConfig(
        seed=31,
        n_requests=300,
        deployments=(DeploymentSpec("iris", encoding="ce_binary"),),
        start_ms=int(time.time() * 1000) - 60_000,
        request_rate=25.0,
        feedback_share=0.9,
        feedback_delay="fixed",
        feedback_delay_mean_s=3.0,
        amendment_share=0.1,
        partitions=2,
        keyed=True,
        topic=topic,
    )
    records, expected = planned(config)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    await create_topic(kafka_bootstrap, topic, partitions=2)
    member = kafka_settings(
        kafka_bootstrap,
        topic,
        group,
        route="partition",
        state_dir=str(tmp_path),
        windows=["total"],
    )
    alone = Service(member)
    await alone.start()
    joiner = Service(member)
    try:
        assert alone.kafka is not None
        a = alone.kafka
        await wait_until(lambda: len(a.assigned) == 2, 60, "both partitions on the first member")
        await produce(kafka_bootstrap, topic, first)
        await wait_until(lambda: a.records == len(first), 60, "the first half")
        assert alone.engine.pending > 0
        await joiner.start()
        assert joiner.kafka is not None
        b = joiner.kafka
        await wait_until(lambda: len(a.assigned) == 1 and len(b.assigned) == 1, 60, "a rebalance")
        # The joiner restored the state of the partition it got: its windows are not empty.
        assert joiner.engine.states
        await produce(kafka_bootstrap, topic, second)
        await wait_until(lambda: a.records + b.records == len(records), 60, "the second half")
        scrapes = [await scrape(s) for s in (alone, joiner)]
    finally:
        await joiner.stop()
        await alone.stop()

    for key, want in expected.items():
        # Windows: the state of each partition lives in exactly one member.
        assert summed(scrapes, key, "feedback_stream_window_known", window="total") == want.known
        assert (
            summed(scrapes, key, "feedback_stream_window_correct", window="total") == want.correct
        )
        # Counters: each member counted what it applied; together, every outcome once.
        assert net_outcomes(scrapes, key, "correct") == want.correct
