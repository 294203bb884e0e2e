"""Readiness tells the truth about Kafka: unready, with the reason, while nothing is assigned.

A processor started before its topic exists (or before a topic matches its
pattern) owns no partition: ``/readyz`` answers 503 and says why, and the
topic is picked up within seconds of its creation (the consumer refreshes
topic metadata every ``kafka_metadata_max_age_ms``, 5 s by default), on a
real broker.
"""

from __future__ import annotations

import time

import orjson
import pytest

from feedback_stream.generator import GeneratorConfig
from tests._processor import (
    create_topic,
    get_text,
    kafka_settings,
    planned,
    produce,
    running,
    settings,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    status, text = await get_text(f"{url}/readyz")
    body = orjson.loads(text)
    assert isinstance(body, dict)
    return status, body


async def _reason(url: str, check: str, text: str) -> bool:
    status, body = await _readyz(url)
    reasons = body["reasons"]
    assert isinstance(reasons, dict)
    return status == 503 and text in str(reasons.get(check, ""))


async def test_a_topic_created_after_start_is_consumed_within_seconds(
    kafka_bootstrap: str,
) -> None:
    topic = unique("created-later")
    records, _ = planned(GeneratorConfig(seed=3, n_requests=20, feedback_share=1.0, topic=topic))
    config = kafka_settings(kafka_bootstrap, topic, unique("late"))
    assert config.kafka_metadata_max_age_ms == 5000  # the default is what is tested
    async with running(config) as (service, url):
        await wait_until(
            lambda: _reason(url, "kafka_assigned", f"topic {topic} does not exist yet"),
            30,
            "readyz naming the missing topic",
        )
        status, body = await _readyz(url)
        assert body["checks"] == {"http": True, "kafka_assigned": False, "state_restored": True}
        created = time.monotonic()
        await create_topic(kafka_bootstrap, topic)
        await produce(kafka_bootstrap, topic, records)

        async def ready() -> bool:
            return (await _readyz(url))[0] == 200

        await wait_until(ready, 20, "assignment of the new topic")
        picked_up = time.monotonic() - created
        await wait_until(lambda: service.kafka and service.kafka.records == len(records), 20, "all")
        status, body = await _readyz(url)
        assert (status, body["reasons"]) == (200, {})
        print(f"topic picked up {picked_up:.1f} s after its creation")


async def test_a_pattern_without_a_matching_topic_is_unready_until_one_appears(
    kafka_bootstrap: str,
) -> None:
    prefix = unique("pattern")
    config = settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_pattern=prefix + r"\..*",
        kafka_group_id=unique("pattern-group"),
        kafka_metadata_max_age_ms=1000,
    )
    async with running(config) as (service, url):
        await wait_until(
            lambda: _reason(url, "kafka_assigned", "no topic matches"), 30, "pattern reason"
        )
        await create_topic(kafka_bootstrap, f"{prefix}.seldon")

        async def ready() -> bool:
            return (await _readyz(url))[0] == 200

        await wait_until(ready, 20, "the matching topic's assignment")
        assert service.kafka is not None
        assert {tp.topic for tp in service.kafka.assigned} == {f"{prefix}.seldon"}


async def test_a_member_whose_group_peers_own_every_partition_says_so(
    kafka_bootstrap: str,
) -> None:
    topic = unique("one-partition")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    group = unique("crowded")
    async with (
        running(kafka_settings(kafka_bootstrap, topic, group)) as (first, first_url),
        running(kafka_settings(kafka_bootstrap, topic, group)) as (second, second_url),
    ):

        async def settled() -> bool:
            assert first.kafka is not None
            assert second.kafka is not None
            owners = [bool(first.kafka.assigned), bool(second.kafka.assigned)]
            # Both have joined (a first member restoring its state can own the
            # partition before the second has been given anything).
            joined = first.kafka.assigned_once.is_set() and second.kafka.assigned_once.is_set()
            return joined and sorted(owners) == [False, True]

        await wait_until(settled, 60, "one owner of the one partition")
        idle_url = second_url if first.kafka and first.kafka.assigned else first_url
        # The idle member says "joining" until its (empty) assignment arrives, then why.
        await wait_until(
            lambda: _reason(idle_url, "kafka_assigned", "owned by other members"),
            30,
            "the idle member's reason",
        )
