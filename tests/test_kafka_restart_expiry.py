"""A restart must not expire what an uninterrupted run keeps.

The join TTL runs on the stream's clock (service.py: "the newest event time seen plus
the wall time since it was seen, capped by the wall clock"), so a stream read behind
the wall clock (consumer lag, a retained topic read again) keeps its entries until
their feedback, read later, arrives. A restart must restore that clock with the state:
at the wall clock the ticker would expire every restored entry before the feedback is
read. Reads of the windows move the state's own clock to the wall clock (time windows
slide with it), so the state keeps the newest event time apart, and that is the clock a
restore resumes from. Run uninterrupted, the stream below expires nothing and labels
every response.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests._processor import sample_sum, unique
from tests._restarts import run_across_a_restart
from tests.test_kafka_restart_counters import _classes, _record

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

N = 20


async def _run(kafka_bootstrap: str, tmp_path: Path) -> tuple[float, float, float]:
    topic = unique("lag")
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
    log = tmp_path / "processor.log"
    # One outcome gives the model windows, which the ticker reads (every 0.2 s) at the
    # wall clock; a second one, after those reads, makes a commit write the state's clock
    # then. After the restart the ticker runs for 2 s before the rest of the feedback.
    _, samples = await run_across_a_restart(
        kafka_bootstrap,
        log,
        [*responses, feedback[0]],
        feedback[2:],
        "--ttl",
        "10m",
        before_second_s=2.0,
        more_first=[feedback[1:2]],
    )
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
