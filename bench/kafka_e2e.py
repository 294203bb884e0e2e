"""Kafka end to end: one preloaded topic, four consumers, the same stream.

(a) raw aiokafka ``getmany``, consume only: the ceiling of any Python
aiokafka consumer on this machine; (b) feedback-stream's service as it runs
by default (its Kafka source, decode, join, three windows, the Prometheus
counters, and durable state: the changed state records and the offsets in
one transaction a second); (c) the same join + windowed accuracy job written idiomatically
in Quix Streams (:mod:`bench.quix_job`) and (d) in Faust
(:mod:`bench.faust_job`), each with its own state store.

Each runs in its own process, one after another, reading the topic from the
start in a new consumer group. The rate is records over the time from the
first record the contender saw to the last one it finished, so start-up and
group joining are left out for everyone alike. A contender's time counts only
if the (correct, known) counts it computed for every model equal the core's
on the same records.

The records are keyed by puid (one partition) so that the baselines can keep
join state per message key, as both frameworks require.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench import envs
from bench._worker import (
    ContenderResult,
    as_in_service_run,
    model_name,
    report,
    run_contender,
)
from bench.broker import create_topic, delete_topics, new_topic_name, preload
from bench.core import WINDOWS, make_engine, process_all
from bench.result import Context, Figure
from bench.stream import WireRecord, bench_config, wire_stream

__all__ = ["expected_counts", "run"]

if TYPE_CHECKING:
    from feedback_stream.settings import Settings

MAX_BATCH = 500


def time_commits(service: Any) -> list[float]:
    """Record how long each commit holds consumption up (the batch lock is held).

    Without durable state that is the offset commit's round trip; with it,
    the outcome sink's flush and the staging of the state records (the
    transaction's round trips run on while the next batches are applied,
    and only a commit that finds the previous one still running waits for it).
    """
    kafka = service.kafka
    assert kafka is not None
    commit = kafka._commit_applied
    commits: list[float] = []

    async def timed_commit(*, wait: bool = True) -> None:
        start = time.perf_counter()
        await commit(wait=wait)
        commits.append(time.perf_counter() - start)

    kafka._commit_applied = timed_commit
    return commits


def service_settings(bootstrap: str, topic: str, group: str, **extra: Any) -> Settings:
    """The service as the Kafka benchmarks run it: one topic, from the start, no HTTP port."""
    from feedback_stream.settings import Settings

    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topics=[topic],
        kafka_group_id=group,
        kafka_auto_offset_reset="earliest",
        windows=list(WINDOWS),
        http_host="127.0.0.1",
        http_port=0,
        log_level="WARNING",
        **extra,
    )


TARGET_OF_RAW = 0.60
TARGET_OF_QUIX_TUMBLING = 4.0


def recent_stream(n_requests: int, **kwargs: Any) -> list[WireRecord]:
    """A stream whose event times end now, so the service's wall clock agrees with them."""
    rate = kwargs.pop("request_rate", 1000.0)
    start_ms = int(time.time() * 1000 - n_requests / rate * 1000 - 60_000)
    config = bench_config(n_requests, request_rate=rate, **kwargs)
    from dataclasses import replace

    return wire_stream(replace(config, start_ms=start_ms))


def expected_counts(records: Sequence[WireRecord]) -> tuple[dict[str, list[int]], int]:
    """Per model (correct, known) in the total window, and the outcomes, by the core."""
    engine = make_engine()
    process_all(engine, list(records))
    out: dict[str, list[int]] = {}
    outcomes = 0
    for key in engine.model_keys():
        counts = engine.counts(key, "total")
        outcomes += counts.outcomes
        out[model_name(key.namespace, key.deployment, key.predictor, key.model)] = [
            counts.correct,
            counts.known,
        ]
    return out, outcomes


def _check(name: str, got: ContenderResult, want: dict[str, list[int]]) -> str | None:
    if got.models == want:
        return None
    diff = {
        k: (got.models.get(k), want.get(k))
        for k in sorted(set(got.models) | set(want))
        if got.models.get(k) != want.get(k)
    }
    return f"{name} computed different (correct, known) counts than the core: {diff}"


def run(ctx: Context) -> list[Figure]:
    assert ctx.bootstrap_address is not None
    bootstrap = ctx.bootstrap_address
    # Quix Streams and Faust read about a thousand records a second: 5k requests
    # (28k records) keep the whole run under ten minutes.
    n_requests = ctx.size(5_000, minimum=150)
    records = recent_stream(n_requests, keyed=True)
    n = len(records)
    want, outcomes = expected_counts(records)
    topic = new_topic_name("bench-e2e")
    asyncio.run(_prepare(bootstrap, topic, records))
    timeout = max(120.0, n / 100.0)
    py = sys.executable
    common = ["--bootstrap", bootstrap, "--topic", topic, "--expected", str(n)]
    results: dict[str, ContenderResult] = {}
    problems: dict[str, str] = {}
    contenders: list[tuple[str, list[str]]] = [
        ("raw", [py, "-m", "bench.kafka_e2e", "raw", *common]),
        ("ours", [py, "-m", "bench.kafka_e2e", "ours", *common]),
    ]
    try:
        baseline_py = str(envs.baseline_python())
        extra = ["--outcomes", str(outcomes)]
        quix = [baseline_py, "-m", "bench.quix_job", *common, *extra]
        contenders.append(("quix", [*quix, "--window", "sliding"]))
        contenders.append(("quix-tumbling", [*quix, "--window", "tumbling"]))
        contenders.append(("faust", [baseline_py, "-m", "bench.faust_job", *common, *extra]))
    except Exception as exc:  # no network, say: the report says so
        for name in ("quix", "quix-tumbling", "faust"):
            problems[name] = f"baseline venv unavailable: {exc}"
    try:
        for name, argv in contenders:
            try:
                result = run_contender([*argv, "--group", new_topic_name(f"bench-{name}")], timeout)
            except Exception as exc:
                problems[name] = str(exc)
                continue
            if name != "raw":
                wrong = _check(name, result, want)
                if wrong is not None:
                    problems[name] = wrong
                    continue
            results[name] = result
    finally:
        asyncio.run(delete_topics(bootstrap, [topic]))
    return _figures(n, results, problems)


