"""The Kafka source: a consumer group member that applies whole batches.

The loop is at-least-once by construction and exactly-once in effect:

1. ``getmany`` a batch (bounded by ``kafka_max_batch``);
2. under the batch lock, drop records of partitions revoked meanwhile, then
   hand the rest to the :class:`BatchHandler`, which applies them to the
   engine and awaits their dead letters;
3. commit ``last offset + 1`` of every partition read, at most once a
   second (:data:`COMMIT_INTERVAL_S`), and always before a partition is
   revoked and at shutdown. With an :class:`OffsetCommitter` (durable
   state) only its stage holds the batch lock: its write, a transaction's
   round trips, runs while the next batches are applied, one at a time;
4. never pause for pending joins: the engine bounds them itself by evicting
   the oldest puids at ``max_pending`` (:mod:`feedback_stream.caps`), so the
   input never waits for the TTL.

A record applied but not committed (a crash before its commit: up to a
second of records) is read again and recognised by the join store's dedupe,
so nothing counts twice. Committing after every batch cost a broker round
trip per batch, and the fetch queued behind it on the connection waited too:
a quarter of the Kafka path's time and most of a feedback's latency to
``/metrics`` (``make bench``, latency breakdown).

Rebalances go through :class:`_Listener`: revoking waits for the batch lock,
so a partition's state is handed back only after its last batch has been
applied and committed. Assigning only pauses the new partitions and starts
their restore as a task: aiokafka sends no heartbeat while a rebalance
callback runs, so a restore inside it that outlasts the session timeout
gets the member expelled, and it restores again at the next generation,
forever. The restore runs while the loop goes on (heartbeats, the other
partitions); a partition is resumed, at its committed offset, only once its
state is restored. A revoke during a restore cancels it and hands back what
it had built. Shutdown (:meth:`KafkaSource.stop`)
finishes the batch in hand, commits, revokes and leaves the group.

With ``route=puid`` and durable state one state covers every partition, so
a group runs one processor. A member assigned only part of the input (a
rolling update's surge pod has joined, or a second replica) holds it
paused, without restoring, until a rebalance gives it everything: two
members would otherwise both restore that state, both export every count,
and fence each other's transactions. ``/readyz`` says why meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from feedback_stream.settings import Settings

__all__ = ["BatchHandler", "KafkaSource", "OffsetCommitter", "Record"]

_log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
"""Seconds between offset commits while consuming (Kafka Streams commits every 30 s)."""

Record = Any
"""An ``aiokafka.ConsumerRecord[bytes, bytes]`` (aiokafka ships no type stubs)."""


class BatchHandler(Protocol):
    """What the source drives: the service's engine adapter."""

    async def assign(self, committed: Mapping[TopicPartition, int | None]) -> None:
        """Create (or restore) the state of newly assigned partitions.

        ``committed`` maps each to the group's committed offset (``None``:
        none yet), where consumption resumes: a checkpoint taken at exactly
        that offset may be restored.
        """

    async def revoke(self, positions: Mapping[TopicPartition, int | None]) -> None:
        """Hand back the state of partitions this member no longer owns.

        ``positions`` maps each to the offset committed for it (every
        applied record is committed by then), for a checkpoint.
        """

    async def apply(self, records: Sequence[Record]) -> None:
        """Apply one batch, in order; dead letters are sent before it returns."""


