"""The class cap (``max_classes``) after a restart: the classes a model tracks must be
the ones an uninterrupted run tracks, or later outcomes fold differently.

Live, every class an outcome names is tracked (caps.fold_classes: the truth, and the
predicted class even without a truth); the state records them (``ModelCounters.classes``)
so that a restore tracks them too, not only the classes of the windows' confusion cells,
which hold outcomes with a truth only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._processor import sample_sum, unique
from tests._restarts import run_across_a_restart
from tests.test_kafka_durable_state import _same
from tests.test_kafka_restart_counters import _record

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def _scores(*row: float) -> Any:
    return {"data": {"names": ["a", "b", "c"], "ndarray": [list(row)]}}


async def _run(kafka_bootstrap: str, tmp_path: Path, restart: bool) -> tuple[Any, dict[Any, float]]:
    topic = unique("caps")
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
    log = tmp_path / f"processor-{restart}.log"
    return await run_across_a_restart(
        kafka_bootstrap, log, first, second, "--max-classes", "2", restart=restart
    )


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
