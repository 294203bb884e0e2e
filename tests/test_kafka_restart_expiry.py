"""A restart must not expire what an uninterrupted run keeps.

The join TTL runs on the stream's clock (service.py: "the newest event time seen plus
the wall time since it was seen, capped by the wall clock"), so a stream read behind
the wall clock (consumer lag, a retained topic read again) keeps its entries until
their feedback, read later, arrives. A restart must restore that clock with the state:
at the wall clock the ticker would expire every restored entry before the feedback is
read. Run uninterrupted, the stream below expires nothing and labels every response.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests._processor import create_topic, produce, sample_sum, unique
from tests.test_kafka_durable_state import FAST_GROUP, _args, _caught_up, _Processor, _wait_ready
from tests.test_kafka_restart_counters import _classes, _record

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

N = 20


async def _run(kafka_bootstrap: str, tmp_path: Path) -> tuple[float, float, float]:
    topic, group = unique("lag"), unique("lag")
    # The stream is 30 minutes behind the wall clock; TTL 10 minutes; each
    # feedback comes 60 s (stream time) after its response.
    t0 = int(time.time() * 1000) - 30 * 60_000
    responses = []
    feedback = []
    for i in range(N):
        r = _record(topic, 0, _classes([0.2, 0.8]), f"p{i}", "response")
        r["timestamp"] = t0 + i * 100
        responses.append(r)
        f = _record(topic, 0, {"truth": {"data": {"ndarray": [[1]]}}}, f"p{i}", "feedback")
        f["timestamp"] = t0 + 60_000 + i * 100
        feedback.append(f)
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, responses)
    args = _args(kafka_bootstrap, topic, group, "--ttl", "10m", *FAST_GROUP)
    log = tmp_path / "processor.log"
    processor = _Processor(args, log)
    try:
        await _wait_ready(processor, 60)
        await _caught_up(kafka_bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        processor.kill()
        processor = _Processor(args, log)
        await _wait_ready(processor, 60)
        await asyncio.sleep(2.0)  # the ticker runs (every 0.2 s) before the feedback is read
        await produce(kafka_bootstrap, topic, feedback)
        await _caught_up(kafka_bootstrap, group, topic, 1, 60)
        await asyncio.sleep(1.0)
        samples = await processor.metrics()
    finally:
        processor.terminate()
    return (
        sample_sum(samples, "feedback_stream_outcomes_total"),
        sample_sum(samples, "feedback_stream_expired_total"),
        sample_sum(samples, "feedback_stream_labelled_responses_total"),
    )


async def test_a_restart_behind_the_wall_clock_expires_nothing_an_uninterrupted_run_keeps(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    outcomes, expired, labelled = await _run(kafka_bootstrap, tmp_path)
    assert (outcomes, expired, labelled) == (N, 0, N)
