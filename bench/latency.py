"""Latency from a feedback being produced to its effect in ``/metrics``, p50 / p99.

The service runs in its own process (its Kafka source on a new topic, its
HTTP server on a free port). The harness produces the generator's records
at a steady rate (1k and 5k records/s), noting when it hands each feedback
to the producer, and scrapes ``/metrics`` every 100 ms meanwhile (a load far
above any Prometheus, so the render cost is in the measurement). The service
notes when each feedback's batch has been applied: from then on any scrape
shows it (counters and windows move in the same step). Latency = (applied −
sent) + the duration of the first scrape that started after it was applied:
the time until ``/metrics`` returns the effect to a scrape made as soon as
it could show it. The wait for the next scrape is the scrape interval, a
Prometheus setting, and is left out.

Baseline: the same produce → consume latency for a raw aiokafka
``getmany`` consumer reading the same records in a separate run: the floor
set by the producer, the broker and a Python consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._timing import percentile
from bench._worker import ROOT, as_in_service_run
from bench.broker import create_topic, delete_topics, new_topic_name
from bench.core import WINDOWS
from bench.kafka_e2e import service_settings, time_commits
from bench.result import Context, Figure
from bench.stream import WireRecord, bench_config, wire_stream

__all__ = ["run"]

TARGET_P99_MS = 20.0
_SCRAPE_EVERY_S = 0.1
RATES = (1000, 5000)
_FEEDBACK = b"io.seldon.serving.feedback"
_PROBE = re.compile(rb"^feedback_stream_events_total\{([^}]*)\} (\S+)$", re.MULTILINE)


def _records(count: int) -> list[WireRecord]:
    requests = count // 5 + 10
    config = bench_config(requests, deployments=2, feedback_share=0.8)
    from dataclasses import replace

    config = replace(config, feedback_delay_mean_s=0.2, request_rate=1000.0)
    return wire_stream(config)[:count]


def _is_feedback(r: WireRecord) -> bool:
    return any(name == "ce_type" and value == _FEEDBACK for name, value in r.headers)


def _ce_id(r: WireRecord) -> bytes:
    return next(v for name, v in r.headers if name == "ce_id")


async def _produce(
    bootstrap: str, topic: str, records: Sequence[WireRecord], rate: float
) -> list[tuple[WireRecord, float]]:
    """Send at ``rate`` records/s; return each feedback with its send time."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    sent: list[tuple[WireRecord, float]] = []
    try:
        start = time.time()
        for i, r in enumerate(records):
            due = start + i / rate
            delay = due - time.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            now = time.time()
            await producer.send(
                topic, r.value, key=r.key, timestamp_ms=int(now * 1000), headers=r.headers
            )
            if _is_feedback(r):
                sent.append((r, now))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _scrape(port: int, stop: asyncio.Event) -> list[tuple[float, float, int]]:
    """(start, duration, feedbacks accepted) of a scrape every 100 ms until ``stop``."""
    import aiohttp

    seen: list[tuple[float, float, int]] = []
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            start = time.time()
            async with session.get(url) as response:
                body = await response.read()
            seen.append((start, time.time() - start, _accepted_feedbacks(body)))
            await asyncio.sleep(max(0.0, start + _SCRAPE_EVERY_S - time.time()))
    return seen


def _accepted_feedbacks(body: bytes) -> int:
    for match in _PROBE.finditer(body):
        labels = match.group(1)
        if b'type="feedback"' in labels and b'status="accepted"' in labels:
            return int(float(match.group(2)))
    return 0


def _latencies_ours(
    sent: list[tuple[WireRecord, float]],
    applied: dict[str, float],
    scrapes: list[tuple[float, float, int]],
) -> list[float]:
    """Per feedback: applied - sent + duration of the first scrape started after applying."""
    starts = [s for s, _, _ in scrapes]
    out: list[float] = []
    for record, t_send in sent:
        t_applied = applied.get(_ce_id(record).decode())
        if t_applied is None:
            continue
        j = bisect.bisect_left(starts, t_applied)
        if j == len(scrapes):
            break
        out.append(t_applied - t_send + scrapes[j][1])
    return out


