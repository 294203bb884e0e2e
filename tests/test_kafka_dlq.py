"""Invalid records go to the dead-letter topic, unchanged, with where and why."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import SourcePosition
from feedback_stream.generator import DeploymentSpec, GeneratorConfig
from feedback_stream.kafka.dlq import (
    HEADER_ERROR,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
)
from tests._processor import (
    assert_window_matches,
    create_topic,
    get_json,
    get_text,
    kafka_settings,
    parse_metrics,
    planned,
    produce,
    read_topic,
    record_value,
    running,
    sample_sum,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


async def test_bad_records_land_in_the_dlq_and_good_ones_still_count(kafka_bootstrap: str) -> None:
    topic, dlq = unique("dlq-source"), unique("dlq")
    config = GeneratorConfig(
        seed=4,
        n_requests=200,
        deployments=(DeploymentSpec("iris", encoding="seldon_mixed"),),
        start_ms=int(time.time() * 1000) - 60_000,
        feedback_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=2.0,
        invalid_share=0.15,
        partitions=2,
        topic=topic,
    )
    records, expected = planned(config)
    await create_topic(kafka_bootstrap, topic, partitions=2)
    await create_topic(kafka_bootstrap, dlq, partitions=1)
    positions = await produce(kafka_bootstrap, topic, records)
    invalid: dict[tuple[int, int], tuple[str, bytes]] = {}
    for record, (partition, offset) in zip(records, positions, strict=True):
        decoded = decode_kafka_record(
            record["headers"], record_value(record), record["timestamp"],
            SourcePosition(topic, partition, offset),
        )  # fmt: skip
        if isinstance(decoded, DecodeError):
            invalid[(partition, offset)] = (decoded.code, record_value(record))
    assert len(invalid) >= 10
    assert len(Counter(code for code, _ in invalid.values())) >= 3

    service_settings = kafka_settings(
        kafka_bootstrap, topic, unique("dlq"), dlq_topic=dlq, windows=["total"]
    )
    async with running(service_settings) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.records == len(records), 60, "every record consumed")
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        document = await get_json(f"{url}/api/v1/metrics")

    seen = {}
    for letter in await read_topic(kafka_bootstrap, dlq, len(invalid)):
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers[HEADER_TOPIC] == topic
        position = (int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET]))
        seen[position] = headers[HEADER_REASON]
        code, value = invalid[position]
        assert headers[HEADER_REASON] == code
        assert headers[HEADER_ERROR]
        assert letter.value == value  # the record itself, unchanged
    assert seen == {position: code for position, (code, _) in invalid.items()}

    reasons = Counter(code for code, _ in invalid.values())
    for reason, count in reasons.items():
        assert sample_sum(samples, "feedback_stream_dlq_records_total", reason=reason) == count
        assert sample_sum(samples, "feedback_stream_invalid_events_total", reason=reason) == count
    assert sample_sum(samples, "feedback_stream_events_total", status="invalid") == len(invalid)

    # The good records around the bad ones still count, exactly.
    for model in document["models"]:
        key = next(k for k in expected if k.predictor == model["predictor"])
        assert_window_matches(model["windows"]["total"], expected[key])
