"""Kafka → processor → /metrics and /api/v1/metrics, against scikit-learn, on a real broker."""

from __future__ import annotations

import time

import pytest

from feedback_stream.events import ModelKey
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
)
from feedback_stream.service import Service
from tests._processor import (
    assert_gauges_match,
    assert_window_matches,
    create_topic,
    get_json,
    get_text,
    kafka_settings,
    model_labels,
    net_outcomes,
    parse_metrics,
    planned,
    produce,
    running,
    scrape,
    summed,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

WINDOWS = ["total", "5m", "1000"]


def _four_encodings(topic: str, partitions: int, keyed: bool) -> GeneratorConfig:
    """One deployment per encoding: CE binary, CE structured, Seldon direct, KServe."""
    shadowed = (PredictorSpec("default", 0.85), PredictorSpec("shadow", 0.6, shadow=True))
    return GeneratorConfig(
        seed=11,
        n_requests=300,
        deployments=(
            DeploymentSpec("iris-binary", predictors=shadowed, encoding="ce_binary"),
            DeploymentSpec(
                "iris-structured", predictors=shadowed, encoding="ce_structured", payload="tensor"
            ),
            DeploymentSpec("iris-direct", predictors=shadowed, encoding="seldon_direct"),
            DeploymentSpec(
                "sklearn-kserve",
                namespace="kserve",
                predictors=(PredictorSpec("default", 0.7),),
                encoding="kserve",
                payload="v2",
            ),
        ),
        request_rate=25.0,
        start_ms=int(time.time() * 1000) - 90_000,
        feedback_share=0.7,
        truth_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=4.0,
        amendment_share=0.1,
        disorder_share=0.1,
        disorder_max_s=1.0,
        partitions=partitions,
        keyed=keyed,
        topic=topic,
    )


def _accepted(document: dict[str, object]) -> int:
    events = document["events"]
    assert isinstance(events, dict)
    return int(events["request"]) + int(events["response"]) + int(events["feedback"])


async def test_four_encodings_through_kafka_equal_sklearn(kafka_bootstrap: str) -> None:
    topic = unique("e2e")
    config = _four_encodings(topic, partitions=3, keyed=False)
    records, expected = planned(config)
    assert {key.deployment for key in expected} == {
        "iris-binary",
        "iris-structured",
        "iris-direct",
        "sklearn-kserve",
    }
    await create_topic(kafka_bootstrap, topic, partitions=3)
    await produce(kafka_bootstrap, topic, records)
    service_settings = kafka_settings(kafka_bootstrap, topic, unique("e2e"), windows=WINDOWS)
    async with running(service_settings) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.records == len(records), 60, "every record consumed")
        document = await get_json(f"{url}/api/v1/metrics")
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        ready = await get_json(f"{url}/readyz")
    assert ready["ready"] is True
    assert document["events"]["invalid"] == 0
    assert _accepted(document) + document["events"]["duplicate"] == len(records)
    got = {
        ModelKey(m["namespace"], m["deployment"], m["predictor"], m["model"]): m
        for m in document["models"]
    }
    assert set(got) == set(expected)
    for key, want in expected.items():
        for window in WINDOWS:
            assert_window_matches(got[key]["windows"][window], want)
            assert_gauges_match(samples, key, window, want)
        lag = [v for (n, _), v in samples.items() if n == "feedback_stream_consumer_lag"]
        assert lag == [0.0, 0.0, 0.0]
        assert samples[("feedback_stream_pending_puids", frozenset())] >= 0
        labels = model_labels(key)
        applied = sum(
            samples.get(("feedback_stream_outcomes_total", labels | {("result", r)}), 0.0)
            for r in ("correct", "incorrect", "unknown")
        )
        retracted = sum(
            samples.get(("feedback_stream_outcomes_retracted_total", labels | {("result", r)}), 0.0)
            for r in ("correct", "incorrect", "unknown")
        )
        assert applied - retracted == want.outcomes


async def test_two_processors_in_one_group_sum_to_the_oracle(kafka_bootstrap: str) -> None:
    topic = unique("group")
    group = unique("group")
    config = _four_encodings(topic, partitions=2, keyed=True)
    records, expected = planned(config)
    await create_topic(kafka_bootstrap, topic, partitions=2)
    member = kafka_settings(kafka_bootstrap, topic, group, route="partition", windows=WINDOWS)
    first = Service(member)
    second = Service(member)
    await first.start()
    await second.start()
    try:
        assert first.kafka is not None
        assert second.kafka is not None
        a, b = first.kafka, second.kafka
        await wait_until(
            lambda: len(a.assigned) == 1 and len(b.assigned) == 1, 60, "one partition each"
        )
        await produce(kafka_bootstrap, topic, records)
        await wait_until(lambda: a.records + b.records == len(records), 60, "every record")
        scrapes = [await scrape(service) for service in (first, second)]
    finally:
        await first.stop()
        await second.stop()
    assert a.records > 0
    assert b.records > 0

    for key, want in expected.items():
        assert net_outcomes(scrapes, key, "correct") == want.correct
        assert net_outcomes(scrapes, key, "incorrect") == want.outcomes - want.correct
        for (truth, predicted), count in want.confusion.items():
            cell = {"true_class": truth, "predicted_class": predicted}
            applied = summed(scrapes, key, "feedback_stream_confusion_total", **cell)
            retracted = summed(scrapes, key, "feedback_stream_confusion_retracted_total", **cell)
            assert applied - retracted == count
        assert summed(scrapes, key, "feedback_stream_window_known", window="total") == want.known
        assert (
            summed(scrapes, key, "feedback_stream_window_correct", window="total") == want.correct
        )
