"""The outputs survive SIGKILL: the Elasticsearch outcome index and the dead-letter topic.

The real ``feedback-stream run`` (durable state, outcome sink and DLQ on) is
SIGKILLed at random moments while it consumes, and once while Elasticsearch
does not answer, and restarted each time. At the end the outcome index holds
exactly the documents an uninterrupted run writes (the engine fed the same
records in process, its outcome and result listeners applied as the sink's
bulk operations: ``index`` an applied outcome, ``delete`` a retracted one,
``create`` a response's "no feedback" rows), by id and content, and its
outcome documents per model are replay's ``total`` window. The DLQ holds
every invalid record at least once, with its reason and source position.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from elasticsearch import AsyncElasticsearch

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.engine import Engine
from feedback_stream.es.sink import outcome_document, outcome_id, outcome_index, response_documents
from feedback_stream.events import Event, EventKind
from feedback_stream.join import EventStatus, JoinResult
from feedback_stream.kafka.dlq import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from feedback_stream.outcomes import Outcome
from feedback_stream.replay import parse_line, replay
from tests._es_helpers import delete_indices
from tests._processor import create_topic, produce, unique
from tests._tcp_proxy import TcpProxy
from tests.test_kafka_durable_state import (
    AHEAD_MS,
    FAST_GROUP,
    _args,
    _caught_up,
    _committed,
    _consumed,
    _end_offsets,
    _Processor,
    _records,
    _replay,
    _wait_ready,
)

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.timeout(300)]

_Doc = tuple[str, str]  # (index, id)


class _Index:
    """The outcome index an uninterrupted run leaves: the sink's operations in order."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.docs: dict[_Doc, dict[str, Any]] = {}

    def _key(self, outcome: Outcome) -> _Doc:
        return (
            outcome_index(self.template, outcome.key),
            outcome_id(outcome.key, outcome.puid, outcome.row),
        )

    def on_outcomes(self, retracted: Sequence[Outcome], applied: Sequence[Outcome]) -> None:
        for outcome in retracted:
            self.docs.pop(self._key(outcome), None)
        for outcome in applied:
            self.docs[self._key(outcome)] = outcome_document(outcome)

    def on_result(self, event: Event, result: JoinResult) -> None:
        if event.kind is EventKind.RESPONSE and result.status is EventStatus.ACCEPTED:
            index = outcome_index(self.template, event.key)
            for row, doc in response_documents(event):
                # ``create``: never over an outcome already there.
                self.docs.setdefault((index, outcome_id(event.key, event.puid, row)), doc)


def _expected_index(lines: list[bytes], template: str) -> dict[_Doc, Any]:
    engine = Engine(("total",), route="puid")
    index = _Index(template)
    engine.add_outcome_listener(index.on_outcomes)
    engine.add_result_listener(index.on_result)
    replay(lines, engine)
    return {key: orjson.loads(orjson.dumps(doc)) for key, doc in index.docs.items()}


def _expected_dead_letters(lines: list[bytes]) -> dict[tuple[str, int, int], str]:
    """(topic, partition, offset) -> reason of every record the decoder refuses."""
    out = {}
    for line in lines:
        headers, _, value, timestamp_ms, position = parse_line(line)
        item = decode_kafka_record(headers, value, timestamp_ms, position)
        if isinstance(item, DecodeError):
            out[(position.topic, position.partition, position.offset)] = item.code
    return out


async def _index_content(es: AsyncElasticsearch, pattern: str) -> dict[_Doc, Any]:
    await es.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
    found = await es.search(index=pattern, size=10_000, track_total_hits=True, sort=["_doc"])
    hits = found["hits"]["hits"]
    assert found["hits"]["total"]["value"] == len(hits) < 10_000
    return {(hit["_index"], hit["_id"]): hit["_source"] for hit in hits}