def _start(argv: list[str]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _ready_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise RuntimeError(f"child exited ({proc.wait()}) before {prefix.strip()}")


async def _measure(
    bootstrap: str, records: list[WireRecord], rate: float, ours: bool, whole: bool = False
) -> tuple[list[float], float, dict[str, Any]]:
    topic = new_topic_name("bench-latency")
    await create_topic(bootstrap, topic, 1)
    mode = ("serve-whole" if whole else "serve") if ours else "raw"
    proc = _start(
        [sys.executable, "-m", "bench.latency", mode, "--bootstrap", bootstrap, "--topic", topic]
    )
    try:
        port = int(await asyncio.to_thread(_ready_line, proc, "READY "))
        stop = asyncio.Event()
        stats: dict[str, Any] = {}
        scraper = asyncio.create_task(_scrape(port, stop)) if ours else None
        t0 = time.time()
        sent = await _produce(bootstrap, topic, records, rate)
        achieved = len(records) / (time.time() - t0)
        await asyncio.sleep(1.0)
        stop.set()
        if scraper is not None:
            scrapes = await scraper
            assert proc.stdin is not None
            proc.stdin.close()
            applied = json.loads(await asyncio.to_thread(_ready_line, proc, "APPLIED "))
            stats = json.loads(await asyncio.to_thread(_ready_line, proc, "STATS "))
            stats["scrape"] = _spread([d for _, d, _ in scrapes])
            stats["scrapes_seeing_every_feedback"] = scrapes[-1][2] >= len(sent)
            latencies = _latencies_ours(sent, applied, scrapes)
        else:
            assert proc.stdin is not None
            proc.stdin.close()
            received: dict[str, float] = json.loads(
                await asyncio.to_thread(_ready_line, proc, "RECEIVED ")
            )
            latencies = [
                received[_ce_id(r).decode()] - t for r, t in sent if _ce_id(r).decode() in received
            ]
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await delete_topics(bootstrap, [topic])
    # The first second warms the consumer's fetch loop and the JIT-less caches alike.
    skip = int(len(latencies) * 0.05)
    return [v * 1000.0 for v in latencies[skip:]], achieved, stats


def run(ctx: Context) -> list[Figure]:
    assert ctx.bootstrap_address is not None
    seconds = 15.0 if ctx.scale >= 0.5 else 1.5 if ctx.scale >= 0.01 else 1.0
    figures: list[Figure] = []
    for rate in RATES if ctx.scale >= 0.01 else RATES[:1]:
        records = _records(int(rate * seconds))
        ours, achieved, stats = asyncio.run(_measure(ctx.bootstrap_address, records, rate, True))
        base, _, _ = asyncio.run(_measure(ctx.bootstrap_address, records, rate, False))
        for q in (50, 99):
            value = percentile(ours, q) if ours else float("nan")
            floor = percentile(base, q) if base else None
            strict = q == 99 and rate == 5000
            figures.append(
                Figure(
                    benchmark="latency",
                    name=f"feedback → effect in /metrics, p{q} at {rate // 1000}k records/s",
                    value=value,
                    unit="ms",
                    baseline_name=f"produce → raw aiokafka getmany, p{q}",
                    baseline_value=floor,
                    target=f"<= {TARGET_P99_MS:.0f} ms" if strict else None,
                    met=(value <= TARGET_P99_MS) if strict else None,
                    detail={
                        "feedbacks": len(ours),
                        "achieved_rate": achieved,
                        "seconds": seconds,
                        "max_ms": max(ours) if ours else None,
                        "where_the_time_goes": stats,
                    },
                )
            )
        if rate == RATES[-1] and ctx.scale >= 0.01:
            figures.append(_stall_figure(ctx.bootstrap_address, records, rate, stats))
    figures.append(_gc_figure(max(20_000, int(rate * seconds * 2))))
    return figures


_OLD_YOUNG_THRESHOLD = (50_000, 20)
"""The collector settings before young collections were made smaller (the baseline)."""


def _gc_figure(count: int) -> Figure:
    """Young-collection pauses, the service's collector settings vs the earlier ones.

    Each in a fresh process: the latency stream (twice the run's records)
    through the engine, with the changelog tracker taking changes every 500
    records as the state store does; every collection's pause timed with
    ``gc.callbacks``, and the process CPU time of the whole loop.
    """
    from feedback_stream._gc import MIDDLE_THRESHOLD, YOUNG_THRESHOLD

    runs = {}
    for young, middle in ((YOUNG_THRESHOLD, MIDDLE_THRESHOLD), _OLD_YOUNG_THRESHOLD):
        argv = [sys.executable, "-m", "bench.latency", "gc", "--records", str(count)]
        proc = _start([*argv, "--young", str(young), "--middle", str(middle)])
        runs[young] = json.loads(_ready_line(proc, "GC "))
        proc.wait()
    ours, old = runs[YOUNG_THRESHOLD], runs[_OLD_YOUNG_THRESHOLD[0]]
    return Figure(
        benchmark="latency",
        name="young garbage collection pause, p99",
        value=ours["young_p99_ms"],
        unit="ms",
        baseline_name=f"every {_OLD_YOUNG_THRESHOLD[0]:,} allocations (before)",
        baseline_value=old["young_p99_ms"],
        detail={"ours": ours, "before": old, "young_threshold": YOUNG_THRESHOLD},
    )


def _gc_child(args: argparse.Namespace) -> None:
    from feedback_stream._gc import tune_collector
    from feedback_stream.changelog import ChangeTracker
    from feedback_stream.decode import decode_kafka_record
    from feedback_stream.engine import ALL_PARTITIONS, Engine
    from feedback_stream.events import SourcePosition

    records = _records(args.records)
    engine = Engine(WINDOWS)
    tracker = ChangeTracker("*", engine.state(ALL_PARTITIONS))
    tune_collector()
    gc.set_threshold(args.young, args.middle, gc.get_threshold()[2])
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)
    cpu = time.process_time()
    for start in range(0, len(records), 50):
        engine.process_events(
            [
                decode_kafka_record(r.headers, r.value, r.timestamp, SourcePosition("t", 0, i))
                for i, r in enumerate(records[start : start + 50], start)
            ]
        )
        if start % 500 == 0:
            tracker.changes()
    cpu = time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    young = sorted(p * 1000.0 for p in pauses[0])
    out = {
        "young_p99_ms": percentile(young, 99) if young else 0.0,
        "young_p50_ms": percentile(young, 50) if young else 0.0,
        "young_count": len(young),
        "collector_ms": sum(sum(p) for p in pauses.values()) * 1000.0,
        "older_collections": len(pauses[1]) + len(pauses[2]),
        "cpu_s": cpu,
    }
    print("GC " + json.dumps(out), flush=True)


