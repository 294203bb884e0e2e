"""The dead-letter queue: invalid records, unchanged, plus where and why.

A dead letter keeps the original key, value and headers, so that after a
fix it can be produced back to the source topic as it was, and adds the
headers below (the convention of Kafka Connect's ``errors.deadletterqueue``
with names of our own):

========================  ==============================================
``dlq.source.topic``      topic the record was read from
``dlq.source.partition``  its partition (decimal)
``dlq.source.offset``     its offset (decimal)
``dlq.reason``            the DecodeError code (``bad_json``, ...)
``dlq.error``             the human-readable message
========================  ==============================================

:meth:`DeadLetterQueue.send` only enqueues; :meth:`DeadLetterQueue.flush`
waits until the broker has acknowledged every queued letter, and the source
calls it before committing the batch, so no invalid record is lost to a
crash between the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from feedback_stream.decode import DecodeError
from feedback_stream.settings import Settings

__all__ = [
    "HEADER_ERROR",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_TOPIC",
    "DeadLetterQueue",
]

_log = logging.getLogger(__name__)

HEADER_TOPIC = "dlq.source.topic"
HEADER_PARTITION = "dlq.source.partition"
HEADER_OFFSET = "dlq.source.offset"
HEADER_REASON = "dlq.reason"
HEADER_ERROR = "dlq.error"
_OURS = frozenset({HEADER_TOPIC, HEADER_PARTITION, HEADER_OFFSET, HEADER_REASON, HEADER_ERROR})


class DeadLetterQueue:
    """An idempotent producer to the configured dead-letter topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._inflight: list[asyncio.Future[Any]] = []
        self.sent = 0

    @property
    def topic(self) -> str:
        return self._settings.dlq_topic

    async def start(self) -> None:
        s = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-dlq",
            acks="all",
            enable_idempotence=True,
            **s.kafka_security_kwargs(),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a producer that never connected still holds a client
            raise
        self._producer = producer

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        topic: str,
        partition: int,
        offset: int,
        reason: str,
        error: str,
    ) -> None:
        """Queue one dead letter; it is on the broker after the next :meth:`flush`."""
        if self._producer is None:
            raise RuntimeError("DeadLetterQueue is not started")
        letter_headers = [(name, data) for name, data in headers if name not in _OURS]
        letter_headers += [
            (HEADER_TOPIC, topic.encode()),
            (HEADER_PARTITION, str(partition).encode()),
            (HEADER_OFFSET, str(offset).encode()),
            (HEADER_REASON, reason.encode()),
            (HEADER_ERROR, error.encode()),
        ]
        future = await self._producer.send(self.topic, value=value, key=key, headers=letter_headers)
        self._inflight.append(future)

    async def send_record(self, record: Any, error: DecodeError) -> None:
        """Queue a consumed record that failed to decode, with its source and reason."""
        await self.send(
            key=record.key,
            value=record.value,
            headers=list(record.headers),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=error.code,
            error=error.reason,
        )

    async def flush(self) -> None:
        """Wait for every queued letter's acknowledgement; raises if one failed."""
        inflight, self._inflight = self._inflight, []
        if inflight:
            await asyncio.gather(*inflight)
            self.sent += len(inflight)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await self.flush()
            finally:
                await producer.stop()