class OffsetCommitter(Protocol):
    """Commits offsets together with something else (the state topic's transactions)."""

    async def prepare(self, partitions: Collection[TopicPartition]) -> None:
        """Called on assignment before the group's committed offsets are read."""

    async def stage(self, offsets: Mapping[TopicPartition, int]) -> Awaitable[bool]:
        """Take what goes with ``offsets`` now; return the write that commits it.

        Called under the batch lock, after the records before ``offsets``
        were applied. The write is awaited after the lock is released, while
        later batches are applied; the next ``stage`` comes only after it
        has returned. It returns ``False`` when nothing was committed (the
        offsets are offered again with the next commit).
        """

    def prestage(self) -> None:
        """Called under the batch lock after every batch: take part of the next stage now.

        Spreads the stage's work over the commit interval, so that no single
        stall holds consumption up for long; it must leave the next ``stage``
        taking exactly what it would have taken without it.
        """

    @property
    def dirty(self) -> bool:
        """Whether there is something to commit even without new offsets."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._source._on_assigned(set(assigned))


class KafkaSource:
    """One consumer group member feeding a :class:`BatchHandler`."""

    def __init__(
        self,
        settings: Settings,
        handler: BatchHandler,
        committer: OffsetCommitter | None = None,
        *,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._committer = committer
        self._on_failure = on_failure
        """Told what stops the loop before it closes (so the reason is logged first)."""
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._assigned: set[TopicPartition] = set()
        self._consumed: dict[TopicPartition, int] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        self._writing: tuple[asyncio.Task[bool], dict[TopicPartition, int]] | None = None
        """The committer's write in flight, and the offsets it commits."""
        self._restoring: dict[TopicPartition, asyncio.Task[None]] = {}
        """Partitions assigned whose state is being restored (paused), and the restore."""
        self._one_state = (
            committer is not None and settings.route == "puid" and not settings.repartition_topic
        )
        """route=puid with durable state: one state for every partition, one member."""
        self._held: set[TopicPartition] = set()
        """Partitions assigned (paused, not restored) while the group has other members."""
        self.assigned_once = asyncio.Event()
        """Set after the first assignment: part of the service's readiness."""
        self.batches = 0
        self.records = 0

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""
        return frozenset(self._assigned)

    @property
    def restoring(self) -> frozenset[TopicPartition]:
        """Partitions assigned whose state is not restored yet (not consumed yet)."""
        return frozenset(self._restoring)

    @property
    def connected(self) -> bool:
        """Whether the consumer holds a live connection to a broker now.

        Read from aiokafka's client (its connection table): aiokafka retries
        a lost broker quietly, so this is the only place an outage shows.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        connections = getattr(getattr(consumer, "_client", None), "_conns", None) or {}
        return any(conn.connected() for conn in list(connections.values()))

    async def start(self) -> None:
        """Connect and subscribe; partitions arrive through the rebalance listener."""
        if self._consumer is not None:
            raise RuntimeError("KafkaSource.start() called twice")
        s = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.kafka_group_id,
            client_id=s.kafka_client_id,
            enable_auto_commit=False,
            auto_offset_reset=s.kafka_auto_offset_reset,
            max_poll_records=s.kafka_max_batch,
            # aiokafka's default is 5 minutes: a topic created after start would sit
            # unread that long. A refresh that finds a new (or newly matching) topic
            # makes the group rebalance, and the topic is assigned.
            metadata_max_age_ms=s.kafka_metadata_max_age_ms,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            rebalance_timeout_ms=s.kafka_rebalance_timeout_ms,
            **s.kafka_security_kwargs(),
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # unreachable brokers: close the client it holds
            raise
        self._consumer = consumer
        listener = _Listener(self)
        if s.kafka_topic_pattern:
            consumer.subscribe(pattern=s.kafka_topic_pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(s.kafka_topics), listener=listener)

    async def run(self) -> None:
        """Consume until :meth:`stop`; then commit, revoke and leave the group.

        Raises what stopped it otherwise (after closing the same way, as far
        as it can): a state error, a failed restore, a commit refused for good.
        """
        consumer = self._require()
        s = self._settings
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(
                    timeout_ms=s.kafka_poll_timeout_ms, max_records=s.kafka_max_batch
                )
                if batch:
                    await self._apply(batch)
                self._raise_failed_restore()
                writing = self._writing
                if writing is not None and writing[0].done():
                    async with self._lock:
                        await self._settle()  # raises what the write failed with
                if (
                    self._uncommitted or (self._committer is not None and self._committer.dirty)
                ) and time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
                    async with self._lock:
                        await self._commit_applied(wait=False)
        except Exception as exc:
            # Closing (the last commit, handing the state back, leaving the group)
            # takes a moment: say why first.
            if self._on_failure is not None:
                self._on_failure(exc)
            raise
        finally:
            await self._close()

    def stop(self) -> None:
        """Ask the loop to finish its batch and shut down (signal-handler safe)."""
        self._stopping.set()

    def unassigned_reason(self) -> str:
        """Why this member owns no partition (for ``/readyz``); ``""`` when it owns some."""
        if self._assigned:
            return ""
        if self._restoring:
            return f"restoring the state of {len(self._restoring)} partitions"
        if self._held:
            return self._held_reason()
        consumer = self._consumer
        s = self._settings
        if consumer is None:
            return "the Kafka consumer is not started"
        if not self.assigned_once.is_set():
            return f"joining consumer group {s.kafka_group_id!r}"
        every = f"(topic metadata is refreshed every {s.kafka_metadata_max_age_ms / 1000:g} s)"
        if s.kafka_topic_pattern:
            if not consumer.subscription():
                return f"no topic matches '{s.kafka_topic_pattern}' yet {every}"
        else:
            missing = [t for t in s.kafka_topics if consumer.partitions_for_topic(t) is None]
            if missing:
                return f"topic {', '.join(missing)} does not exist yet {every}"
        return f"every partition is owned by other members of consumer group {s.kafka_group_id!r}"

    def positions(self) -> dict[tuple[str, int], int]:
        """The committed offset (next to read) of each assigned partition, where known."""
        return {
            (tp.topic, tp.partition): offset
            for tp, offset in self._consumed.items()
            if tp in self._assigned
        }

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind each assigned partition's high watermark."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[tuple[str, int], int] = {}
        current = consumer.assignment()  # highwater() asserts that a partition is in it
        for tp in self._assigned & current:
            high = consumer.highwater(tp)
            if high is None:
                continue
            position = self._consumed.get(tp)
            out[(tp.topic, tp.partition)] = max(0, high - position) if position is not None else 0
        return out

    def _caught_up(self) -> bool:
        """Whether the applied records are less than one batch behind the input.

        The lag of every assigned partition (its high watermark, as of the
        last fetch response, minus the offset after the last record applied)
        summed: under ``kafka_max_batch`` the next poll could not fill a
        batch. Reading a backlog it stays far above that whatever size each
        batch happens to have (a fetch response's boundary cuts batches short
        there too). A partition not fetched yet, or holding records of which
        none was applied yet, counts as behind.
        """
        consumer = self._consumer
        if consumer is None:
            return False
        behind = 0
        current = consumer.assignment()  # highwater() asserts that a partition is in it
        for tp in self._assigned:
            if tp not in current:
                return False  # the subscription changed: a rebalance is on its way
            high = consumer.highwater(tp)
            position = self._consumed.get(tp)
            if high is None:
                return False  # not fetched yet
            if position is None:
                if high:
                    return False  # records there, none applied yet
                continue  # an empty partition
            behind += high - position
        return behind < self._settings.kafka_max_batch

    # -- the loop's steps --------------------------------------------------

    async def _apply(self, batch: Mapping[TopicPartition, Sequence[Record]]) -> None:
        async with self._lock:
            owned = {tp: recs for tp, recs in batch.items() if tp in self._assigned and recs}
            if not owned:
                return
            records = [record for recs in owned.values() for record in recs]
            await self._handler.apply(records)
            offsets = {tp: recs[-1].offset + 1 for tp, recs in owned.items()}
            self._consumed.update(offsets)
            self._uncommitted.update(offsets)
            self.batches += 1
            self.records += len(records)
            if self._committer is not None and self._caught_up():
                # Take the next commit's records in slices so its stall stays
                # short. Reading a backlog, whole intervals cost less
                # serialising (a key changed in ten slices is written once) and
                # a stall matters less.
                self._committer.prestage()

    async def _commit_applied(self, *, wait: bool = True) -> None:
        """Commit the offsets applied since the last commit (call under the lock).

        With a committer, and ``wait`` false, only its stage runs here: its
        write (the state topic's transaction round trips) goes on after the
        lock is released, while the next batches are applied, and is awaited
        before the next commit, a revoke or the shutdown. At most one write
        is in flight, so the commits stay in order.
        """
        self._committed_at = time.monotonic()
        committer = self._committer
        if committer is not None:
            await self._settle()
            offsets, self._uncommitted = self._uncommitted, {}
            write = await committer.stage(offsets)
            self._writing = (asyncio.ensure_future(write), offsets)
            if wait:
                await self._settle()
            return
        if self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._commit(offsets)

    async def _settle(self) -> None:
        """Wait for the committer's write in flight; offer its offsets again if it failed."""
        writing = self._writing
        if writing is None:
            return
        self._writing = None
        task, offsets = writing
        if not await task:
            # Offered again with the next commit (newer offsets win).
            self._uncommitted = {**offsets, **self._uncommitted}

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._require()
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on without us (a missed heartbeat): the records are
            # read again by the partition's new owner; our copy is revoked.
            _log.warning("offset commit failed, partitions will be re-read: %s", exc)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._held -= revoked
        aborted = await self._abort_restores(revoked)
        async with self._lock:
            await self._commit_applied()
            mine = revoked & self._assigned
            self._assigned -= mine
            positions = {tp: self._consumed.pop(tp, None) for tp in mine}
            # A restore cancelled part way hands back what it had built (nothing applied).
            positions.update(dict.fromkeys(aborted))
            if positions:
                await self._handler.revoke(positions)
        _log.info("revoked %s", sorted(map(str, mine | aborted)))

    async def _abort_restores(self, revoked: set[TopicPartition]) -> set[TopicPartition]:
        """Cancel the restores of ``revoked`` partitions; return the partitions cancelled.

        One restore covers every partition of an assignment: its partitions
        that are not revoked are handed back too (an eager rebalance revokes
        every partition anyway).
        """
        tasks = {task for tp, task in self._restoring.items() if tp in revoked}
        if not tasks:
            return set()
        aborted = {tp for tp, task in self._restoring.items() if task in tasks}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for tp in aborted:
            self._restoring.pop(tp, None)
            self._consumed.pop(tp, None)
        consumer = self._consumer
        if consumer is not None:
            with contextlib.suppress(Exception):  # revoked partitions are unassigned meanwhile
                consumer.resume(*[tp for tp in aborted if tp in consumer.assignment()])
        _log.info("restore of %s cancelled (revoked)", sorted(map(str, aborted)))
        return aborted

    def _raise_failed_restore(self) -> None:
        """Raise what a finished restore failed with (the process stops)."""
        for task in set(self._restoring.values()):
            if task.done() and not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    raise exc

    def _whole_input(self) -> set[TopicPartition] | None:
        """Every partition of the subscribed topics, or None while metadata lacks one."""
        consumer = self._require()
        whole: set[TopicPartition] = set()
        for topic in consumer.subscription():
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                return None
            whole.update(TopicPartition(topic, p) for p in partitions)
        return whole

    def _held_reason(self) -> str:
        group = self._settings.kafka_group_id
        return (
            f"route=puid keeps one state for every partition, so consumer group {group!r} "
            f"runs one processor; this member got {len(self._held)} partitions of the input, "
            "another member the rest. Holding them (not consuming) until the group has one "
            "member again (a rolling update's old pod leaving) so nothing is counted twice; "
            "run one replica, or route=partition on a puid-keyed topic (or with a "
            "repartition_topic) to share the partitions"
        )

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        new = assigned - self._assigned - set(self._restoring)
        whole = self._whole_input() if self._one_state and new else None
        if whole is not None and not whole <= assigned:
            # The other member would restore the same state and fence this one's
            # transactions; both would export every count meanwhile.
            self._require().pause(*new)
            self._held = set(new)
            self.assigned_once.set()
            _log.error("%s", self._held_reason())
            return
        if new:
            # Not fetched until restored; the restore runs after this callback returns,
            # while aiokafka heartbeats again.
            self._require().pause(*new)
            task = asyncio.create_task(self._restore(new), name="restore")
            self._restoring.update(dict.fromkeys(new, task))
        self.assigned_once.set()
        _log.info(
            "assigned %s%s",
            sorted(map(str, assigned)),
            f", restoring the state of {len(new)} partitions first" if new else "",
        )

    async def _restore(self, new: set[TopicPartition]) -> None:
        """Restore the state of ``new`` partitions, then resume them at their committed offsets."""
        started = time.monotonic()
        if self._committer is not None:
            await self._committer.prepare(new)
        committed = await self._committed(new)
        await self._handler.assign(committed)
        async with self._lock:
            consumer = self._require()
            for tp, offset in committed.items():
                if offset is not None:
                    # Whatever was fetched meanwhile (before the pause) is read again.
                    consumer.seek(tp, offset)
            self._consumed.update(
                {tp: offset for tp, offset in committed.items() if offset is not None}
            )
            self._assigned |= new
            for tp in new:
                self._restoring.pop(tp, None)
            consumer.resume(*new)
        _log.info(
            "state of %s restored in %.1f s, consuming",
            sorted(map(str, new)),
            time.monotonic() - started,
        )

    async def _committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        consumer = self._require()
        out: dict[TopicPartition, int | None] = {}
        for tp in partitions:
            try:
                out[tp] = await consumer.committed(tp)
            except KafkaError as exc:
                if self._committer is not None:
                    # Restoring against a guessed offset could count records twice.
                    raise
                _log.warning("cannot read the committed offset of %s: %s", tp, exc)
                out[tp] = None
        return out

    def partitions_of(self, topic: str) -> int | None:
        """The partition count of ``topic`` in the consumer's metadata, where known."""
        consumer = self._consumer
        if consumer is None:
            return None
        found = consumer.partitions_for_topic(topic)
        return len(found) if found else None

    async def _close(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            aborted = await self._abort_restores(set(self._restoring))
            async with self._lock:
                await self._commit_applied()
                positions: dict[TopicPartition, int | None] = dict.fromkeys(aborted)
                positions.update({tp: self._consumed.get(tp) for tp in self._assigned})
                if positions:
                    await self._handler.revoke(positions)
                self._assigned.clear()
        finally:
            # Leave the group even when the last commit failed (the process stops).
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            self._consumer = None

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("KafkaSource is not started")
        return self._consumer