def _stall_figure(
    bootstrap: str, records: list[WireRecord], rate: float, sliced: dict[str, Any]
) -> Figure:
    """The longest the state commit holds consumption up: taken in slices vs whole.

    The same stream again, with the takes between batches off (the stage
    takes the whole second's changes, as before slicing). A stall is the
    stage's or a take's (whichever is longer), p99 over the run.
    """
    ours, _, whole = asyncio.run(_measure(bootstrap, records, rate, True, whole=True))

    def worst(stats: dict[str, Any]) -> float:
        return max(float((stats.get(k) or {}).get("p99_ms", 0.0)) for k in ("commit", "prestage"))

    return Figure(
        benchmark="latency",
        name=f"state commit stall under the batch lock, p99 at {int(rate) // 1000}k records/s",
        value=worst(sliced),
        unit="ms",
        baseline_name="the same with the whole interval staged at once",
        baseline_value=worst(whole),
        detail={
            "sliced": {k: sliced.get(k) for k in ("commit", "prestage", "gc_pause")},
            "whole": {k: whole.get(k) for k in ("commit", "prestage", "gc_pause")},
            "whole_p99_latency_ms": percentile(ours, 99) if ours else None,
        },
    )


# -- children ------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    from feedback_stream.service import Service

    settings = service_settings(args.bootstrap, args.topic, new_topic_name("bench-latency"))
    ages: list[float] = []
    applies: list[float] = []
    commits: list[float] = []  # offset commit durations, once the service runs
    prestages: list[float] = []  # takes of state changes between batches
    applied: dict[str, float] = {}

    class _Timed(Service):
        """Notes when each feedback took effect, and where the time went."""

        async def apply(self, records: Sequence[Any]) -> None:
            start = time.time()
            ages.extend(start - r.timestamp / 1000.0 for r in records)
            await super().apply(records)
            done = time.time()
            applies.append(done - start)
            for r in records:
                headers = dict(r.headers)
                if headers.get("ce_type") == _FEEDBACK:
                    applied[headers["ce_id"].decode()] = done

    gc_pauses: list[float] = []
    gc_by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            pause = time.perf_counter() - gc_started[0]
            gc_pauses.append(pause)
            gc_by_generation[info["generation"]].append(pause)

    service = _Timed(settings)
    await service.start()
    as_in_service_run()
    # From here: the start-up's full collection (tune_collector) is no pause of the stream.
    gc.callbacks.append(on_gc)
    try:
        commits = time_commits(service)
        prestages = _time_prestages(service)
        assert service.kafka is not None
        await service.kafka.assigned_once.wait()
        # Ready once the state is restored and the partition consumed: a new broker's
        # transaction log may take seconds to come up (within a minute).
        for _ in range(1200):
            if service.kafka.assigned:
                break
            await asyncio.sleep(0.05)
        print(f"READY {service.http_port}", flush=True)
        await asyncio.to_thread(sys.stdin.read)
    finally:
        await service.stop()
    stats: dict[str, Any] = {
        name: _spread(values)
        for name, values in (("age_at_apply", ages), ("apply", applies), ("commit", commits))
    }
    stats["prestage"] = _spread(prestages)
    stats["gc_pause"] = _spread(gc_pauses)
    stats["gc_pause_max_ms"] = max(gc_pauses, default=0.0) * 1000.0
    stats["gc_pause_by_generation"] = {
        str(generation): _spread(pauses) for generation, pauses in gc_by_generation.items()
    }
    print("APPLIED " + json.dumps(applied), flush=True)
    print("STATS " + json.dumps(stats), flush=True)


