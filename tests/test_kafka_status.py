"""Broker truth: the connected gauge, the lag and the page's status line follow the consumer."""

from __future__ import annotations

import pytest

from tests._processor import (
    create_topic,
    get_json,
    get_text,
    kafka_settings,
    parse_metrics,
    running,
    sample_sum,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def test_broker_connection_and_lag_are_shown(kafka_bootstrap: str) -> None:
    topic = unique("status")
    await create_topic(kafka_bootstrap, topic)
    async with running(kafka_settings(kafka_bootstrap, topic, unique("status"))) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.assigned_once.is_set(), 60, "an assignment")
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        assert sample_sum(samples, "feedback_stream_broker_connected") == 1
        assert sample_sum(samples, "feedback_stream_consumer_lag_records") == 0
        status = await get_json(f"{url}/api/v1/status")
        assert status["broker"] == {"connected": True, "assigned": 1, "lag": 0}
    # Stopped, the consumer holds no connection: what an outage looks like on the gauge.
    assert not kafka.connected
