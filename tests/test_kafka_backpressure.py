"""Backpressure: partitions pause while pending joins exceed the bound, and resume."""

from __future__ import annotations

import time

import pytest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig, generate_records
from tests._processor import create_topic, kafka_settings, produce, running, unique, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_pending_joins_pause_and_expiry_resumes(kafka_bootstrap: str) -> None:
    topic = unique("backpressure")
    config = GeneratorConfig(
        seed=1,
        n_requests=150,
        deployments=(DeploymentSpec("iris"),),
        start_ms=int(time.time() * 1000) - 5_000,
        request_rate=200.0,
        feedback_share=0.0,  # nothing ever joins: every puid stays pending until the TTL
        topic=topic,
    )
    records = list(generate_records(config))
    await create_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, records)
    config_ = kafka_settings(
        kafka_bootstrap,
        topic,
        unique("backpressure"),
        kafka_max_batch=20,
        kafka_max_pending=50,
        ttl_s=1.0,
        tick_interval_s=0.1,
    )
    async with running(config_) as (service, _):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.paused, 30, "the source to pause")
        assert kafka.records < len(records)
        assert service.engine.pending > 50
        # The TTL expires the lonely responses, pending falls, the source resumes and finishes.
        await wait_until(lambda: kafka.records == len(records), 60, "every record")
        await wait_until(lambda: not kafka.paused, 30, "the source to resume")
        expired = service.metrics_document(None)["events"]["expired"]
    assert expired["response"] > 0
