"""The class cap (``max_classes``) after a restart: the classes a model tracks must be
the ones an uninterrupted run tracks, or later outcomes fold differently.

Live, every class an outcome names is tracked (caps.fold_classes: the truth, and the
predicted class even without a truth); the state records them (``ModelCounters.classes``)
so that a restore tracks them too, not only the classes of the windows' confusion cells,
which hold outcomes with a truth only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests._processor import create_topic, produce, sample_sum, unique
from tests.test_kafka_durable_state import (
    FAST_GROUP,
    _args,
    _caught_up,
    _Processor,
    _same,
    _wait_ready,
)
from tests.test_kafka_restart_counters import _record

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def _scores(*row: float) -> Any:
    return {"data": {"names": ["a", "b", "c"], "ndarray": [list(row)]}}


async def _run(kafka_bootstrap: str, tmp_path: Path, restart: bool) -> tuple[Any, dict[Any, float]]:
    topic, group = unique("caps"), unique("caps")
    first = [
        _record(topic, 0, _scores(0.8, 0.1, 0.1), "p1", "response"),  # predicts a
        _record(topic, 1, {"reward": 1.0}, "p1", "feedback"),  # no truth
        _record(topic, 2, _scores(0.1, 0.8, 0.1), "p2", "response"),  # predicts b
        _record(topic, 3, {"reward": 0.0}, "p2", "feedback"),
    ]
    second = [
        _record(topic, 4, _scores(0.8, 0.1, 0.1), "p3", "response"),  # predicts a
        _record(topic, 5, {"truth": {"data": {"ndarray": [["c"]]}}}, "p3", "feedback"),
    ]
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, first)
    args = _args(kafka_bootstrap, topic, group, "--max-classes", "2", *FAST_GROUP)
    log = tmp_path / f"processor-{restart}.log"
    processor = _Processor(args, log)
    try:
        await _wait_ready(processor, 60)
        await _caught_up(kafka_bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        if restart:
            processor.kill()
            processor = _Processor(args, log)
            await _wait_ready(processor, 60)
        await produce(kafka_bootstrap, topic, second)
        await _caught_up(kafka_bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        document = await processor.document()
        samples = await processor.metrics()
    finally:
        processor.terminate()
    return document, samples


async def test_a_restart_keeps_the_classes_a_capped_model_tracks(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    plain, plain_samples = await _run(kafka_bootstrap, tmp_path, restart=False)
    restarted, restarted_samples = await _run(kafka_bootstrap, tmp_path, restart=True)
    for name in ("feedback_stream_folded_classes_total", "feedback_stream_confusion_total"):
        assert sample_sum(restarted_samples, name) == sample_sum(plain_samples, name), name

    def cells(document: Any) -> Any:
        return [
            (m["windows"]["total"]["labels"], m["windows"]["total"]["confusion_matrix"])
            for m in document["models"]
        ]

    _same(cells(restarted), cells(plain))
