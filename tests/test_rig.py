"""The test rig itself: the real services answer the real clients."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from elasticsearch import AsyncElasticsearch

from tests import _services


async def test_kafka_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = f"rig-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic, b"hello", key=b"puid-1", headers=[("ce_type", b"io.seldon.serving.feedback")]
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [record for batch in batches.values() for record in batch]
    assert [(r.key, r.value, r.offset) for r in records] == [(b"puid-1", b"hello", sent.offset)]
    assert records[0].headers == (("ce_type", b"io.seldon.serving.feedback"),)


async def test_elasticsearch_index_and_search(es_url: str) -> None:
    index = f"rig-{uuid.uuid4().hex[:8]}"
    async with AsyncElasticsearch(es_url) as es:
        await es.index(index=index, id="p-1", document={"RequestId": "p-1", "reward": 1})
        await es.indices.refresh(index=index)
        found = await es.search(index=index, query={"term": {"RequestId.keyword": "p-1"}})
        await es.indices.delete(index=index)
    hits = found["hits"]["hits"]
    assert [(h["_id"], h["_source"]["reward"]) for h in hits] == [("p-1", 1)]


def test_reap_stale_stops_services_of_a_dead_owner() -> None:
    """A killed run's folder (owner gone) is removed before the next start."""
    workdir = _services.RUN / "kafka-deadowner"
    workdir.mkdir(parents=True, exist_ok=True)
    # pid 2**22 + 1 is above Linux's pid_max: no process can own it.
    (workdir / "owner.json").write_text('{"owner": 4194305, "pid": null}')
    assert "kafka-deadowner" in _services.reap_stale()
    assert not workdir.exists()
