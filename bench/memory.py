"""Memory per pending puid: RSS growth of a fresh process holding 1M unjoined puids.

A pending puid here is the common case while a label is awaited: the
request event and the response of one model have been read, the feedback
has not. The records are the generator's (CloudEvents binary headers,
Seldon ``ndarray`` scores), with a new puid and event ids per puid, fed
through :meth:`Engine.process_record` as the Kafka source does, so the
puids and classes are the strings the decoder really keeps.

Measured in a child process (``python -m bench.memory N``) so that nothing
else the run allocated is counted: resident set size after a warm-up of
1,000 puids, then after all of them (with a full collection before each
reading), divided by the puids added. The baseline is the same puids held
as the smallest Python structure that still joins: a dict of puid to a
(response time, predicted class) tuple.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator

from bench._timing import rss_bytes
from bench.result import Context, Figure
from bench.stream import WireRecord, to_wire
from feedback_stream.engine import Engine
from feedback_stream.events import SourcePosition
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
)

__all__ = ["measure", "run"]

TARGET_BYTES = 300
_WARMUP = 1000


def _templates() -> tuple[WireRecord, WireRecord]:
    config = GeneratorConfig(
        seed=3,
        n_requests=1,
        deployments=(DeploymentSpec(predictors=(PredictorSpec("default", 0.9),)),),
        feedback_share=0.0,
    )
    request, response = (to_wire(r) for r in generate_records(config))
    return request, response


def pending_records(n: int) -> Iterator[tuple[list[tuple[str, bytes]], bytes, int]]:
    """Request and response records of ``n`` distinct puids, none with feedback."""
    request, response = _templates()
    for i in range(n):
        puid = f"{i:08x}-5e1d-4b5a-9c0d-{i * 2654435761 % (1 << 48):012x}".encode()
        for j, template in enumerate((request, response)):
            event_id = f"{i:08x}-{j:04x}-4000-8000-000000000000".encode()
            headers = [
                (name, puid if name == "ce_requestid" else event_id if name == "ce_id" else v)
                for name, v in template.headers
            ]
            yield headers, template.value, template.timestamp + i


def _ours(n: int) -> tuple[float, int]:
    """RSS growth per pending puid of an engine holding ``n`` more of them."""
    engine = Engine(("total", "5m", "1000"))
    records = pending_records(n + _WARMUP)
    offset = 0

    def feed(count: int) -> None:
        nonlocal offset
        for _ in range(2 * count):
            headers, value, ts = next(records)
            engine.process_record(headers, value, ts, SourcePosition("bench", 0, offset))
            offset += 1

    feed(_WARMUP)
    gc.collect()
    before, pending_before = rss_bytes(), engine.pending
    feed(n)
    gc.collect()
    after, pending_after = rss_bytes(), engine.pending
    return (after - before) / (pending_after - pending_before), pending_after


def measure(n: int) -> dict[str, float]:
    """Bytes per pending puid in this process: ours, and the dict-of-tuples baseline."""
    ours, pending = _ours(n)
    gc.collect()
    baseline: dict[str, tuple[float, str]] = {}
    gc.collect()
    base_before = rss_bytes()
    for i in range(n):
        baseline[f"{i:08x}-5e1d-4b5a-9c0d-{i * 2654435761 % (1 << 48):012x}"] = (
            1_767_225_600.0 + i,
            "t:1",
        )
    gc.collect()
    base = (rss_bytes() - base_before) / n
    return {"ours": ours, "baseline": base, "pending": float(pending)}


def run(ctx: Context) -> list[Figure]:
    n = ctx.size(1_000_000, minimum=2000)
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout)
    return [
        Figure(
            benchmark="memory",
            name=f"bytes per pending puid (request + response, no feedback) at {n:,} pending",
            value=result["ours"],
            unit="bytes",
            baseline_name="dict puid -> (time, class) tuple",
            baseline_value=result["baseline"],
            target=f"<= {TARGET_BYTES} bytes",
            met=result["ours"] <= TARGET_BYTES,
            detail={"pending": result["pending"], "measure": "RSS growth, fresh process"},
        )
    ]


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