async def _prepare(bootstrap: str, topic: str, records: list[WireRecord]) -> None:
    await create_topic(bootstrap, topic, 1)
    await preload(bootstrap, topic, records)


def _detail(r: ContenderResult | None) -> dict[str, Any]:
    if r is None:
        return {}
    return {"records": r.records, "seconds": r.t_last - r.t_first, "cpu_s": r.cpu_s, **r.extra}


def _figures(n: int, results: dict[str, ContenderResult], problems: dict[str, str]) -> list[Figure]:
    raw, ours = results.get("raw"), results.get("ours")
    quix, faust = results.get("quix"), results.get("faust")
    quix_tumbling = results.get("quix-tumbling")
    nan = float("nan")
    figures = [
        Figure(
            benchmark="kafka",
            name="(a) raw aiokafka getmany, consume only (the ceiling)",
            value=raw.rate if raw else nan,
            unit="records/s",
            detail={**_detail(raw), "problem": problems.get("raw")},
        ),
        Figure(
            benchmark="kafka",
            name=(
                "(b) feedback-stream service: source + decode + join + 3 windows + counters "
                "+ durable state"
            ),
            value=ours.rate if ours else nan,
            unit="records/s",
            baseline_name="(a) raw aiokafka",
            baseline_value=raw.rate if raw else None,
            target=f">= {TARGET_OF_RAW:.0%} of raw aiokafka",
            met=bool(ours and raw and ours.rate >= TARGET_OF_RAW * raw.rate),
            detail={**_detail(ours), "records_total": n, "problem": problems.get("ours")},
        ),
    ]
    for key, label, job, target, r in (
        ("quix", "(c) Quix Streams", "5-min sliding window (ours: exact sliding)", 3.0, quix),
        (
            "quix-tumbling",
            "(c') Quix Streams",
            "5-min tumbling window instead (coarser, cheaper)",
            TARGET_OF_QUIX_TUMBLING,
            quix_tumbling,
        ),
        ("faust", "(d) Faust", "5-min tumbling window (it has no sliding)", 5.0, faust),
    ):
        figures.append(
            Figure(
                benchmark="kafka",
                name=f"(b) feedback-stream vs {label}: join + {job}, same accuracy",
                value=ours.rate if ours else nan,
                unit="records/s",
                baseline_name=f"{label} job",
                baseline_value=r.rate if r else None,
                target=f">= {target:.0f}× {label.split(' ', 1)[1]}" if target else None,
                met=bool(ours and r and ours.rate >= target * r.rate) if target else None,
                detail={**_detail(r), "problem": problems.get(key)},
            )
        )
    return figures


# -- the contenders that run in the project's venv ---------------------------------


async def _raw(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(args.topic) or {0}
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        t_first = 0.0
        while seen < args.expected:
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            for records in batch.values():
                if records and not seen:
                    t_first = time.time()
                seen += len(records)
        report(seen, t_first, time.time())
    finally:
        await consumer.stop()


async def _ours(args: argparse.Namespace) -> None:
    from feedback_stream.service import Service

    done = asyncio.Event()
    stamps: dict[str, float] = {}

    class _Timed(Service):
        seen = 0

        async def apply(self, records: Sequence[Any]) -> None:
            if not self.seen:
                stamps["first"] = time.time()
                stamps["first_cpu"] = time.process_time()
            await super().apply(records)
            self.seen += len(records)
            if self.seen >= args.expected and "last" not in stamps:
                stamps["last"] = time.time()
                stamps["last_cpu"] = time.process_time()
                done.set()

    settings = service_settings(
        args.bootstrap,
        args.topic,
        args.group,
        kafka_max_batch=MAX_BATCH,
        state_changelog=args.state == "on",
    )
    service = _Timed(settings)
    await service.start()
    as_in_service_run()
    # Where the time goes: how long commits hold consumption up.
    commits = time_commits(service)
    models = {}
    try:
        await asyncio.wait_for(done.wait(), timeout=args.timeout)
        # Read before stopping: a stop releases the states (durable state hands them on).
        engine = service.engine
        for key in engine.model_keys():
            counts = engine.counts(key, "total")
            name = model_name(key.namespace, key.deployment, key.predictor, key.model)
            models[name] = [counts.correct, counts.known]
    finally:
        await service.stop()
    report(
        service.seen,
        stamps["first"],
        stamps["last"],
        models,
        commits=len(commits),
        commit_wait_s=sum(commits),
        # This process's CPU seconds from its first record to its last (start-up left out).
        consume_cpu_s=stamps["last_cpu"] - stamps["first_cpu"],
        durable_state=args.state,
        state_transactions=service.state_store.commits if service.state_store else 0,
    )


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka_e2e")
    parser.add_argument("contender", choices=("raw", "ours"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--state", choices=("on", "off"), default="on", help="durable state (the state topic)"
    )
    args = parser.parse_args(argv)
    asyncio.run(_raw(args) if args.contender == "raw" else _ours(args))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
