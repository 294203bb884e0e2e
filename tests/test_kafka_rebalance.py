"""A rebalance moves partition state: a member joining mid-stream takes its partitions'
joins over through the checkpoints, and the group still counts every outcome once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feedback_stream.events import ModelKey
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    generate_records,
    intended_outcomes,
)
from feedback_stream.service import Service
from tests._processor import (
    create_topic,
    get_text,
    model_labels,
    oracle,
    parse_metrics,
    produce,
    settings,
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
    records = list(generate_records(config))
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    expected = oracle(intended_outcomes(config))
    await create_topic(kafka_bootstrap, topic, partitions=2)
    member = settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topics=[topic],
        kafka_group_id=group,
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
        scrapes = [
            parse_metrics((await get_text(f"http://127.0.0.1:{s.http_port}/metrics"))[1])
            for s in (alone, joiner)
        ]
    finally:
        await joiner.stop()
        await alone.stop()

    def summed(key: ModelKey, name: str, **extra: str) -> float:
        return sum(s.get((name, model_labels(key, **extra)), 0.0) for s in scrapes)

    for key, want in expected.items():
        # Windows: the state of each partition lives in exactly one member.
        assert summed(key, "feedback_stream_window_known", window="total") == want.known
        assert summed(key, "feedback_stream_window_correct", window="total") == want.correct
        # Counters: each member counted what it applied; together, every outcome once.
        net_correct = summed(key, "feedback_stream_outcomes_total", result="correct") - summed(
            key, "feedback_stream_outcomes_retracted_total", result="correct"
        )
        assert net_correct == want.correct
