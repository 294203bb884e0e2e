"""SIGKILL the real ``feedback-stream run`` at random moments, restart it, scale a group
1 -> 3 -> 1: every window and every counter ends equal to ``feedback-stream replay``.
A state commit the broker refuses for good stops the process (exit 1); its restart
goes on exactly.

Records are stamped 40 minutes ahead of the wall clock, so the service reads its
windows at the stream's own clock, as replay does (``engine.counts`` reads at
the later of the clock and now), and nothing expires on the wall clock. The
count window is order-independent by construction: its last N outcomes are
produced only after everything before them has been consumed, so its content
is one set whatever the interleaving of partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from feedback_stream.encode import ReplayRecord
from feedback_stream.generator import GeneratorConfig, generate_records
from tests._processor import (
    create_topic,
    free_port,
    get_json,
    parse_metrics,
    produce,
    sample_sum,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

BIN = Path(sys.executable).parent / "feedback-stream"
WINDOWS = "total,1m,300"
COUNT = 300
AHEAD_MS = 40 * 60_000  # Kafka refuses timestamps over an hour ahead
FATAL_EXIT_S = 15.0
"""A fatal stop ends the process within this of logging why: a behavioural bound with a
wide margin (it exits in well under a second; it took 40 s while the consumer's closing
LeaveGroup went unanswered)."""


def _records(
    seed: int, n_requests: int, start_ms: int, partitions: int, **kw: Any
) -> list[ReplayRecord]:
    config = GeneratorConfig(
        seed=seed,
        n_requests=n_requests,
        request_rate=100.0,
        start_ms=start_ms,
        partitions=partitions,
        keyed=True,
        **kw,
    )
    return list(generate_records(config))


def _adversarial(
    seed: int, n_requests: int, start_ms: int, partitions: int, topic: str
) -> list[ReplayRecord]:
    """A stream with shadow/default pairs, feedback before its response, duplicates,
    amendments and invalid records: what the crash tests must come out exact on."""
    return _records(
        seed,
        n_requests,
        start_ms,
        partitions,
        feedback_share=0.9,
        feedback_delay_mean_s=4.0,
        amendment_share=0.2,
        duplicate_share=0.1,
        disorder_share=0.3,
        disorder_max_s=3.0,
        invalid_share=0.02,
        topic=topic,
    )


class _Processor:
    """One ``feedback-stream run`` process."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BIN), "run", *args, "--http-host", "127.0.0.1", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    async def exit_after(self, reason: str, timeout_s: float) -> int:
        """Wait (``timeout_s`` at most) until the log says ``reason``; return the exit code.

        The process must exit within :data:`FATAL_EXIT_S` of logging it.
        """
        process = self.process
        await wait_until(
            lambda: reason in self.log.read_text() or process.poll() is not None,
            timeout_s,
            f"{reason!r} in the processor's log",
        )
        try:
            return await asyncio.to_thread(process.wait, FATAL_EXIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {FATAL_EXIT_S:g} s after it logged {reason!r}: "
                + self.log.read_text()[-3000:]
            ) from None

    async def document(self) -> Any:
        return await get_json(f"{self.url}/api/v1/metrics")

    async def metrics(self) -> dict[Any, float]:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/metrics") as r:
            return parse_metrics(await r.text())

    async def ready(self) -> bool:
        import aiohttp

        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with aiohttp.ClientSession() as session, session.get(f"{self.url}/readyz") as r:
                return r.status == 200
        return False


# A killed member leaves the group after 6 s (the broker's minimum), not 45 s.
FAST_GROUP = ("--kafka-session-timeout-ms", "6000", "--kafka-heartbeat-interval-ms", "1000")


def _args(bootstrap: str, topic: str, group: str, *extra: str) -> list[str]:
    return [
        "--kafka-bootstrap-servers",
        bootstrap,
        "--kafka-topics",
        topic,
        "--kafka-group-id",
        group,
        "--kafka-auto-offset-reset",
        "earliest",
        "--kafka-max-batch",
        "200",
        "--windows",
        WINDOWS,
        "--state-topic-replication-factor",
        "1",
        "--tick-interval-s",
        "0.2",
        *extra,
    ]


async def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            out[p] = -1 if offset is None else offset
        return out
    finally:
        await consumer.stop()


async def _caught_up(
    bootstrap: str, group: str, topic: str, partitions: int, within_s: float
) -> None:
    ends = await _end_offsets(bootstrap, topic, partitions)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await _committed(bootstrap, group, topic, partitions) == ends:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"group {group} did not commit {ends}")


