"""The repartition step: Seldon's unkeyed records, re-keyed by puid, for a consumer group.

Seldon's executor produces without a key, so one puid's request, response
and feedback land on any partitions. One processor reading every partition
joins them (``route=puid``); a group of processors cannot, because each
sees only some partitions. As Kafka Streams does before a join, this step
reads the raw topics and writes every record, unchanged, to
``repartition_topic`` keyed by its puid, so Kafka's partitioner puts a
puid's events on one partition; the processors then consume that topic
with ``route=partition`` and move state with partitions on rebalance.

It runs inside ``feedback-stream run`` when ``repartition_topic`` is set:
every replica is both a member of the repartition group
(``<kafka_group_id>-repartition``, reading the raw topics) and of the
processing group (reading the repartition topic), so scaling is one
Deployment's replica count::

    raw topics ──(group G-repartition)──▶ repartition topic ──(group G)──▶ windows
      unkeyed       key = puid              keyed by puid      route=partition

Delivery is at-least-once: offsets of the raw topics are committed after
the broker has acknowledged the batch's records. A record re-produced after
a crash is recognised by the processors' dedupe, which needs a stable
identity: records that carry no CloudEvent id (Seldon's direct logging) get
one here, ``<topic>/<partition>@<offset>`` of the raw record, in the header
their encoding reads (``id`` for direct logging, ``ce_id`` for the binary
binding). Records the decoder refuses go to the dead-letter topic with
their raw position when one is configured, else on unkeyed for the
processors to count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.events import SourcePosition
from feedback_stream.kafka.consumer import KafkaSource, Record
from feedback_stream.kafka.dlq import DeadLetterQueue
from feedback_stream.settings import Settings

__all__ = ["Repartitioner", "stable_id_headers"]

_log = logging.getLogger(__name__)


def stable_id_headers(
    headers: Sequence[tuple[str, bytes]], topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers plus an id derived from the raw position, where the record has none."""
    names = {name.lower() for name, _ in headers}
    content_type = next(
        (value for name, value in headers if name.lower() == "content-type"), b""
    ).lower()
    if content_type.startswith(b"application/cloudevents"):
        return list(headers)  # structured: the id is inside the event
    binary = any(name.startswith("ce_") for name in names)
    id_header = "ce_id" if binary else "id"
    if id_header in names:
        return list(headers)
    return [*headers, (id_header, f"{topic}/{partition}@{offset}".encode())]


class Repartitioner:
    """Reads the raw topics and writes each record keyed by puid to ``repartition_topic``."""

    def __init__(
        self,
        settings: Settings,
        dlq: DeadLetterQueue | None = None,
        on_invalid: Callable[[DecodeError], None] | None = None,
    ) -> None:
        self.target = settings.repartition_topic
        self._settings = settings
        self._dlq = dlq
        self._on_invalid = on_invalid
        self._producer: AIOKafkaProducer | None = None
        raw = settings.model_copy(
            update={"kafka_group_id": f"{settings.kafka_group_id}-repartition"}
        )
        self.source = KafkaSource(raw, self)
        self.forwarded = 0
        self.invalid = 0

    async def start(self) -> None:
        s = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-repartition",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **s.kafka_security_kwargs(),
        )
        try:
            await self._producer.start()
            await self.source.start()
        except BaseException:
            await self.close()
            raise

    async def run(self) -> None:
        await self.source.run()

    def stop(self) -> None:
        self.source.stop()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # -- BatchHandler ----------------------------------------------------------

    @property
    def pending(self) -> int:
        return 0

    async def assign(self, committed: Mapping[TopicPartition, int | None]) -> None:
        return None

    async def revoke(self, positions: Mapping[TopicPartition, int | None]) -> None:
        return None

    async def apply(self, records: Sequence[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("Repartitioner is not started")
        futures: list[asyncio.Future[Any]] = []
        for record in records:
            position = SourcePosition(record.topic, record.partition, record.offset)
            item = decode_kafka_record(record.headers, record.value, record.timestamp, position)
            key: bytes | None
            if isinstance(item, DecodeError):
                self.invalid += 1
                if self._dlq is not None:
                    if self._on_invalid is not None:
                        self._on_invalid(item)
                    await self._dlq.send_record(record, item)
                    continue
                key = None
            else:
                key = item.puid.encode()
            headers = stable_id_headers(
                list(record.headers), record.topic, record.partition, record.offset
            )
            futures.append(
                await producer.send(
                    self.target,
                    value=record.value,
                    key=key,
                    headers=headers,
                    timestamp_ms=record.timestamp,
                )
            )
        await asyncio.gather(*futures)
        if self._dlq is not None:
            await self._dlq.flush()
        self.forwarded += len(futures)

    @property
    def assigned(self) -> Collection[TopicPartition]:
        return self.source.assigned
