"""The pending bound over Kafka: the oldest puids are evicted and counted; no stall."""

from __future__ import annotations

import time

import pytest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig, generate_records
from tests._processor import (
    create_topic,
    get_text,
    kafka_settings,
    parse_metrics,
    produce,
    running,
    sample_sum,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_pending_cap_evicts_the_oldest_without_pausing(kafka_bootstrap: str) -> None:
    topic = unique("pending-cap")
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
    # The default one-hour TTL: with a pause at the bound, the input would stall for an hour.
    config_ = kafka_settings(
        kafka_bootstrap, topic, unique("pending-cap"), kafka_max_batch=20, max_pending=50
    )
    async with running(config_) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.records == len(records), 60, "every record")
        assert service.engine.pending == 50
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    puids = {r["headers"]["ce_requestid"] for r in records}
    assert len(puids) == 150
    # Every puid holds the same parts (none joined); 100 puids were evicted.
    for kind in ("request", "response"):
        per_puid = sum(1 for r in records if r["headers"]["ce_type"].endswith(kind)) // 150
        evicted = sample_sum(samples, "feedback_stream_evicted_total", type=kind)
        assert evicted == 100 * per_puid
    assert sample_sum(samples, "feedback_stream_pending_puids") == 50