async def _consumed(
    bootstrap: str, topic: str, partitions: int, first: dict[int, int]
) -> list[bytes]:
    """The topic as replay lines, read back from Kafka (positions as the service saw them).

    Records before the ``first`` offsets come first, as the service consumed them.
    """
    ends = await _end_offsets(bootstrap, topic, partitions)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    lines: list[tuple[bool, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        left = sum(ends.values())
        while left > 0:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    left -= 1
                    line = orjson.dumps(
                        {
                            "topic": r.topic,
                            "partition": r.partition,
                            "offset": r.offset,
                            "timestamp": r.timestamp,
                            "key": r.key.decode() if r.key is not None else None,
                            "headers": {k: v.decode() for k, v in r.headers},
                            "value": _value(r.value),
                        }
                    )
                    lines.append((r.offset >= first.get(r.partition, 0), line))
    finally:
        await consumer.stop()
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])]


def _value(raw: bytes) -> Any:
    """A record value as a replay line holds it: JSON, or the raw text (invalid records)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode()
    return raw.decode() if isinstance(value, str) else value


def _replay(lines: list[bytes], path: Path) -> Any:
    path.write_bytes(b"\n".join(lines) + b"\n")
    args = [str(BIN), "replay", str(path), "--output", "json"]
    for window in WINDOWS.split(","):
        args += ["--window", window]
    done = subprocess.run(args, capture_output=True, check=True, timeout=300)
    return orjson.loads(done.stdout)


def _same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None, f"{where}: {a} != {b}"
        assert b is not None, f"{where}: {a} != {b}"
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a} != {b}"


def _assert_counters_match(samples: dict[Any, float], report: Any, dlq: bool = True) -> None:
    """Every outcome and event counter, summed as a user would, against replay's counters.

    Also those that only a restore carries over: the label-delay histogram (one
    observation per labelled response), invalid events by type and by reason, and
    (with ``dlq``) the dead-letter counter: one per invalid record.
    """
    for model in report["models"]:
        labels = {k: model[k] for k in ("namespace", "deployment", "predictor", "model")}
        counters = model["counters"]
        for name, want in (
            ("feedback_stream_outcomes_total", counters["outcomes_applied"]),
            ("feedback_stream_outcomes_retracted_total", counters["outcomes_retracted"]),
            ("feedback_stream_responses_total", counters["responses"]),
            ("feedback_stream_labelled_responses_total", counters["labelled_responses"]),
            ("feedback_stream_feedback_conflicts_total", counters["conflicts"]),
            ("feedback_stream_label_delay_seconds_count", counters["labelled_responses"]),
        ):
            assert sample_sum(samples, name, **labels) == want, (labels, name)
        windows = model["windows"]["total"]
        net = sample_sum(
            samples, "feedback_stream_outcomes_total", result="correct", **labels
        ) - sample_sum(
            samples, "feedback_stream_outcomes_retracted_total", result="correct", **labels
        )
        assert net == windows["correct"], labels
    events = report["events"]
    for kind in ("request", "response", "feedback"):
        accepted = sum(
            sample_sum(samples, "feedback_stream_events_total", type=kind, status=status)
            for status in ("accepted", "amended")
        )
        assert accepted == events[kind], kind
    assert (
        sample_sum(samples, "feedback_stream_events_total", status="duplicate")
        == events["duplicate"]
    )
    assert events["invalid"] > 0, "the stream has invalid records"
    assert (
        sample_sum(samples, "feedback_stream_events_total", status="invalid") == events["invalid"]
    )
    for reason, count in events["invalid_reasons"].items():
        assert sample_sum(samples, "feedback_stream_invalid_events_total", reason=reason) == count
    if dlq:
        assert sample_sum(samples, "feedback_stream_dlq_records_total") == events["invalid"]


async def _wait_ready(processor: _Processor, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if processor.process.poll() is not None:
            raise AssertionError(f"processor exited: {processor.log.read_text()[-3000:]}")
        if await processor.ready():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"processor not ready: {processor.log.read_text()[-3000:]}")


async def test_sigkill_at_random_moments_then_every_number_equals_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGKILLs while it consumes (after ready, so they land mid-slice and
    mid-transaction), on a stream with shadow/default pairs, feedback before its
    response, duplicates, amendments and invalid records."""
    topic, group, partitions = unique("kill"), unique("kill"), 4
    start = int(time.time() * 1000) + AHEAD_MS
    bulk = _adversarial(31, 6000, start, partitions, topic)
    tail = _records(32, COUNT, start + 200_000, partitions, feedback_share=1.0, topic=topic)
    assert len(bulk) >= 20_000
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, bulk)
    rng = random.Random(11)
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--dlq-topic",
        f"{topic}-dlq",
        "--kafka-max-batch",
        "50",
        *FAST_GROUP,
    )
    log = tmp_path / "processor.log"
    for _ in range(6):
        processor = _Processor(args, log)
        await _wait_ready(processor, 120)  # consuming: the kill lands mid-slice or mid-commit
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        processor.kill()
    await _caught_up_with(args, log, kafka_bootstrap, group, topic, partitions)
    bulk_ends = await _end_offsets(kafka_bootstrap, topic, partitions)
    # The count window's last N outcomes, after everything else.
    await produce(kafka_bootstrap, topic, tail)
    for _ in range(2):
        processor = _Processor(args, log)
        await asyncio.sleep(rng.uniform(1.5, 4.0))
        processor.kill()
    last = _Processor(args, log)
    try:
        await _wait_ready(last, 120)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 180)
        await asyncio.sleep(0.5)  # the commit precedes the metrics by one loop turn at most
        document = await last.document()
        samples = await last.metrics()
    finally:
        last.terminate()
    report = _replay(
        await _consumed(kafka_bootstrap, topic, partitions, bulk_ends), tmp_path / "in.jsonl"
    )
    assert report["comparisons"], "the stream has shadow/default pairs"
    _same(document, report)
    _assert_counters_match(samples, report)


