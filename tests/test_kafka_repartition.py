"""The repartition step: two processors, Seldon's unkeyed records, joins still exact."""

from __future__ import annotations

import time

import pytest

from feedback_stream.generator import DeploymentSpec, GeneratorConfig
from feedback_stream.kafka.repartition import stable_id_headers
from feedback_stream.service import Service
from tests._processor import (
    create_topic,
    kafka_settings,
    planned,
    produce,
    read_topic,
    scrape,
    summed,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def test_records_without_an_id_get_one_from_their_raw_position() -> None:
    direct = [("type", b"io.seldon.serving.feedback"), ("requestid", b"p")]
    assert stable_id_headers(direct, "raw", 1, 7)[-1] == ("id", b"raw/1@7")
    binary = [("ce_type", b"t"), ("ce_requestid", b"p")]
    assert stable_id_headers(binary, "raw", 0, 3)[-1] == ("ce_id", b"raw/0@3")
    with_id = [("ce_type", b"t"), ("ce_id", b"abc")]
    assert stable_id_headers(with_id, "raw", 0, 3) == with_id
    structured = [("content-type", b"application/cloudevents+json")]
    assert stable_id_headers(structured, "raw", 0, 3) == structured


async def test_a_group_joins_unkeyed_records_through_the_repartition_topic(
    kafka_bootstrap: str,
) -> None:
    raw, keyed, group = unique("raw"), unique("by-puid"), unique("repartition")
    config = GeneratorConfig(
        seed=21,
        n_requests=250,
        deployments=(DeploymentSpec("iris", encoding="seldon_mixed"),),
        start_ms=int(time.time() * 1000) - 60_000,
        request_rate=25.0,
        feedback_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=3.0,
        partitions=2,
        keyed=False,
        topic=raw,
    )
    records, expected = planned(config)
    await create_topic(kafka_bootstrap, raw, partitions=2)
    await create_topic(kafka_bootstrap, keyed, partitions=2)
    member = kafka_settings(kafka_bootstrap, raw, group, repartition_topic=keyed, windows=["total"])
    replicas = [Service(member), Service(member)]
    for replica in replicas:
        await replica.start()
    try:

        def assigned() -> bool:
            return all(
                r.kafka is not None
                and len(r.kafka.assigned) == 1
                and r.repartitioner is not None
                and len(r.repartitioner.assigned) == 1
                for r in replicas
            )

        await wait_until(assigned, 60, "one raw and one keyed partition per replica")
        await produce(kafka_bootstrap, raw, records)

        def processed() -> int:
            return sum(r.kafka.records for r in replicas if r.kafka is not None)

        await wait_until(lambda: processed() == len(records), 60, "every record processed")
        scrapes = [await scrape(r) for r in replicas]
        assert all(r.engine.route == "partition" for r in replicas)
    finally:
        for replica in replicas:
            await replica.stop()

    for key, want in expected.items():
        assert summed(scrapes, key, "feedback_stream_window_known", window="total") == want.known
        assert (
            summed(scrapes, key, "feedback_stream_window_correct", window="total") == want.correct
        )
        assert (
            summed(scrapes, key, "feedback_stream_outcomes_total", result="correct") == want.correct
        )

    partition_of: dict[bytes, set[int]] = {}
    for r in await read_topic(kafka_bootstrap, keyed, len(records)):
        assert r.key is not None
        partition_of.setdefault(r.key, set()).add(r.partition)
    assert all(len(partitions) == 1 for partitions in partition_of.values())
