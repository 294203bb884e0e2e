"""The accuracy job in Faust (faust-streaming), as its documentation would have it written.

Runs in the baselines' venv (:mod:`bench.envs`)::

    python -m bench.faust_job --bootstrap HOST:PORT --topic T --group G \
        --expected RECORDS --outcomes OUTCOMES

Two agents: the first joins request/response/feedback per puid in a Faust
``Table`` (in-memory store with its changelog topic) and sends outcomes to a
topic keyed by model, as Faust's co-partitioning rules require; the second
keeps the cumulative (correct, known) per model in a table and in a
5-minute tumbling windowed table (Faust has no sliding windows). The job
reports when every input record and every outcome has gone through.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from typing import Any

import faust

from bench._baseline_join import decode, join
from bench._worker import report
from feedback_stream.events import SourcePosition


class Outcome(faust.Record, serializer="json"):  # type: ignore[misc,call-arg]
    """One row outcome, re-keyed by model on the way to the accuracy agent."""

    model: str
    correct: int
    time: float


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_job")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--outcomes", type=int, required=True)
    args = parser.parse_args(argv)

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        datadir=f"/tmp/{args.group}",
    )
    source = app.topic(args.topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    outcomes_topic = app.topic(
        f"{args.group}-outcomes", key_type=str, value_type=Outcome, partitions=1, internal=True
    )
    joins = app.Table("joins", default=dict)
    totals = app.Table("totals", default=list)
    windowed = (
        app.Table("windowed", default=list)
        .tumbling(timedelta(minutes=5), expires=timedelta(hours=1))
        .relative_to_stream()
    )
    progress = {"records": 0, "outcomes": 0, "t_first": 0.0, "t_last": 0.0}
    seen_totals: dict[str, list[int]] = {}

    def finish() -> None:
        progress["t_last"] = time.time()
        report(
            int(progress["records"]),
            progress["t_first"],
            progress["t_last"],
            seen_totals,
            outcomes=progress["outcomes"],
        )
        sys.stdout.flush()
        os._exit(0)

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def join_puid(stream: Any) -> None:
        async for event in stream.events():
            if not progress["records"]:
                progress["t_first"] = time.time()
            progress["records"] += 1
            message = event.message
            decoded = decode(
                list(message.headers or []),
                event.value,
                int(message.timestamp * 1000),
                SourcePosition(message.topic, message.partition, message.offset),
            )
            if decoded is None:
                continue
            entry = joins[event.key]
            outcomes = join(decoded, entry)
            joins[event.key] = entry
            for o in outcomes:
                await outcomes_topic.send(key=o["model"], value=Outcome(**o))
            if progress["records"] >= args.expected and not args.outcomes:
                finish()

    @app.agent(outcomes_topic)  # type: ignore[untyped-decorator]
    async def accuracy(stream: Any) -> None:
        async for model, outcome in stream.items():
            counts = totals[model] or [0, 0]
            counts = [counts[0] + outcome.correct, counts[1] + 1]
            totals[model] = counts
            seen_totals[model] = counts
            current = windowed[model].value() or [0, 0]
            windowed[model] = [current[0] + outcome.correct, current[1] + 1]
            progress["outcomes"] += 1
            if progress["outcomes"] >= args.outcomes and progress["records"] >= args.expected:
                finish()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
