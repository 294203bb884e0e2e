"""Two processes on two partitions vs one process on both.

The stream is keyed by puid over two partitions (what the repartition step
produces), and the service runs with ``route="partition"``, so each
partition's join state is independent and a consumer group can split them.
One run starts one service process; the other starts two in the same
consumer group, which splits the partitions between them. Throughput is
all records over the time from the first record any process applied to the
last one. The broker runs on the same two cores: its CPU seconds over the
run (from ``/proc``) are reported as a share of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench._timing import process_cpu_seconds
from bench._worker import ROOT, as_in_service_run
from bench.broker import create_topic, delete_topics, new_topic_name, preload
from bench.kafka_e2e import MAX_BATCH, recent_stream, service_settings
from bench.result import Context, Figure

__all__ = ["run"]

TARGET_SPEEDUP = 1.5
_PARTITIONS = 2


def _run_group(
    bootstrap: str, topic: str, members: int, expected: int, broker_pid: int | None, timeout: float
) -> dict[str, Any]:
    group = new_topic_name("bench-scaling")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    argv = [sys.executable, "-m", "bench.scaling", "worker", "--bootstrap", bootstrap]
    argv += ["--topic", topic, "--group", group]
    procs = [
        subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(members)
    ]
    latest: list[dict[str, Any]] = [{} for _ in procs]

    def follow(i: int) -> None:
        out = procs[i].stdout
        assert out is not None
        for line in out:
            if line.startswith("PROGRESS "):
                latest[i] = json.loads(line.removeprefix("PROGRESS "))

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(members)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        # Hold every member paused until the group has settled on its final split.
        while not all(len(p.get("partitions", ())) == _PARTITIONS // members for p in latest):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the consumer group did not settle: {latest}")
            time.sleep(0.05)
        broker_before = process_cpu_seconds(broker_pid) if broker_pid else None
        wall_before = time.time()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        while sum(p.get("records", 0) for p in latest) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{members} process(es) applied {latest} of {expected}")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a scaling worker exited early: {[p.poll() for p in procs]}")
            time.sleep(0.05)
        wall = time.time() - wall_before
        broker_cpu = (
            process_cpu_seconds(broker_pid) - broker_before
            if broker_pid and broker_before is not None
            else None
        )
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for t in threads:
            t.join(timeout=5)
    t_first = min(p["t_first"] for p in latest if p.get("records"))
    t_last = max(p["t_last"] for p in latest if p.get("records"))
    return {
        "rate": expected / (t_last - t_first),
        "seconds": t_last - t_first,
        "members": [{k: p.get(k) for k in ("records", "partitions", "cpu_s")} for p in latest],
        "broker_cpu_s": broker_cpu,
        "broker_cores": broker_cpu / wall if broker_cpu is not None else None,
        "broker_share_of_machine": (
            broker_cpu / wall / (os.cpu_count() or 1) if broker_cpu is not None else None
        ),
    }


def run(ctx: Context) -> list[Figure]:
    assert ctx.bootstrap_address is not None
    bootstrap = ctx.bootstrap_address
    records = recent_stream(ctx.size(40_000, minimum=300), keyed=True, partitions=_PARTITIONS)
    topic = new_topic_name("bench-scaling")

    async def prepare() -> None:
        await create_topic(bootstrap, topic, _PARTITIONS)
        await preload(bootstrap, topic, records)

    asyncio.run(prepare())
    timeout = max(120.0, len(records) / 1000.0)
    try:
        one = _run_group(bootstrap, topic, 1, len(records), ctx.broker_pid, timeout)
        two = _run_group(bootstrap, topic, 2, len(records), ctx.broker_pid, timeout)
    finally:
        asyncio.run(delete_topics(bootstrap, [topic]))
    speedup = two["rate"] / one["rate"]
    return [
        Figure(
            benchmark="scaling",
            name="two service processes on two partitions (consumer group) vs one",
            value=two["rate"],
            unit="records/s",
            baseline_name="one process reading both partitions",
            baseline_value=one["rate"],
            target=f">= {TARGET_SPEEDUP}× one process",
            met=speedup >= TARGET_SPEEDUP,
            detail={"one": one, "two": two, "records": len(records)},
        )
    ]


# -- the worker ------------------------------------------------------------------


async def _worker(args: argparse.Namespace) -> None:
    import resource

    from feedback_stream.service import Service

    state: dict[str, Any] = {"records": 0, "t_first": 0.0, "t_last": 0.0}
    go = asyncio.Event()
    closed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "GO":
                loop.call_soon_threadsafe(go.set)
        loop.call_soon_threadsafe(closed.set)

    class _Counted(Service):
        async def assign(self, committed: Any) -> None:
            await super().assign(committed)
            if not go.is_set() and self.kafka is not None:
                # The harness starts every member at once, after the group has settled.
                self.kafka._require().pause(*committed)

        async def apply(self, records: Sequence[Any]) -> None:
            if not state["records"]:
                state["t_first"] = time.time()
            await super().apply(records)
            state["records"] += len(records)
            state["t_last"] = time.time()

    settings = service_settings(
        args.bootstrap, args.topic, args.group, kafka_max_batch=MAX_BATCH, route="partition"
    )
    service = _Counted(settings)
    await service.start()
    as_in_service_run()
    threading.Thread(target=read_commands, daemon=True).start()
    resumed = False
    try:
        while not closed.is_set():
            if go.is_set() and not resumed and service.kafka is not None:
                consumer = service.kafka._require()
                consumer.resume(*consumer.paused())
                resumed = True
            usage = resource.getrusage(resource.RUSAGE_SELF)
            kafka = service.kafka
            line = {
                **state,
                "partitions": sorted(tp.partition for tp in kafka.assigned) if kafka else [],
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
            print("PROGRESS " + json.dumps(line), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed.wait()), timeout=0.05)
    finally:
        await service.stop()


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling")
    parser.add_argument("mode", choices=("worker",))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_worker(args))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
