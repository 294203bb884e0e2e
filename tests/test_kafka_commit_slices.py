"""Slices of the next state commit are taken only once the consumer has caught up.

Reading a backlog, the commit takes a whole interval's changes at once (a
key changed ten times is serialised once); caught up with the input, the
changes are taken in slices between batches so that a commit's stall stays
short. Whether it has caught up is the consumer's lag (high watermark minus
the offset after the last record applied) against one batch, not the size of
the last batch: the end of each fetch response cuts a batch short in a backlog
too (the backlog here is a few fetch responses of 1 MiB).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig
from feedback_stream.service import Service
from tests._processor import (
    assert_window_matches,
    create_topic,
    get_json,
    kafka_settings,
    planned,
    produce,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

MAX_BATCH = 40


async def test_a_backlog_is_committed_whole_and_a_caught_up_consumer_takes_slices(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("slices"), unique("slices")
    config = GeneratorConfig(
        seed=21,
        n_requests=1800,
        deployments=(DeploymentSpec("iris", encoding="seldon_mixed"),),
        request_rate=50.0,
        start_ms=int(time.time() * 1000) - 120_000,
        feedback_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=2.0,
        partitions=1,
        topic=topic,
    )
    records, expected = planned(config)
    backlog, trickle = records[: -MAX_BATCH * 3], records[-MAX_BATCH * 3 :]
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, backlog)

    service = Service(
        kafka_settings(
            kafka_bootstrap,
            topic,
            group,
            kafka_max_batch=MAX_BATCH,
            # Slices are taken at most every 0.1 s: a slow poll lets each batch find one due.
            kafka_poll_timeout_ms=100,
            windows=["total"],
        )
    )
    assert service.state_store is not None, "durable state is on by default with Kafka"
    store = service.state_store
    take = store.prestage
    applied_at_take: list[int] = []

    def noted_take() -> None:
        kafka = service.kafka
        assert kafka is not None
        applied_at_take.append(kafka.records)
        take()

    store.prestage = noted_take  # type: ignore[method-assign]
    await service.start()
    try:
        kafka = service.kafka
        assert kafka is not None
        await wait_until(lambda: kafka.records == len(backlog), 60, "the backlog read")
        # Every take came with less than one batch left of the backlog.
        behind = [len(backlog) - applied for applied in applied_at_take]
        assert all(b < MAX_BATCH for b in behind), behind
        taken_in_backlog = len(applied_at_take)

        # Caught up: records arriving a few at a time are taken in slices.
        for start in range(0, len(trickle), 10):
            await produce(kafka_bootstrap, topic, trickle[start : start + 10])
            await asyncio.sleep(0.15)
        await wait_until(lambda: kafka.records == len(records), 60, "the trickle")
        assert len(applied_at_take) > taken_in_backlog, "no slice taken once caught up"
        await wait_until(lambda: store.commits > 0 and not store.dirty, 30, "a commit")

        url = f"http://127.0.0.1:{service.http_port}"
        document = await get_json(f"{url}/api/v1/metrics")
    finally:
        await service.stop()
    for model in document["models"]:
        key = next(k for k in expected if k.predictor == model["predictor"])
        assert_window_matches(model["windows"]["total"], expected[key])
