"""Helpers for the service tests: a processor in-process, scrapes, Kafka I/O, the oracle.

The oracle computes every metric with scikit-learn from the outcomes a
generator stream was built to produce (``intended_outcomes``), sharing no
code with the engine, so a test that compares the processor's ``/metrics``
and ``/api/v1/metrics`` with it checks the whole path: wire → decode →
join → windows → exposition.
"""

from __future__ import annotations

import asyncio
import math
import socket
import uuid
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from feedback_stream.encode import ReplayRecord
from feedback_stream.events import ModelKey
from feedback_stream.generator import (
    GeneratorConfig,
    IntendedOutcome,
    generate_records,
    intended_outcomes,
)
from feedback_stream.service import Service
from feedback_stream.settings import Settings

Labels = frozenset[tuple[str, str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings(**values: Any) -> Settings:
    """Test settings: loopback, any free port, a fast ticker; ``values`` override."""
    base: dict[str, Any] = {
        "http_host": "127.0.0.1",
        "http_port": 0,
        "tick_interval_s": 0.2,
        "kafka_poll_timeout_ms": 100,
        "state_topic_replication_factor": 1,  # the test broker is one node
    }
    base.update(values)
    return Settings(**base)


def kafka_settings(bootstrap: str, topic: str, group: str, **values: Any) -> Settings:
    """Test settings of a processor reading ``topic`` as a member of consumer group ``group``."""
    return settings(
        kafka_bootstrap_servers=bootstrap, kafka_topics=[topic], kafka_group_id=group, **values
    )


@asynccontextmanager
async def running(config: Settings) -> AsyncIterator[tuple[Service, str]]:
    """A started service and its base URL; stopped (gracefully) on exit."""
    service = Service(config)
    await service.start()
    try:
        yield service, f"http://127.0.0.1:{service.http_port}"
    finally:
        await service.stop()


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def scrape(service: Service) -> dict[tuple[str, Labels], float]:
    """Every sample of a running service's /metrics page."""
    status, text = await get_text(f"http://127.0.0.1:{service.http_port}/metrics")
    assert status == 200, text
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a /metrics page, keyed by (sample name, label set)."""
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def model_labels(key: ModelKey, **extra: str) -> Labels:
    return frozenset(
        {
            "namespace": key.namespace,
            "deployment": key.deployment,
            "predictor": key.predictor,
            "model": key.model,
            **extra,
        }.items()
    )


def sample_sum(samples: Mapping[tuple[str, Labels], float], name: str, **match: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``match``."""
    wanted = set(match.items())
    return sum(v for (n, labels), v in samples.items() if n == name and wanted <= labels)


def summed(
    scrapes: Iterable[Mapping[tuple[str, Labels], float]], key: ModelKey, name: str, **extra: str
) -> float:
    """One model's sample summed over the scrapes of a group's members (absent counts 0)."""
    labels = model_labels(key, **extra)
    return sum(scrape.get((name, labels), 0.0) for scrape in scrapes)


def net_outcomes(
    scrapes: Sequence[Mapping[tuple[str, Labels], float]], key: ModelKey, result: str
) -> float:
    """Outcomes of ``result`` counted minus those retracted by amendments, over all members."""
    return summed(scrapes, key, "feedback_stream_outcomes_total", result=result) - summed(
        scrapes, key, "feedback_stream_outcomes_retracted_total", result=result
    )


# -- the oracle ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """sklearn's metrics over one model's outcomes."""

    outcomes: int
    known: int
    correct: int
    accuracy: float | None
    per_class: dict[str, tuple[float, float, float, int]]
    averages: dict[str, tuple[float, float, float]]
    confusion: dict[tuple[str, str], int]


def oracle(outcomes: Iterable[IntendedOutcome]) -> dict[ModelKey, Expected]:
    """Per model, the metrics of the given outcomes, computed by scikit-learn."""
    by_model: dict[ModelKey, list[IntendedOutcome]] = defaultdict(list)
    for outcome in outcomes:
        by_model[outcome.key].append(outcome)
    result: dict[ModelKey, Expected] = {}
    for key, rows in by_model.items():
        correct = [o.correct for o in rows]
        labelled = [o for o in rows if o.truth is not None]
        y_true = [o.truth for o in labelled if o.truth is not None]
        y_pred = [o.predicted for o in labelled]
        labels = sorted(set(y_true) | set(y_pred))
        per_class: dict[str, tuple[float, float, float, int]] = {}
        averages: dict[str, tuple[float, float, float]] = {}
        if labelled:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, r, f, s = precision_recall_fscore_support(
                    y_true, y_pred, labels=labels, zero_division=0
                )
                for average in ("macro", "micro", "weighted"):
                    ap, ar, af, _ = precision_recall_fscore_support(
                        y_true, y_pred, labels=labels, average=average, zero_division=0
                    )
                    averages[average] = (float(ap), float(ar), float(af))
            for i, label in enumerate(labels):
                per_class[label] = (float(p[i]), float(r[i]), float(f[i]), int(s[i]))
        confusion: dict[tuple[str, str], int] = defaultdict(int)
        for o in labelled:
            assert o.truth is not None
            confusion[(o.truth, o.predicted)] += 1
        result[key] = Expected(
            outcomes=len(rows),
            known=len(rows),
            correct=sum(correct),
            accuracy=float(accuracy_score([True] * len(rows), correct)) if rows else None,
            per_class=per_class,
            averages=averages,
            confusion=dict(confusion),
        )
    return result


def planned(config: GeneratorConfig) -> tuple[list[ReplayRecord], dict[ModelKey, Expected]]:
    """A generated stream and the oracle's metrics over the outcomes it was built to produce."""
    return list(generate_records(config)), oracle(intended_outcomes(config))


def assert_window_matches(window: Mapping[str, Any], expected: Expected) -> None:
    """A ``/api/v1/metrics`` window document equals the oracle to 1e-12."""
    assert window["outcomes"] == expected.outcomes
    assert window["known"] == expected.known
    assert window["correct"] == expected.correct
    assert math.isclose(window["accuracy"], expected.accuracy or 0.0, abs_tol=1e-12)
    assert set(window["per_class"]) == set(expected.per_class)
    for label, (p, r, f, s) in expected.per_class.items():
        got = window["per_class"][label]
        assert math.isclose(got["precision"], p, abs_tol=1e-12)
        assert math.isclose(got["recall"], r, abs_tol=1e-12)
        assert math.isclose(got["f1"], f, abs_tol=1e-12)
        assert got["support"] == s
    for average, (p, r, f) in expected.averages.items():
        got = window[average]
        assert math.isclose(got["precision"], p, abs_tol=1e-12), average
        assert math.isclose(got["recall"], r, abs_tol=1e-12), average
        assert math.isclose(got["f1"], f, abs_tol=1e-12), average


def assert_gauges_match(
    samples: Mapping[tuple[str, Labels], float], key: ModelKey, window: str, expected: Expected
) -> None:
    """The /metrics window gauges of one model equal the oracle to 1e-12."""

    def close(name: str, want: float, **extra: str) -> None:
        got = samples[(name, model_labels(key, window=window, **extra))]
        assert math.isclose(got, want, abs_tol=1e-12), (name, extra, got, want)

    close("feedback_stream_window_known", expected.known)
    close("feedback_stream_window_correct", expected.correct)
    close("feedback_stream_accuracy", expected.accuracy or 0.0)
    for label, (p, r, f, s) in expected.per_class.items():
        close("feedback_stream_class_precision", p, **{"class": label})
        close("feedback_stream_class_recall", r, **{"class": label})
        close("feedback_stream_class_f1", f, **{"class": label})
        close("feedback_stream_class_support", s, **{"class": label})
    for average, (p, r, f) in expected.averages.items():
        close("feedback_stream_average_precision", p, average=average)
        close("feedback_stream_average_recall", r, average=average)
        close("feedback_stream_average_f1", f, average=average)


# -- Kafka --------------------------------------------------------------------------


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def unique(name: str) -> str:
    """A topic or group name no other test run uses (the broker may be shared)."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def record_value(record: ReplayRecord) -> bytes:
    """The bytes of a replay record's value (JSON values re-encoded, strings as they are)."""
    value = record["value"]
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[ReplayRecord],
    *,
    keep_partition: bool = True,
) -> list[tuple[int, int]]:
    """Produce replay records as a producer would have: headers, key, timestamp, partition.

    Returns each record's (partition, offset).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for record in records:
            key = record["key"]
            futures.append(
                await producer.send(
                    topic,
                    value=record_value(record),
                    key=key.encode() if key is not None else None,
                    partition=record["partition"] if keep_partition else None,
                    timestamp_ms=record["timestamp"],
                    headers=[(name, text.encode()) for name, text in record["headers"].items()],
                )
            )
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


async def read_topic(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """At least the first ``count`` records of ``topic``, read from the start outside any group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(got)} of {count} records arrived on {topic}"
            got.extend(record for records in batch.values() for record in records)
    finally:
        await consumer.stop()
    return got


async def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll ``predicate()`` (sync or async) until true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)
