"""Seldon Core 2 topics, headers and keys on the real broker, feedback on a feedback topic."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from feedback_stream.core2 import DEFAULT_FEEDBACK_TOPIC
from feedback_stream.core2.convert import core2_model, experiments_for, to_core2
from feedback_stream.events import ModelKey
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
    intended_outcomes,
)
from tests._processor import (
    assert_gauges_match,
    assert_window_matches,
    create_topic,
    get_json,
    get_text,
    model_labels,
    oracle,
    parse_metrics,
    running,
    settings,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

WINDOWS = ["total", "5m", "1000"]
NAMESPACE = "prod"


def _config() -> GeneratorConfig:
    shadowed = (PredictorSpec("default", 0.85), PredictorSpec("shadow", 0.6, shadow=True))
    return GeneratorConfig(
        seed=17,
        n_requests=300,
        deployments=(
            DeploymentSpec("iris", namespace=NAMESPACE, predictors=shadowed),
            DeploymentSpec(
                "income",
                namespace=NAMESPACE,
                predictors=(PredictorSpec("default", 0.7),),
                payload="v2",
            ),
        ),
        batch_max=2,
        request_rate=25.0,
        start_ms=int(time.time() * 1000) - 90_000,
        feedback_share=0.7,
        truth_share=0.8,
        feedback_delay="fixed",
        feedback_delay_mean_s=4.0,
        amendment_share=0.1,
        feedback_scope="deployment",
    )


def _value(record: dict[str, Any]) -> bytes:
    if "value_base64" in record:
        return base64.b64decode(record["value_base64"])
    value = record["value"]
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


async def _produce(bootstrap: str, records: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                record["topic"],
                value=_value(record),
                key=record["key"].encode() if record["key"] is not None else None,
                partition=0,
                timestamp_ms=record["timestamp"],
                headers=[(name, text.encode()) for name, text in record["headers"].items()],
            )
            for record in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_core2_topics_through_kafka_equal_sklearn(kafka_bootstrap: str) -> None:
    prefix = unique("seldon")
    feedback_topic = unique("core2-feedback")
    config = _config()
    records = list(
        to_core2(generate_records(config), seed=17, prefix=prefix, feedback_topic=feedback_topic)
    )
    failed = [
        {
            "topic": f"{prefix}.{NAMESPACE}.errors.errors",
            "partition": 0,
            "timestamp": records[-1]["timestamp"],
            "key": f"0.iris-pipe.failed-{n}",
            "headers": {
                "x-request-id": f"failed-{n}",
                "pipeline": "iris-pipe",
                "seldon-pipeline-errors": "income-default",
            },
            "value": "rpc error: code = Unavailable desc = connection refused",
        }
        for n in range(4)
    ]
    # A topic the pattern leaves alone: the preset reads outputs, inputs, errors and feedback.
    stray = dict(failed[0], topic=f"{prefix}.{NAMESPACE}.pipeline.iris-pipe.outputs")
    everything = [*records, *failed, stray]
    for topic in sorted({r["topic"] for r in everything}):
        await create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, everything)
    assert {r["topic"] for r in records} >= {
        f"{prefix}.{NAMESPACE}.model.iris-default.outputs",
        f"{prefix}.{NAMESPACE}.model.iris-shadow.inputs",
        feedback_topic,
    }
    assert all(r["key"].endswith(r["headers"]["x-request-id"]) for r in records)

    service_settings = settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_group_id=unique("core2"),
        windows=WINDOWS,
        source="seldon-core-2",
        seldon_topic_prefix=prefix,
        seldon_namespace=NAMESPACE,
        seldon_read_inputs=True,
        seldon_feedback_topic=feedback_topic,
        seldon_experiments=experiments_for(config),
    )
    expected_count = len(records) + len(failed)
    async with running(service_settings) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.records == expected_count, 90, "every record consumed")
        document = await get_json(f"{url}/api/v1/metrics")
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    assert document["events"]["invalid"] == 0
    assert document["events"]["request"] + document["events"]["response"] + document["events"][
        "feedback"
    ] == len(records)
    got = {
        ModelKey(m["namespace"], m["deployment"], m["predictor"], m["model"]): m
        for m in document["models"]
    }
    expected = {}
    for key, want in oracle(intended_outcomes(config)).items():
        model = core2_model(key)
        if key.deployment == "iris":  # the declared experiment: one deployment, two predictors
            predictor = "default" if key.predictor == "default" else model
            expected[ModelKey(NAMESPACE, "iris", predictor, model)] = want
        else:
            expected[ModelKey(NAMESPACE, "", "", model)] = want
    assert set(got) == set(expected)
    for key, want in expected.items():
        for window in WINDOWS:
            assert_window_matches(got[key]["windows"][window], want)
            assert_gauges_match(samples, key, window, want)
    errors = ModelKey(NAMESPACE, "iris-pipe", "", "income-default")
    assert samples[("feedback_stream_model_errors_total", model_labels(errors))] == 4.0


async def test_core2_feedback_posted_to_the_feedback_endpoint_joins_the_topics(
    kafka_bootstrap: str,
) -> None:
    prefix = unique("seldon")
    config = replace(_config(), seed=23, feedback_scope="predictor")
    records = list(to_core2(generate_records(config), seed=23, prefix=prefix))
    feedback = [r for r in records if r["topic"] == DEFAULT_FEEDBACK_TOPIC]
    logged = [r for r in records if r["topic"] != DEFAULT_FEEDBACK_TOPIC]
    assert any("seldon-model" in r["headers"] for r in feedback)
    for topic in sorted({r["topic"] for r in logged}):
        await create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, logged)
    service_settings = settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_group_id=unique("core2"),
        windows=["total"],
        source="seldon-core-2",
        seldon_topic_prefix=prefix,
        seldon_namespace=NAMESPACE,
        seldon_read_inputs=True,
        seldon_experiments=experiments_for(config),
    )
    async with running(service_settings) as (service, url):
        assert service.kafka is not None
        kafka = service.kafka
        await wait_until(lambda: kafka.records == len(logged), 90, "every record consumed")
        async with aiohttp.ClientSession() as session:
            for record in feedback:  # in stream order: an amendment is posted after its original
                headers = {"Seldon-Puid": record["headers"]["x-request-id"]}
                if "seldon-model" in record["headers"]:
                    headers["Seldon-Model"] = record["headers"]["seldon-model"]
                async with session.post(
                    f"{url}/api/v1.0/feedback", headers=headers, json=record["value"]
                ) as answer:
                    assert answer.status == 200, await answer.text()
        document = await get_json(f"{url}/api/v1/metrics")
    assert document["events"]["feedback"] == len(feedback)
    assert document["events"]["invalid"] == 0
    got = {
        ModelKey(m["namespace"], m["deployment"], m["predictor"], m["model"]): m
        for m in document["models"]
    }
    for key, want in oracle(intended_outcomes(config)).items():
        model = core2_model(key)
        if key.deployment == "iris":
            predictor = "default" if key.predictor == "default" else model
            assert_window_matches(
                got[ModelKey(NAMESPACE, "iris", predictor, model)]["windows"]["total"], want
            )
        else:
            assert_window_matches(got[ModelKey(NAMESPACE, "", "", model)]["windows"]["total"], want)
