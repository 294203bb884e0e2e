"""One variant measured in its own process: ``python -m bench.prototypes.measure VARIANT N R``.

The stream is the core benchmark's (:func:`bench.stream.wire_stream` of
:func:`bench.stream.bench_config`), the timed work is the core benchmark's
(:func:`bench.core.process_all`: :meth:`Engine.process_record` per record,
the expiry tick every 1000) on one pinned CPU, and so is the baseline
(``orjson.loads`` of every record value, timed in the same process, turn
about with the core). Before anything is timed the variant's report is
computed and its digest printed: the driver refuses a variant whose report
differs from the pure-Python one.

Prints one JSON object: wall and CPU seconds of every repeat, the baseline's,
the decode step alone (the installed decoder over every record), the
report digest, which modules are compiled, how many records the Rust
decoder read.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["main"]


def _timed(work: Callable[[], None]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str]) -> dict[str, Any]:
    variant, n_requests, repeats = argv[0], int(argv[1]), int(argv[2])
    from bench._timing import pinned
    from bench.core import make_engine, process_all
    from bench.prototypes.build import VARIANTS
    from bench.stream import bench_config, wire_stream
    from feedback_stream import decode, join, windows
    from feedback_stream import engine as engine_module
    from feedback_stream.events import SourcePosition

    spec = next(v for v in VARIANTS if v.name == variant)
    counter = None
    if spec.rust:
        from bench.prototypes import rust_wrapper

        rust_wrapper.install()
        counter = rust_wrapper.Counter
    run: Callable[[Any, Any], None] = process_all
    if spec.batch:
        from bench.prototypes.batch import process_all_batched

        run = process_all_batched
    records = wire_stream(bench_config(n_requests))
    engine = make_engine()
    run(engine, records)
    report = orjson.dumps(engine.report(), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(report).hexdigest()
    share = None
    if counter is not None:
        share = counter.rust / max(1, counter.rust + counter.python)

    def parse() -> None:
        loads = orjson.loads
        for r in records:
            loads(r.value)

    def decode_only() -> None:
        decode_record = getattr(engine_module, "decode_kafka_record")  # noqa: B009 (as installed)
        for offset, r in enumerate(records):
            decode_record(r.headers, r.value, r.timestamp, SourcePosition("b", r.partition, offset))

    ours: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    decoded: list[tuple[float, float]] = []
    with pinned() as cpu:
        for _ in range(repeats):
            base.append(_timed(parse))
            ours.append(_timed(lambda: run(make_engine(), records)))
            decoded.append(_timed(decode_only))
    compiled = {
        m.__name__.rsplit(".", 1)[1]: not m.__file__.endswith(".py")  # type: ignore[union-attr]
        for m in (decode, join, windows, engine_module)
    }
    return {
        "variant": variant,
        "events": len(records),
        "digest": digest,
        "ours_wall_s": [w for w, _ in ours],
        "ours_cpu_s": [c for _, c in ours],
        "base_wall_s": [w for w, _ in base],
        "base_cpu_s": [c for _, c in base],
        "decode_wall_s": [w for w, _ in decoded],
        "decode_cpu_s": [c for _, c in decoded],
        "cpu": cpu,
        "compiled": compiled,
        "rust_share": share,
        "loadavg": os.getloadavg(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