async def _dead_letters(
    bootstrap: str, topic: str, at_least: int
) -> list[tuple[tuple[str, int, int], str]]:
    """Every dead letter's (source topic, partition, offset) and reason: the whole topic."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    letters: list[tuple[tuple[str, int, int], str]] = []
    try:
        while True:  # until the topic is read out (a second without a record)
            batch = await consumer.getmany(timeout_ms=2000 if len(letters) >= at_least else 5000)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    h = {k: v.decode() for k, v in r.headers}
                    position = (h[HEADER_TOPIC], int(h[HEADER_PARTITION]), int(h[HEADER_OFFSET]))
                    letters.append((position, h[HEADER_REASON]))
    finally:
        await consumer.stop()
    return letters


def _assert_index(
    actual: dict[_Doc, Any], expected: dict[_Doc, Any], report: Any, deployments: int
) -> None:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing, f"{len(missing)} documents lost, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} documents that should not be there, e.g. {extra[:5]}"
    differ = [key for key in expected if actual[key] != expected[key]]
    assert not differ, f"{len(differ)} documents differ, e.g. {differ[0]}: " + (
        f"{actual[differ[0]]} != {expected[differ[0]]}" if differ else ""
    )
    # The outcome documents are replay's total window, model by model.
    assert len(report["models"]) >= 2 * deployments
    for model in report["models"]:
        key = "/".join(model[k] for k in ("namespace", "deployment", "predictor", "model"))
        mine = [d for d in actual.values() if d["model_key"] == key and d["has_feedback"]]
        total = model["windows"]["total"]
        assert len(mine) == total["outcomes"], key
        assert sum(d["correct"] is True for d in mine) == total["correct"], key


async def _assert_index_of_the_topic(
    actual: dict[_Doc, Any],
    bootstrap: str,
    topic: str,
    partitions: int,
    template: str,
    tmp_path: Path,
) -> None:
    """:func:`_assert_index` against an uninterrupted run of everything in ``topic``."""
    lines = await _consumed(bootstrap, topic, partitions, {})
    report = _replay(lines, tmp_path / "in.jsonl")
    _assert_index(actual, _expected_index(lines, template), report, deployments=1)


def _stream(topic: str, start: int, seed: int, n: int, partitions: int) -> list[Any]:
    return _records(
        seed,
        n,
        start,
        partitions,
        feedback_share=0.8,
        feedback_delay_mean_s=4.0,
        amendment_share=0.3,
        duplicate_share=0.1,
        disorder_share=0.3,
        disorder_max_s=3.0,
        invalid_share=0.03,
        topic=topic,
    )


def _sink_args(hosts: str, template: str) -> list[str]:
    return [
        "--es-sink-enabled",
        "--es-hosts",
        hosts,
        "--es-sink-index",
        template,
        "--es-sink-flush-interval-s",
        "0.05",  # the sender takes the buffer often, racing the commit's flush
        "--es-sink-bulk-size",
        "100",
    ]


async def test_sigkill_at_random_moments_loses_no_outcome_document_and_no_dead_letter(
    kafka_bootstrap: str, es_url: str, es: AsyncElasticsearch, tmp_path: Path
) -> None:
    topic, group, partitions = unique("esk"), unique("esk"), 3
    prefix = unique("esk").lower()
    template = prefix + "-{deployment}"
    start = int(time.time() * 1000) + AHEAD_MS
    records = _stream(topic, start, 51, 900, partitions)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, records)
    dlq = f"{topic}-dlq"
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--dlq-topic",
        dlq,
        "--kafka-max-batch",
        "50",
        *FAST_GROUP,
        *_sink_args(es_url, template),
    )
    log = tmp_path / "processor.log"
    rng = random.Random(7)
    try:
        for _ in range(4):
            processor = _Processor(args, log)
            await _wait_ready(processor, 60)
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            processor.kill()
        last = _Processor(args, log)
        try:
            await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
            # A committed offset covers only outcomes Elasticsearch has: no wait here.
            actual = await _index_content(es, f"{prefix}-*")
        finally:
            last.terminate()
        lines = await _consumed(kafka_bootstrap, topic, partitions, {})
        expected = _expected_index(lines, template)
        report = _replay(lines, tmp_path / "in.jsonl")
        _assert_index(actual, expected, report, deployments=1)
        want = _expected_dead_letters(lines)
        letters = await _dead_letters(kafka_bootstrap, dlq, len(want))
        assert want, "the stream has invalid records"
        assert {p for p, _ in letters} == set(want), "every invalid record, none other"
        for position, reason in letters:
            assert want[position] == reason, position
    finally:
        await delete_indices(es, f"{prefix}-*")


async def _commits_reach(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], within_s: float
) -> bool:
    """Whether the group commits ``ends`` within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await _committed(bootstrap, group, topic, len(ends)) == ends:
            return True
        await asyncio.sleep(0.3)
    return False


