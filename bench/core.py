"""Core throughput: decode + join + three windows, one process pinned to one core.

The stream is generated and converted to wire form (header bytes, value
bytes) before the clock starts; what is timed is exactly what the Kafka
source asks of the engine per record: :meth:`Engine.process_record`, plus the
expiry tick every 1000 records. The baseline is ``orjson.loads`` of every
record value: the least work any consumer of these records does, so the
ratio says how much of a pure parse our whole pipeline costs.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path

import orjson

from bench._timing import median, pinned
from bench.result import Context, Figure
from bench.stream import WireRecord, bench_config, wire_stream
from feedback_stream.engine import Engine
from feedback_stream.events import SourcePosition

__all__ = ["WINDOWS", "make_engine", "process_all", "run"]

WINDOWS = ("total", "5m", "1000")
TARGET_EVENTS_S = 200_000.0
_TICK_EVERY = 1000


def make_engine() -> Engine:
    return Engine(WINDOWS)


def process_all(engine: Engine, records: list[WireRecord], topic: str = "bench") -> None:
    """Feed records through ``engine`` as the Kafka source does, expiring every 1000."""
    process = engine.process_record
    for offset, r in enumerate(records):
        process(r.headers, r.value, r.timestamp, SourcePosition(topic, r.partition, offset))
        if offset % _TICK_EVERY == 0:
            engine.expire(engine.clock)


def _parse_all(records: list[WireRecord]) -> None:
    loads = orjson.loads
    for r in records:
        loads(r.value)


def _timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def run(ctx: Context) -> list[Figure]:
    n_requests = ctx.size(60_000, minimum=200)
    repeats = 3 if ctx.scale >= 0.01 else 1
    records = wire_stream(bench_config(n_requests))
    n = len(records)
    ours: list[float] = []
    base: list[float] = []
    with pinned() as cpu:
        for _ in range(repeats):
            base.append(_timed(_parse_all, records))
            ours.append(_timed(process_all, make_engine(), records))
        if ctx.profile:
            _profile(records, ctx.results)
    ours_rate = n / median(ours)
    base_rate = n / median(base)
    return [
        Figure(
            benchmark="core",
            name="decode + join + 3 windows (total, 5m, 1000), one core",
            value=ours_rate,
            unit="events/s",
            baseline_name="orjson.loads of every record value",
            baseline_value=base_rate,
            target=f">= {TARGET_EVENTS_S:,.0f} events/s",
            met=ours_rate >= TARGET_EVENTS_S,
            detail={
                "events": n,
                "requests": n_requests,
                "repeats": repeats,
                "cpu": cpu,
                "ours_s": ours,
                "baseline_s": base,
                "best_events_s": n / min(ours),
            },
        )
    ]


def _profile(records: list[WireRecord], results: Path) -> None:
    """Save the hot path's profile: pyinstrument (call tree) and cProfile (per function)."""
    try:
        import pyinstrument
    except ImportError:  # the bench extra is not installed: cProfile alone
        pyinstrument = None  # type: ignore[assignment]
    if pyinstrument is not None:
        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
        process_all(make_engine(), records)
        profiler.stop()
        (results / "profile-core.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8"
        )
        (results / "profile-core.html").write_text(profiler.output_html(), encoding="utf-8")
    prof = cProfile.Profile()
    prof.enable()
    process_all(make_engine(), records)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(40)
    (results / "profile-core-cprofile.txt").write_text(out.getvalue(), encoding="utf-8")