def _time_prestages(service: Any) -> list[float]:
    """Record how long each take of state changes between batches holds consumption up."""
    store = service.state_store
    if store is None:
        return []
    prestage = store.prestage
    taken: list[float] = []

    def timed() -> None:
        before, start = store._prestaged_at, time.perf_counter()
        prestage()
        if store._prestaged_at != before:  # took (most calls wait for the interval)
            taken.append(time.perf_counter() - start)

    store.prestage = timed
    return taken


def _spread(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    ms = [s * 1000.0 for s in seconds]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "count": len(ms)}


async def _raw(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    received: dict[str, float] = {}
    try:
        tp = TopicPartition(args.topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        print("READY 0", flush=True)
        closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
        while not closed.done():
            batch = await consumer.getmany(timeout_ms=50, max_records=500)
            now = time.time()
            for records in batch.values():
                for record in records:
                    headers: Any = dict(record.headers)
                    if headers.get("ce_type") == _FEEDBACK:
                        received[headers["ce_id"].decode()] = now
    finally:
        await consumer.stop()
    print("RECEIVED " + json.dumps(received), flush=True)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument("mode", choices=("serve", "serve-whole", "raw", "gc"))
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--young", type=int, default=0)
    parser.add_argument("--middle", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "gc":
        _gc_child(args)
        return 0
    if args.mode == "serve-whole":
        from feedback_stream.kafka import state_store

        state_store.PRESTAGE_INTERVAL_S = float("inf")  # type: ignore[misc]
    asyncio.run(_raw(args) if args.mode == "raw" else _serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