async def test_elasticsearch_not_answering_then_sigkill_loses_no_outcome_document(
    kafka_bootstrap: str, es_url: str, es: AsyncElasticsearch, tmp_path: Path
) -> None:
    """Elasticsearch takes the bulk requests and never answers while a burst is
    consumed: no offset past the burst's outcomes is committed meanwhile; SIGKILL,
    Elasticsearch back, restart; Elasticsearch restarts (refusing connections)
    while another burst is read: every document is there."""
    topic, group, partitions = unique("esh"), unique("esh"), 2
    prefix = unique("esh").lower()
    template = prefix + "-{deployment}"
    start = int(time.time() * 1000) + AHEAD_MS
    first = _stream(topic, start, 61, 300, partitions)
    # Small enough to be one batch: the sender takes its documents before the commit comes.
    burst = _records(62, 8, start + 600_000, partitions, feedback_share=1.0, topic=topic)
    again = _records(63, 8, start + 900_000, partitions, feedback_share=1.0, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, first)
    host, port = es_url.removeprefix("http://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--dlq-topic",
        f"{topic}-dlq",
        "--kafka-max-batch",
        "50",
        *FAST_GROUP,
        *_sink_args(proxy.url, template),
        "--es-request-timeout-s",
        "120",
        "--es-sink-retry-max-s",
        "1",
    )
    log = tmp_path / "processor.log"
    try:
        processor = _Processor(args, log)
        try:
            await _caught_up(kafka_bootstrap, group, topic, partitions, 60)
            before = await _end_offsets(kafka_bootstrap, topic, partitions)
            proxy.stall()
            await produce(kafka_bootstrap, topic, burst)
            ends = await _end_offsets(kafka_bootstrap, topic, partitions)
            committed_past = await _commits_reach(kafka_bootstrap, group, topic, ends, 4.0)
            assert processor.process.poll() is None, log.read_text()[-3000:]
        finally:
            processor.kill()
        assert before != ends
        # The requests held are cut, never delivered: Elasticsearch restarts.
        await proxy.stop()
        proxy.resume()
        await proxy.start()
        last = _Processor(args, log)
        try:
            await _caught_up(kafka_bootstrap, group, topic, partitions, 90)
            # Elasticsearch restarts (connections refused) while another burst is read.
            await proxy.stop()
            await produce(kafka_bootstrap, topic, again)
            ends = await _end_offsets(kafka_bootstrap, topic, partitions)
            refused_past = await _commits_reach(kafka_bootstrap, group, topic, ends, 3.0)
            await proxy.start()
            await _caught_up(kafka_bootstrap, group, topic, partitions, 60)
            actual = await _index_content(es, f"{prefix}-*")
        finally:
            last.terminate()
        await _assert_index_of_the_topic(
            actual, kafka_bootstrap, topic, partitions, template, tmp_path
        )
        assert not committed_past, "offsets committed past outcomes Elasticsearch has not got"
        assert not refused_past, "offsets committed past outcomes Elasticsearch refused"
    finally:
        await proxy.stop()
        await delete_indices(es, f"{prefix}-*")


async def test_elasticsearch_down_at_start_and_a_stop_while_it_is_down_lose_nothing(
    kafka_bootstrap: str, es_url: str, es: AsyncElasticsearch, tmp_path: Path
) -> None:
    """Elasticsearch down when the processor starts, past its startup wait: the sink
    buffers and no offset is committed past outcomes it has not written; a SIGTERM
    then stops it within ``state_commit_timeout_s`` (the last commit left out);
    started again with Elasticsearch still down, then back: every document is there."""
    topic, group, partitions = unique("esd"), unique("esd"), 2
    prefix = unique("esd").lower()
    template = prefix + "-{deployment}"
    start = int(time.time() * 1000) + AHEAD_MS
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, _stream(topic, start, 71, 150, partitions))
    host, port = es_url.removeprefix("http://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    await proxy.stop()  # its port now refuses connections
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        *FAST_GROUP,
        *_sink_args(proxy.url, template),
        "--es-startup-wait-s",
        "1",
        "--es-sink-retry-max-s",
        "1",
        "--state-commit-timeout-s",
        "3",
    )
    log = tmp_path / "processor.log"
    try:
        processor = _Processor(args, log)
        try:
            await _wait_ready(processor, 60)
            ends = await _end_offsets(kafka_bootstrap, topic, partitions)
            committed_past = await _commits_reach(kafka_bootstrap, group, topic, ends, 4.0)
            processor.process.terminate()  # SIGTERM while the cluster is down
            code = await asyncio.to_thread(processor.process.wait, 20)
        finally:
            processor.kill()
        assert not committed_past, "offsets committed past outcomes Elasticsearch has not got"
        assert code == 0, log.read_text()[-3000:]
        assert "the last commit is left out" in log.read_text()
        again = _Processor(args, log)  # Elasticsearch still down at this start
        try:
            await _wait_ready(again, 60)
            await asyncio.sleep(2.0)
            await proxy.start()
            await _caught_up(kafka_bootstrap, group, topic, partitions, 60)
            actual = await _index_content(es, f"{prefix}-*")
        finally:
            again.terminate()
        await _assert_index_of_the_topic(
            actual, kafka_bootstrap, topic, partitions, template, tmp_path
        )
    finally:
        await proxy.stop()
        await delete_indices(es, f"{prefix}-*")