async def _caught_up_with(
    args: list[str], log: Path, bootstrap: str, group: str, topic: str, partitions: int
) -> None:
    """One more process, killed once the group has committed the whole topic."""
    processor = _Processor(args, log)
    try:
        await _caught_up(bootstrap, group, topic, partitions, 180)
    finally:
        processor.kill()


async def test_a_group_going_1_3_1_with_one_member_killed_equals_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group, partitions = unique("scale"), unique("scale"), 6
    start = int(time.time() * 1000) + AHEAD_MS
    bulk = _adversarial(41, 3000, start, partitions, topic)
    tail = _records(42, COUNT, start + 200_000, partitions, feedback_share=1.0, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=partitions)
    await produce(kafka_bootstrap, topic, bulk)
    args = _args(
        kafka_bootstrap,
        topic,
        group,
        "--route",
        "partition",
        "--kafka-max-batch",
        "50",
        "--dlq-topic",
        f"{topic}-dlq",
        *FAST_GROUP,
    )
    log = tmp_path / "group.log"
    first = _Processor(args, log)
    try:
        await _wait_ready(first, 60)
        others = [_Processor(args, log), _Processor(args, log)]
        await asyncio.sleep(5.0)
        others[0].kill()  # mid-stream, holding some partitions
        await asyncio.sleep(3.0)
        others[1].terminate()
        await _caught_up(kafka_bootstrap, group, topic, partitions, 180)
        bulk_ends = await _end_offsets(kafka_bootstrap, topic, partitions)
        await produce(kafka_bootstrap, topic, tail)
        await _caught_up(kafka_bootstrap, group, topic, partitions, 120)
        await asyncio.sleep(0.5)  # the commit precedes the metrics by one loop turn at most
        document = await first.document()
        samples = await first.metrics()
    finally:
        first.terminate()
    lines = await _consumed(kafka_bootstrap, topic, partitions, bulk_ends)
    report = _replay(lines, tmp_path / "in.jsonl")
    assert report["comparisons"], "the stream has shadow/default pairs"
    _same(document, report)
    _assert_counters_match(samples, report)


async def _set_state_topic_limit(bootstrap: str, topic: str, limit: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact", "max.message.bytes": str(limit)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])
    finally:
        await admin.close()


async def test_a_commit_refused_for_good_stops_the_process_and_its_restart_is_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique("refused"), unique("refused")
    start = int(time.time() * 1000) + AHEAD_MS
    first = _records(
        51, 600, start, 1, feedback_share=0.8, amendment_share=0.1, invalid_share=0.02, topic=topic
    )
    second = _records(52, 400, start + 60_000, 1, feedback_share=0.8, topic=topic)
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await produce(kafka_bootstrap, topic, first)
    args = _args(kafka_bootstrap, topic, group)
    log = tmp_path / "processor.log"
    processor = _Processor(args, log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, 1, 120)
        committed = await _committed(kafka_bootstrap, group, topic, 1)
        # The broker now refuses every state record batch (MESSAGE_TOO_LARGE): no retry can
        # help. (300 bytes still takes the transaction markers: below their size the broker
        # could not even abort the transaction.)
        await _set_state_topic_limit(kafka_bootstrap, f"{group}-state", 300)
        await produce(kafka_bootstrap, topic, second)
        code = await processor.exit_after("cannot be retried", 90)
    finally:
        processor.terminate()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "cannot be retried" in text, text[-3000:]
    assert "MessageSizeTooLarge" in text, text[-3000:]
    assert await _committed(kafka_bootstrap, group, topic, 1) == committed
    # Fixed by the operator; the restart restores the last commit and reads on from it.
    await _set_state_topic_limit(kafka_bootstrap, f"{group}-state", 64 << 20)
    again = _Processor(args, log)
    try:
        await _caught_up(kafka_bootstrap, group, topic, 1, 120)
        await asyncio.sleep(0.5)
        document = await again.document()
        samples = await again.metrics()
    finally:
        again.terminate()
    report = _replay(await _consumed(kafka_bootstrap, topic, 1, {}), tmp_path / "in.jsonl")
    _same(document, report)
    _assert_counters_match(samples, report, dlq=False)
