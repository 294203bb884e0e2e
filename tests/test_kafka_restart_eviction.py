"""The pending cap (``max_pending``) after a restart: the puids evicted must be the ones an
uninterrupted run evicts.

Among entries with the same deadline (events of the same millisecond) the one with the
smallest puid leaves first, live and after a restore alike (join.py ``_Deadlines``): a
restore cannot know the order they arrived in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests._processor import sample_sum, unique
from tests._restarts import run_across_a_restart
from tests.test_kafka_restart_counters import _classes, _record

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def _at(record: Any, timestamp: int) -> Any:
    record["timestamp"] = timestamp
    return record


async def _run(kafka_bootstrap: str, tmp_path: Path, restart: bool) -> dict[str, float]:
    topic = unique("cap")
    t = int(time.time() * 1000) + 40 * 60_000  # ahead: nothing expires on the wall clock
    truth = {"truth": {"data": {"ndarray": [["a"]]}}}
    first = [  # three responses of one millisecond, arriving z, y, x
        _at(_record(topic, 0, _classes([0.8, 0.2]), "z", "response"), t),  # predicts a
        _at(_record(topic, 1, _classes([0.8, 0.2]), "y", "response"), t),
        _at(_record(topic, 2, _classes([0.2, 0.8]), "x", "response"), t),  # predicts b
    ]
    second = [
        _at(_record(topic, 3, _classes([0.8, 0.2]), "w", "response"), t),  # 4 > 3: evict one
        _at(_record(topic, 4, truth, "z", "feedback"), t + 1),
        _at(_record(topic, 5, truth, "x", "feedback"), t + 2),
    ]
    log = tmp_path / f"processor-{restart}.log"
    _, samples = await run_across_a_restart(
        kafka_bootstrap, log, first, second, "--max-pending", "3", restart=restart
    )
    return {
        result: sample_sum(samples, "feedback_stream_outcomes_total", result=result)
        for result in ("correct", "incorrect")
    }


async def test_a_restart_evicts_at_the_pending_cap_what_an_uninterrupted_run_evicts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    plain = await _run(kafka_bootstrap, tmp_path, restart=False)
    restarted = await _run(kafka_bootstrap, tmp_path, restart=True)
    assert restarted == plain
