"""The Kafka broker of a benchmark run, and the topics it preloads.

``make bench`` starts its own single-node KRaft broker (the test rig's
``tests._services.start_kafka``), so that its CPU use can be read from
``/proc`` and nothing else shares it. With ``FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP``
set (or ``--bootstrap``) a running broker is used instead; its pid is read
from ``.cache/services.env`` when that file names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stream import WireRecord

__all__ = ["Broker", "create_topic", "delete_topics", "new_topic_name", "preload", "running_broker"]

_ENV = "FEEDBACK_STREAM_TEST_KAFKA_BOOTSTRAP"
_SERVICES_ENV = Path(__file__).resolve().parent.parent / ".cache" / "services.env"

logging.getLogger("aiokafka").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the broker listens, and its process id when known (for its CPU share)."""

    bootstrap: str
    pid: int | None
    own: bool


def _shared_pid(bootstrap: str) -> int | None:
    try:
        text = _SERVICES_ENV.read_text(encoding="utf-8")
    except OSError:
        return None
    if bootstrap not in text:
        return None
    match = re.search(r"^# kafka \S+ pid (\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def running_broker(bootstrap: str | None = None) -> Iterator[Broker]:
    """The broker to use: ``bootstrap``, the environment's, or a new one we stop after."""
    address = bootstrap or os.environ.get(_ENV)
    if address:
        yield Broker(address, _shared_pid(address), own=False)
        return
    from tests import _services

    service = _services.start_kafka()
    try:
        yield Broker(service.address, service.process.pid, own=True)
    finally:
        service.stop()


def new_topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    # Metadata for a new topic reaches every client a moment later.
    await asyncio.sleep(0.5)


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def preload(bootstrap: str, topic: str, records: Sequence[WireRecord]) -> None:
    """Write ``records`` to ``topic`` (each to its own partition), keeping their timestamps."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
        acks=1,
    )
    await producer.start()
    try:
        pending = []
        for r in records:
            pending.append(
                await producer.send(
                    topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    timestamp_ms=r.timestamp,
                    headers=r.headers,
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
