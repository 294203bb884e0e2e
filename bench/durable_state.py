"""Durable state: the Kafka path with the state topic on vs off, and the restore time.

(a) One preloaded topic consumed by the service twice, each in its own
process and consumer group (``python -m bench.kafka_e2e ours``), with
``state_changelog`` on (every second: the changed records and the offsets
in one transaction) and off (plain offset commits). The cost is one minus
the ratio of the two rates, measured in one run.

(b) A state of 1M pending puids (request and response read, feedback not)
and a ``1h`` window of 100,000 outcomes (feedback over the last hour, about
28 a second), built by the engine from generator records, written to a
state topic by the real tracker and store in one transaction, then restored
by a new store into a new engine: the time from the start of the restore
(producer start, fencing, reading the topic ``read_committed``, rebuilding)
to the state installed, and the CPU seconds the restoring process used
meanwhile (the broker's share not included).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from bench import kafka_e2e
from bench._worker import run_contender
from bench.broker import create_topic, delete_topics, new_topic_name, preload
from bench.memory import pending_records
from bench.result import Context, Figure
from bench.stream import bench_config, iter_wire

__all__ = ["run"]

TARGET_COST = 0.25
TARGET_RESTORE_S = 60.0


def run(ctx: Context) -> list[Figure]:
    assert ctx.bootstrap_address is not None
    return [*_throughput(ctx), _restore(ctx)]


def _throughput(ctx: Context) -> list[Figure]:
    bootstrap = ctx.bootstrap_address
    assert bootstrap is not None
    n_requests = ctx.size(5_000, minimum=150)
    records = kafka_e2e.recent_stream(n_requests, keyed=True)
    topic = new_topic_name("bench-durable")

    async def prepare() -> None:
        await create_topic(bootstrap, topic, 1)
        await preload(bootstrap, topic, records)

    asyncio.run(prepare())
    timeout = max(120.0, len(records) / 100.0)
    rates: dict[str, float] = {}
    details: dict[str, Any] = {}
    try:
        for state in ("on", "off"):
            argv = [
                sys.executable,
                "-m",
                "bench.kafka_e2e",
                "ours",
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--expected",
                str(len(records)),
                "--state",
                state,
                "--group",
                new_topic_name(f"bench-durable-{state}"),
            ]
            result = run_contender(argv, timeout)
            rates[state] = result.rate
            details[state] = {"records": result.records, "seconds": result.t_last - result.t_first}
    finally:
        asyncio.run(delete_topics(bootstrap, [topic, *(f"{topic}-state",)]))
    cost = 1.0 - rates["on"] / rates["off"]
    return [
        Figure(
            benchmark="durable",
            name="(a) Kafka path with durable state (state topic, transactions) vs without",
            value=rates["on"],
            unit="records/s",
            baseline_name="durable state off",
            baseline_value=rates["off"],
            target=f"cost <= {TARGET_COST:.0%}",
            met=cost <= TARGET_COST,
            detail={"cost": cost, **details},
        )
    ]


def _restore(ctx: Context) -> Figure:
    puids = ctx.size(1_000_000, minimum=2_000)
    outcomes = ctx.size(100_000, minimum=500)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.durable_state",
            "--bootstrap",
            str(ctx.bootstrap_address),
            "--puids",
            str(puids),
            "--outcomes",
            str(outcomes),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    return Figure(
        benchmark="durable",
        name=f"(b) restore of {puids:,} pending puids + a 1h window of {outcomes:,} outcomes",
        value=measured["restore_s"],
        unit="s",
        target=f"< {TARGET_RESTORE_S:.0f} s",
        met=measured["restore_s"] < TARGET_RESTORE_S,
        detail=measured,
    )


async def _measure(bootstrap: str, n_puids: int, n_outcomes: int) -> dict[str, Any]:
    from aiokafka import TopicPartition

    from feedback_stream.engine import ALL_PARTITIONS, Engine
    from feedback_stream.events import SourcePosition
    from feedback_stream.kafka.state_store import StateStore
    from feedback_stream.settings import Settings

    topic = new_topic_name("bench-restore")
    await create_topic(bootstrap, topic, 1)
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topics=[topic],
        kafka_group_id=topic,
        log_level="WARNING",
    )
    tp = TopicPartition(topic, 0)
    windows = ("total", "1h")
    try:
        engine = Engine(windows)
        store = StateStore(settings, engine)
        await store.ensure_topic([topic])
        await store.prepare(ALL_PARTITIONS)
        await store.restore(ALL_PARTITIONS, {tp: None})
        now_ms = int(time.time() * 1000)
        config = bench_config(n_outcomes, request_rate=n_outcomes / 3600.0)
        config = replace(config, start_ms=now_ms - 3_600_000, feedback_share=1.0)
        offset = 0
        for record in iter_wire(config):
            engine.process_record(
                record.headers, record.value, record.timestamp, SourcePosition(topic, 0, offset)
            )
            offset += 1
        write_s = 0.0
        for headers, value, ts in pending_records(n_puids):
            engine.process_record(
                headers, value, now_ms + ts % 1000, SourcePosition(topic, 0, offset)
            )
            offset += 1
            if offset % 20_000 == 0:  # as the service commits: a delta at a time
                wrote = time.perf_counter()
                assert await store.commit({tp: offset})
                write_s += time.perf_counter() - wrote
        pending = engine.pending
        wrote = time.perf_counter()
        assert await store.commit({tp: offset})
        write_s += time.perf_counter() - wrote
        counts = {k: engine.counts(k, "1h").outcomes for k in engine.model_keys()}
        await store.stop()
        del engine, store
        gc.collect()

        fresh = Engine(windows)
        again = StateStore(settings, fresh)
        started, cpu = time.perf_counter(), time.process_time()
        await again.ensure_topic([topic])
        await again.prepare(ALL_PARTITIONS)
        await again.restore(ALL_PARTITIONS, {tp: offset})
        restore_s = time.perf_counter() - started
        # This process's CPU seconds: what the restore costs on a core of its own
        # (wall time on a shared machine is inflated by the other processes' load).
        restore_cpu_s = time.process_time() - cpu
        restored = {k: fresh.counts(k, "1h").outcomes for k in fresh.model_keys()}
        ok = restored == counts and fresh.pending == pending
        records = again.restored_records
        await again.stop()
        if not ok:
            raise SystemExit(f"restored state differs: {restored} vs {counts}")
        return {
            "restore_s": restore_s,
            "restore_cpu_s": restore_cpu_s,
            "write_s": write_s,
            "records": records,
            "pending": pending,
            "window_outcomes": sum(counts.values()),
        }
    finally:
        await delete_topics(bootstrap, [topic, f"{topic}-state"])


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.durable_state")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--puids", type=int, required=True)
    parser.add_argument("--outcomes", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_measure(args.bootstrap, args.puids, args.outcomes))))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
