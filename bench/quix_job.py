"""The accuracy job in Quix Streams, as its documentation would have it written.

Runs in the baselines' venv (:mod:`bench.envs`)::

    python -m bench.quix_job --bootstrap HOST:PORT --topic T --group G \
        --expected RECORDS --outcomes OUTCOMES

Pipeline: a stateful ``apply`` keyed by puid joins request/response/feedback
in Quix's RocksDB state store (with its changelog topic) and expands into
outcomes; ``group_by`` re-keys them by model (a repartition topic); a
stateful ``apply`` keeps the cumulative (correct, known) per model, and a
5-minute window aggregates correct and known per model: the same join and
two of the three windows our core keeps. ``--window sliding`` (the default)
is Quix's exact sliding window, the same window as ours; it updates every
window that overlaps a new message, so it slows as a window fills.
``--window tumbling`` is the cheaper, coarser job many would write instead.
The job reports when every input record and every outcome has gone through.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum

from bench._baseline_join import decode, join
from bench._worker import report
from feedback_stream.events import SourcePosition


def _window(sdf: Any, kind: str) -> Any:
    if kind == "sliding":
        return sdf.sliding_window(duration_ms=300_000)
    return sdf.tumbling_window(duration_ms=300_000)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_job")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--outcomes", type=int, required=True)
    parser.add_argument("--window", choices=("sliding", "tumbling"), default="sliding")
    args = parser.parse_args(argv)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="bench-quix-"),
        loglevel="WARNING",
        auto_create_topics=True,
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    progress = {"records": 0, "outcomes": 0, "t_first": 0.0, "t_last": 0.0}
    totals: dict[str, list[int]] = {}

    def join_puid(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> Any:
        if not progress["records"]:
            progress["t_first"] = time.time()
        progress["records"] += 1
        event = decode(headers, value, timestamp, SourcePosition(args.topic, 0, 0))
        if event is None:
            return []
        entry = state.get("entry") or {}
        outcomes = join(event, entry)
        state.set("entry", entry)
        if not outcomes and progress["records"] >= args.expected and not args.outcomes:
            _finish()
        return outcomes

    def total(value: dict[str, Any], state: Any) -> dict[str, Any]:
        counts = state.get("total") or [0, 0]
        counts = [counts[0] + value["correct"], counts[1] + 1]
        state.set("total", counts)
        totals[value["model"]] = counts
        return value

    def done(value: Any) -> None:
        progress["outcomes"] += 1
        if progress["outcomes"] >= args.outcomes and progress["records"] >= args.expected:
            _finish()

    def _finish() -> None:
        progress["t_last"] = time.time()
        app.stop()

    sdf = app.dataframe(topic)
    sdf = sdf.apply(join_puid, stateful=True, metadata=True, expand=True)
    sdf = sdf.group_by(lambda outcome: outcome["model"], name="model")
    sdf = sdf.apply(total, stateful=True)
    sdf = _window(sdf, args.window).agg(correct=Sum("correct"), known=Count())
    sdf = sdf.current()
    sdf = sdf.update(done)
    app.run()
    report(
        int(progress["records"]),
        progress["t_first"],
        progress["t_last"],
        totals,
        outcomes=progress["outcomes"],
    )
    sys.stdout.flush()
    os._exit(0)  # librdkafka's threads can hold a clean exit for seconds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
