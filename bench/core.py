"""Core throughput: decode + join + three windows, one process pinned to one core.

The stream is generated and converted to wire form (header bytes, value
bytes) before the clock starts; what is timed is exactly what the Kafka
source asks of the engine per record: :meth:`Engine.process_record`, plus the
expiry tick every 1000 records. The baseline is ``orjson.loads`` of every
record value: the least work any consumer of these records does, so the
ratio says how much of a pure parse our whole pipeline costs.

Both run under the garbage-collector settings the service applies when it
starts (:func:`feedback_stream._gc.tune_collector`: start-up objects frozen,
a young collection every ``YOUNG_THRESHOLD`` allocations), restored afterwards. The
figure's ``core`` detail says whether the core ran compiled (mypyc) or as
pure Python (:mod:`feedback_stream._compiled`).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench._timing import median, pinned
from bench.result import Context, Figure
from bench.scored import KINDS, kinds, scored_stream
from bench.stream import WireRecord, bench_config, wire_stream
from feedback_stream import CORE_BUILD
from feedback_stream._gc import tune_collector
from feedback_stream.engine import Engine
from feedback_stream.events import SourcePosition
from feedback_stream.model_kinds import ModelKinds

__all__ = [
    "WINDOWS",
    "apply_all",
    "make_engine",
    "process_all",
    "run",
    "save_profile",
    "service_gc",
]

WINDOWS = ("total", "5m", "1000")
TARGET_EVENTS_S = 200_000.0
_TICK_EVERY = 1000


def make_engine(kinds: ModelKinds | None = None) -> Engine:
    return Engine(WINDOWS, kinds=kinds)


def process_all(engine: Engine, records: list[WireRecord], topic: str = "bench") -> None:
    """Feed records through ``engine`` as the Kafka source does, expiring every 1000."""
    process = engine.process_record
    for offset, r in enumerate(records):
        process(r.headers, r.value, r.timestamp, SourcePosition(topic, r.partition, offset))
        if offset % _TICK_EVERY == 0:
            engine.expire(engine.clock)


@dataclass(frozen=True, slots=True)
class _ConsumerRecord:
    """The attributes of an aiokafka ``ConsumerRecord`` that the service reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def consumer_records(records: list[WireRecord], topic: str = "bench") -> list[_ConsumerRecord]:
    return [
        _ConsumerRecord(topic, r.partition, i, r.timestamp, r.key, r.value, r.headers)
        for i, r in enumerate(records)
    ]


def make_service() -> Any:
    """A service that is never started: its batch handler, counters and engine."""
    from feedback_stream.service import Service
    from feedback_stream.settings import Settings

    return Service(Settings(windows=list(WINDOWS), http_port=0, log_level="WARNING"))


def apply_all(service: Any, records: list[_ConsumerRecord]) -> None:
    """Feed records to the service's Kafka batch handler in batches of 500."""

    async def feed() -> None:
        for start in range(0, len(records), 500):
            await service.apply(records[start : start + 500])
            if start % _TICK_EVERY == 0:
                service.engine.expire(service.engine.clock)

    asyncio.run(feed())


@contextmanager
def service_gc() -> Iterator[None]:
    """The service's collector settings for the timed runs, the defaults restored after."""
    saved = gc.get_threshold()
    tune_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def _parse_all(records: list[WireRecord]) -> None:
    loads = orjson.loads
    for r in records:
        loads(r.value)


def _timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def run(ctx: Context) -> list[Figure]:
    n_requests = ctx.size(30_000, minimum=200)
    repeats = 3 if ctx.scale >= 0.01 else 1
    records = wire_stream(bench_config(n_requests))
    n = len(records)
    ours: list[float] = []
    base: list[float] = []
    service: list[float] = []
    batches = consumer_records(records)
    with pinned() as cpu, service_gc():
        for _ in range(repeats):
            base.append(_timed(_parse_all, records))
            ours.append(_timed(process_all, make_engine(), records))
            service.append(_timed(apply_all, make_service(), batches))
        if ctx.profile:
            save_profile("core", lambda: process_all(make_engine(), records), ctx.results)
            save_profile("service", lambda: apply_all(make_service(), batches), ctx.results)
    ours_rate = n / median(ours)
    base_rate = n / median(base)
    service_rate = n / median(service)
    scored = [_scored_figure(kind, n_requests, repeats) for kind in KINDS]
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
                "core": CORE_BUILD.reason,
                "events": n,
                "requests": n_requests,
                "repeats": repeats,
                "cpu": cpu,
                "ours_s": ours,
                "baseline_s": base,
                "best_events_s": n / min(ours),
            },
        ),
        Figure(
            benchmark="core",
            name="the service's Kafka batch handler (the above + Prometheus counters), one core",
            value=service_rate,
            unit="events/s",
            baseline_name="orjson.loads of every record value",
            baseline_value=base_rate,
            detail={"events": n, "repeats": repeats, "cpu": cpu, "service_s": service},
        ),
        *scored,
    ]


_SCORED_NAMES = {
    "binary": "binary-score stream (threshold, ROC AUC, log loss, Brier) through decode + join "
    "+ 3 windows, one core",
    "regression": "regression stream (MAE, MSE, R², MAPE) through decode + join + 3 windows, "
    "one core",
}


def _scored_figure(kind: str, n_requests: int, repeats: int) -> Figure:
    """One scored stream, timed like the classification one, its kind declared."""
    records = scored_stream(kind, n_requests)
    n = len(records)
    ours: list[float] = []
    base: list[float] = []
    with pinned() as cpu, service_gc():
        for _ in range(repeats):
            base.append(_timed(_parse_all, records))
            ours.append(_timed(process_all, make_engine(kinds()), records))
    rate = n / median(ours)
    return Figure(
        benchmark="core",
        name=_SCORED_NAMES[kind],
        value=rate,
        unit="events/s",
        baseline_name="orjson.loads of every record value",
        baseline_value=n / median(base),
        detail={"events": n, "requests": n_requests, "repeats": repeats, "cpu": cpu,
                "ours_s": ours, "baseline_s": base},
    )  # fmt: skip


def save_profile(name: str, work: Callable[[], None], results: Path) -> None:
    """Save a hot path's profile: pyinstrument (call tree) and cProfile (per function).

    Text only: pyinstrument's HTML of a full run weighs megabytes, and the
    results are committed.
    """
    try:
        import pyinstrument
    except ImportError:  # the bench extra is not installed: cProfile alone
        pyinstrument = None  # type: ignore[assignment]
    if pyinstrument is not None:
        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
        work()
        profiler.stop()
        (results / f"profile-{name}.txt").write_text(
            profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8"
        )
    prof = cProfile.Profile()
    prof.enable()
    work()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(40)
    (results / f"profile-{name}-cprofile.txt").write_text(out.getvalue(), encoding="utf-8")
