"""Partition state kept in a compacted Kafka topic, committed with the input offsets.

Each state the engine holds (one per input partition with ``route=partition``
or a repartition topic; one for every partition with ``route=puid``) has a
transactional producer whose ``transactional.id`` is
``<state topic>/<state name>``, as Kafka Streams' exactly-once (v1) gives
each task its own. A commit is one transaction per state:

1. ``begin_transaction``;
2. send the state's changelog records (:meth:`ChangeTracker.changes`);
3. ``send_offsets_to_transaction`` with the input offsets they reflect;
4. ``commit_transaction``.

Either both the records and the offsets are committed or neither is. On
assignment the state's producer is started first: its ``InitProducerId``
fences any earlier owner of the same state and completes or aborts its open
transaction. Only then are the group's committed offsets read and the state
topic's partition read, ``read_committed``, up to its last stable offset,
so the restored state reflects exactly the records before the offsets the
consumer resumes at. See docs/state.md for what a crash at each step leaves.

A commit that fails is aborted and its records are kept and sent again with
the next commit (a broker restart); a fenced producer (another process owns
the state now) is fatal: the process stops and restarts from Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)

from feedback_stream.changelog import ChangeTracker, Restorer
from feedback_stream.engine import ALL_PARTITIONS, Engine, StateKey
from feedback_stream.settings import Settings

__all__ = [
    "StagedCommit",
    "StateCommitFailed",
    "StateFenced",
    "StateMissing",
    "StateStore",
    "state_name",
]

_log = logging.getLogger(__name__)

MAX_RECORD_BYTES: Final = 64 << 20
"""The largest state record (producer request and state topic ``max.message.bytes``)."""

_RECORD_OVERHEAD: Final = 512
"""Bytes a record batch adds around one record (headers, lengths), with room to spare."""

PROGRESS_INTERVAL_S: Final = 5.0
"""Seconds between restore progress lines."""

PRESTAGE_INTERVAL_S: Final = 0.1
"""Seconds between two takes of a state's changes ahead of its commit
(:meth:`StateStore.prestage`)."""

PRODUCER_STOP_S: Final = 10.0
"""Seconds a released state's producer is given to stop (it sends what it holds first)."""

FAILED_PRODUCER_STOP_S: Final = 1.0
"""The same once a commit failed for good: nothing the producer holds can be committed
any more (the next owner fences it and aborts its transaction), so a producer whose
transaction hangs (the state topic was deleted) does not hold the exit up."""


class StateCommitFailed(RuntimeError):
    """A state cannot be committed and retrying cannot help: the process must stop.

    A record over the state topic's ``max.message.bytes``, a fenced or
    otherwise unusable transactional producer, a state topic that is not
    compacted. The process exits non-zero; its restart restores the state
    of the last commit and reads the input after it again.
    """


class StateFenced(StateCommitFailed):
    """Another process took over a state this one was writing: it must stop."""


class StateMissing(StateCommitFailed):
    """The state topic holds nothing for a partition the group has committed offsets for.

    Starting it empty would resume after those offsets and never count the
    records before them (the state topic was deleted, or the group ran
    without durable state). The process stops unless ``state_accept_empty``
    is on; resetting the group's offsets re-reads the input instead.
    """


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The configuration of ``topic`` (empty while the broker does not know it yet)."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    out: dict[str, str] = {}
    for response in responses:
        for error_code, _message, _type, _name, entries in response.resources:
            if error_code != 0:
                return {}
            for name, value, *_ in entries:
                out[name] = value
    return out


def _retriable(exc: KafkaError) -> bool:
    """Whether a failed commit may succeed if tried again (the broker is away or busy).

    A send that timed out (the broker unreachable) is retriable although
    aiokafka marks the timeout error as not. Anything else not marked
    retriable (a record too large, a fenced producer, an invalid transaction
    state, an authorisation failure) leaves the transactional producer
    unusable.
    """
    return bool(exc.retriable) or isinstance(exc, (KafkaTimeoutError, RequestTimedOutError))


def state_name(key: StateKey) -> str:
    """The name of a state in the state topic: ``<topic>/<partition>``, or ``*``."""
    return "*" if key == ALL_PARTITIONS else f"{key[0]}/{key[1]}"


def _fenced_reason(key: StateKey, exc: BaseException) -> str:
    """Why a fenced processor stops, naming the usual cause for its route."""
    reason = f"state {state_name(key)} is owned by another process now ({exc!r})"
    if key == ALL_PARTITIONS:
        reason += (
            ": with route=puid a group keeps one state for every partition, so it runs "
            "exactly one processor; a second member of the group (a second replica, a "
            "surge pod of a rolling update) took the state over and this one stops. Run "
            "one replica, or route=partition on a topic keyed by puid (or with a "
            "repartition_topic) to share the partitions"
        )
    return reason


@dataclass(slots=True)
class _Owned:
    key: StateKey
    producer: AIOKafkaProducer
    tracker: ChangeTracker | None = None
    unsent: dict[bytes, bytes | None] = field(default_factory=dict)
    """Records for the next transaction: taken ahead (:meth:`StateStore.prestage`), or
    put back by a write that failed. Never the dict a write in flight is sending."""
    positions: dict[str, int | None] = field(default_factory=dict)
    """The input offsets the state reflects, by ``"topic/partition"``."""


@dataclass(frozen=True, slots=True)
class StagedCommit:
    """What :meth:`StateStore.stage` took: each state, the records to write, its offsets."""

    states: list[tuple[_Owned, dict[bytes, bytes | None], dict[TopicPartition, int]]]

    def __bool__(self) -> bool:
        return bool(self.states)


class StateStore:
    """The state topic of one consumer group: restore on assignment, commit with offsets.

    Args:
        settings: the service settings (``state_topic`` and the Kafka connection).
        engine: the engine whose states are restored and tracked.
        partitions_of: the partition count of an input topic, where known
            (sizes the state topic when it is created).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        partitions_of: Callable[[str], int | None] = lambda topic: None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.topic = settings.state_topic or f"{settings.kafka_group_id}-state"
        self._partitions_of = partitions_of
        self._owned: dict[StateKey, _Owned] = {}
        self._topic_partitions: int | None = None
        self.restoring = 0
        """States being restored now (``/readyz`` is unready while any is)."""
        self.restored_records = 0
        self.commits = 0
        self.max_record_bytes = MAX_RECORD_BYTES
        """The largest record the state topic takes (its ``max.message.bytes``)."""
        self.failed: StateCommitFailed | None = None
        """Why a commit failed for good (every later commit raises it again)."""
        self._prestaged_at = time.monotonic()

    # -- the topic ---------------------------------------------------------------

    async def ensure_topic(self, input_topics: list[str]) -> int:
        """Create the state topic when missing; return its partition count.

        An existing topic is checked: it must be compacted (a topic that
        deletes by age loses the state), and its ``max.message.bytes`` is the
        record limit commits check against.

        Raises:
            StateCommitFailed: the existing topic is not compacted.
        """
        if self._topic_partitions is not None:
            return self._topic_partitions
        s = self.settings
        admin = AIOKafkaAdminClient(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-state-admin",
            **s.kafka_security_kwargs(),
        )
        await admin.start()
        try:
            # A metadata request naming the topic would auto-create it with the
            # broker's defaults (cleanup.policy=delete, 1 MiB records) on brokers with
            # auto.create.topics.enable: list every topic instead.
            if self.topic not in await admin.list_topics():
                await self._create(admin, input_topics)
            configs: dict[str, str] = {}
            for _ in range(50):
                configs = await _topic_configs(admin, self.topic)
                if configs:
                    break
                await asyncio.sleep(0.1)
            policy = configs.get("cleanup.policy", "")
            if "compact" not in policy.split(","):
                raise StateCommitFailed(
                    f"the state topic {self.topic} has cleanup.policy={policy or '?'}: it must "
                    "be compacted (cleanup.policy=compact), or it loses the state; change it "
                    "with kafka-configs.sh --alter --add-config cleanup.policy=compact, or "
                    "name another topic in state_topic"
                )
            limit = configs.get("max.message.bytes")
            if limit is not None and limit.isdigit():
                self.max_record_bytes = min(int(limit), MAX_RECORD_BYTES)
            for _ in range(50):  # a topic just created reaches the metadata soon after
                existing = await admin.describe_topics([self.topic])
                found = [t for t in existing if t.get("partitions")]
                if found:
                    self._topic_partitions = len(found[0]["partitions"])
                    return self._topic_partitions
                await asyncio.sleep(0.1)
            raise KafkaError(f"the state topic {self.topic} has no partitions")
        finally:
            await admin.close()

    async def _create(self, admin: AIOKafkaAdminClient, input_topics: list[str]) -> None:
        s = self.settings
        wanted = s.state_topic_partitions or max(
            [n for n in map(self._partitions_of, input_topics) if n] or [1]
        )
        replication = s.state_topic_replication_factor
        if not replication:
            cluster = await admin.describe_cluster()
            replication = max(1, min(3, len(cluster.get("brokers", ()))))
        topic = NewTopic(
            self.topic,
            num_partitions=wanted,
            replication_factor=replication,
            topic_configs={
                "cleanup.policy": "compact",
                "max.message.bytes": str(MAX_RECORD_BYTES),
                "min.compaction.lag.ms": "0",
                "segment.ms": str(6 * 3600 * 1000),
            },
        )
        response = await admin.create_topics([topic])
        for name, code, *rest in getattr(response, "topic_errors", []):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"cannot create the state topic {name}: {code} {rest}")
        _log.info("created the state topic %s (%d partitions, compacted)", self.topic, wanted)

    def _partition(self, key: StateKey) -> int:
        count = self._topic_partitions or 1
        return 0 if key == ALL_PARTITIONS else key[1] % count

    # -- ownership ---------------------------------------------------------------

    async def prepare(self, key: StateKey) -> None:
        """Start the state's transactional producer, fencing any earlier owner.

        Call before reading the group's committed offsets: once it returns,
        no earlier owner's transaction is still open.
        """
        if key in self._owned:
            return
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-state",
            transactional_id=f"{self.topic}/{state_name(key)}",
            acks="all",
            enable_idempotence=True,
            # The broker checks a whole record batch against max.message.bytes.
            max_batch_size=min(256 << 10, self.max_record_bytes),
            max_request_size=self.max_record_bytes,
            linger_ms=5,
            **s.kafka_security_kwargs(),
        )
        await producer.start()
        try:
            # An empty transaction waits for the producer id: the fencing is done.
            await producer.begin_transaction()
            await producer.abort_transaction()
        except BaseException:  # cancelled (revoked meanwhile) or failed: close it
            with contextlib.suppress(KafkaError):
                await producer.stop()
            raise
        self._owned[key] = _Owned(key, producer)

    async def restore(self, key: StateKey, offsets: Mapping[TopicPartition, int | None]) -> None:
        """Rebuild the state of ``key`` from the state topic and start tracking it.

        ``offsets`` are the group's committed offsets of the input partitions
        the state covers. A state whose recorded offsets differ (someone reset
        the group) is not restored: the partition starts empty rather than
        count any record twice.
        """
        owned = self._owned[key]
        name = state_name(key)
        started = time.monotonic()
        self.restoring += 1
        # A restore allocates millions of long-lived objects and frees none: with the
        # collector on, its full collections walk the growing heap again and again
        # (most of a large restore's time). Off while restoring; what the restore
        # built is frozen out of later collections (the state holds no cycles).
        collecting = gc.isenabled()
        gc.disable()
        try:
            restorer = await self._read(key, name)
            engine = self.engine
            state, retained = restorer.build(
                engine.specs, engine.sequence, engine.ttl, engine.time_basis
            )
        finally:
            self.restoring -= 1
            if collecting:
                gc.enable()
        gc.freeze()
        recorded = restorer.offsets
        records = restorer.records
        wanted = {f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}
        if restorer.empty and not recorded:
            await self._check_missing(name, {tp: o for tp, o in offsets.items() if o is not None})
        # The state goes on reflecting the partitions it holds no longer (route=puid
        # restarted while a killed member still held some): keep their offsets, so that
        # a commit made before they come back does not drop them from the record.
        positions = {**recorded, **wanted}
        if not restorer.empty and {k: recorded.get(k) for k in wanted} != wanted:
            _log.warning(
                "state %s reflects input offsets %s but the group resumes at %s: starting it "
                "empty (its records are replaced)",
                name,
                recorded,
                wanted,
            )
            state, retained = Restorer(name).build(
                engine.specs, engine.sequence, engine.ttl, engine.time_basis
            )
            owned.unsent.update(dict.fromkeys(restorer.keys()))
            positions = dict(wanted)
            restorer = Restorer(name)
        engine.install(key, state)
        owned.positions = positions
        owned.tracker = ChangeTracker(
            name, state, retained, restorer.pair_seqs(), restorer.held_puids()
        )
        _log.info(
            "restored state %s: %d records, %d pending puids, %d models in %.1f s",
            name,
            records,
            state.pending,
            len(state.model_counters),
            time.monotonic() - started,
        )

    async def _check_missing(self, name: str, committed: Mapping[TopicPartition, int]) -> None:
        """Refuse an empty state where the group has committed offsets past the input's start.

        A committed offset at (or before) the first offset the input still
        holds loses nothing (a group reset to the earliest offsets re-reads
        everything there is).

        Raises:
            StateMissing: the group resumes some partition after its first
                record and ``state_accept_empty`` is off.
        """
        if not committed:
            return
        begins = await self._beginning_offsets(list(committed))
        committed = {tp: o for tp, o in committed.items() if o > begins.get(tp, 0)}
        if not committed:
            return
        group = self.settings.kafka_group_id
        where = ", ".join(
            f"{tp.topic}/{tp.partition} at {o}"
            for tp, o in sorted(committed.items(), key=lambda item: tuple(item[0]))
        )
        if self.settings.state_accept_empty:
            _log.warning(
                "state %s: the state topic %s holds nothing for it but group %s resumes %s: "
                "starting it empty (state_accept_empty); the records before are not counted",
                name,
                self.topic,
                group,
                where,
            )
            return
        raise StateMissing(
            f"the state topic {self.topic} holds no state {name}, but consumer group {group} "
            f"has committed offsets ({where}): starting empty would silently drop every count "
            "before them (was the state topic deleted, or did the group run without durable "
            "state?). Either re-read the input: stop every member and reset the group's "
            f"offsets (kafka-consumer-groups.sh --group {group} --reset-offsets --to-earliest "
            "--all-topics --execute), or accept starting from empty state: "
            "--state-accept-empty (FEEDBACK_STREAM_STATE_ACCEPT_EMPTY=true)"
        )

    async def _beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            **s.kafka_security_kwargs(),
        )
        await consumer.start()
        try:
            found: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
            return found
        finally:
            await consumer.stop()

    def add_partitions(self, key: StateKey, offsets: Mapping[TopicPartition, int | None]) -> None:
        """Input partitions newly assigned to a state restored already (``route=puid``).

        Their committed offsets join the offsets the state records, so that a
        later restore finds every partition it covers.
        """
        owned = self._owned.get(key)
        if owned is not None:
            for tp, offset in offsets.items():
                owned.positions.setdefault(f"{tp.topic}/{tp.partition}", offset)

    async def _read(self, key: StateKey, name: str) -> Restorer:
        s = self.settings
        restorer = Restorer(name)
        tp = TopicPartition(self.topic, self._partition(key))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=f"{s.kafka_client_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
            **s.kafka_security_kwargs(),
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            position = await consumer.position(tp)
            last_log = time.monotonic()
            while position < end:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batch.get(tp, ()):
                    restorer.add(record.key, record.value)
                position = await consumer.position(tp)
                self.restored_records += sum(len(v) for v in batch.values())
                if time.monotonic() - last_log >= PROGRESS_INTERVAL_S:
                    last_log = time.monotonic()
                    _log.info(
                        "restoring state %s: offset %d of %d, %d pending puids so far",
                        name,
                        position,
                        end,
                        restorer.pending,
                    )
        finally:
            await consumer.stop()
        return restorer

    async def release(self, key: StateKey) -> None:
        """Stop tracking ``key`` (revoked, after its last commit) and drop its state."""
        owned = self._owned.pop(key, None)
        self.engine.revoke(key)
        if owned is not None:
            stopping = asyncio.ensure_future(owned.producer.stop())
            # A producer whose transaction hangs (the state topic is gone) may not stop.
            bound = PRODUCER_STOP_S if self.failed is None else FAILED_PRODUCER_STOP_S
            await asyncio.wait([stopping], timeout=bound)
            if stopping.done():
                with contextlib.suppress(KafkaError):
                    stopping.result()

    @property
    def owned(self) -> frozenset[StateKey]:
        """The states this process writes."""
        return frozenset(self._owned)

    @property
    def restored(self) -> frozenset[StateKey]:
        """The states restored and tracked now."""
        return frozenset(k for k, o in self._owned.items() if o.tracker is not None)

    @property
    def dirty(self) -> bool:
        """Whether some state has changes to write even without new input offsets."""
        return any(
            o.unsent or (o.tracker is not None and o.tracker.dirty) for o in self._owned.values()
        )

    # -- commit ------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Write every state's changes and its input ``offsets`` in one transaction each.

        :meth:`stage` then :meth:`write`. Returns whether every transaction
        committed; the records of one that failed are sent again with the
        next commit (its offsets too: the caller keeps them).

        Raises:
            StateFenced: another process owns one of the states now.
            StateCommitFailed: a commit failed and retrying cannot help (a record
                over the topic's limit, an unusable producer); the process must stop.
        """
        return await self.write(self.stage(offsets))

    def prestage(self) -> None:
        """Take part of the next commit's records now, between two batches.

        Called after a batch once the consumer has caught up (less than
        ``kafka_max_batch`` records behind its partitions' high watermarks;
        reading a backlog, the commit takes the whole interval at once,
        which serialises a busy key once instead of once a slice); at most
        every :data:`PRESTAGE_INTERVAL_S`
        it takes each state's changes since the last take
        (:meth:`ChangeTracker.changes`) into the records of the next
        transaction. The stage then takes only what changed since: the
        stall of a commit shrinks from the whole interval's changes to the
        last slice's. Deltas compose, so the transaction still holds exactly
        the state as of its offsets (a key changed again is taken again, the
        later record replacing the earlier).
        """
        now = time.monotonic()
        if now - self._prestaged_at < PRESTAGE_INTERVAL_S:
            return
        self._prestaged_at = now
        for owned in self._owned.values():
            tracker = owned.tracker
            if tracker is not None and tracker.dirty:
                owned.unsent.update(tracker.changes())

    def stage(self, offsets: Mapping[TopicPartition, int]) -> StagedCommit:
        """Take every state's changes since the last stage, with the input ``offsets``.

        Synchronous: the records are the states exactly as they are now,
        after the records before ``offsets`` were applied; the states may
        change as soon as it returns (consumption goes on while
        :meth:`write` runs, and :meth:`prestage` collects the next
        commit's records meanwhile). Stage again only after that write has
        returned.
        """
        self._prestaged_at = time.monotonic()
        staged = []
        for key, owned in self._owned.items():
            if key == ALL_PARTITIONS:
                mine = dict(offsets)
            else:
                mine = {tp: o for tp, o in offsets.items() if (tp.topic, tp.partition) == key}
            tracker = owned.tracker
            records = owned.unsent
            if tracker is not None:
                records.update(tracker.changes())
                if mine:
                    owned.positions.update(
                        {f"{tp.topic}/{tp.partition}": o for tp, o in mine.items()}
                    )
                    records[tracker.offsets_key] = orjson.dumps(owned.positions)
            if records or mine:
                owned.unsent = {}
                staged.append((owned, records, mine))
        return StagedCommit(staged)

    async def write(self, staged: StagedCommit) -> bool:
        """Commit what :meth:`stage` took: one transaction per state, concurrently.

        Raises:
            StateFenced: another process owns one of the states now.
            StateCommitFailed: a commit failed and retrying cannot help (a record
                over the topic's limit, an unusable producer); the process must stop.
        """
        if self.failed is not None:
            raise self.failed
        group = self.settings.kafka_group_id
        limit = self.settings.state_commit_timeout_s
        commits = asyncio.gather(
            *(
                self._commit_one(owned, records, offsets, group)
                for owned, records, offsets in staged.states
            )
        )
        try:
            # Not wait_for: cancelling a hung transaction aborts it, and the abort hangs too.
            await asyncio.wait([commits], timeout=limit)
            if not commits.done():
                commits.cancel()
                raise StateCommitFailed(
                    f"a state commit to {self.topic} did not complete within {limit:g} s "
                    "(state_commit_timeout_s): is the state topic gone (deleted) or the "
                    "broker unreachable? Stopping; a restart restores the state of the last "
                    "commit"
                )
            results = commits.result()
        except StateCommitFailed as exc:
            self.failed = exc
            raise
        self.commits += 1
        return all(results)

    async def _commit_one(
        self,
        owned: _Owned,
        records: dict[bytes, bytes | None],
        offsets: dict[TopicPartition, int],
        group: str,
    ) -> bool:
        limit = self.max_record_bytes
        for key, value in records.items():
            size = len(key) + (len(value) if value is not None else 0)
            if size > limit - _RECORD_OVERHEAD:
                raise StateCommitFailed(
                    f"state record {key[:80]!r} of state {state_name(owned.key)} is {size:,} "
                    f"bytes, more than the state topic {self.topic} takes "
                    f"(max.message.bytes {limit:,})"
                )
        producer = owned.producer
        partition = self._partition(owned.key)
        try:
            await producer.begin_transaction()
            try:
                futures = await self._send(producer, partition, records)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, group)
                await asyncio.gather(*futures)
            except BaseException:
                with contextlib.suppress(KafkaError):
                    await producer.abort_transaction()
                raise
            await producer.commit_transaction()
        except ProducerFenced as exc:
            raise StateFenced(_fenced_reason(owned.key, exc)) from exc
        except AssertionError as exc:
            # aiokafka's transaction manager asserts its state transitions: once
            # a fence made it FATAL_ERROR (seen by a background request), the
            # next begin_transaction fails this way instead of ProducerFenced.
            raise StateFenced(_fenced_reason(owned.key, exc)) from exc
        except KafkaError as exc:
            if not _retriable(exc):
                raise StateCommitFailed(
                    f"state commit of {state_name(owned.key)} failed and cannot be retried "
                    f"({type(exc).__name__}: {exc}); stopping, a restart restores the state "
                    "of the last commit"
                ) from exc
            _log.warning(
                "state commit of %s failed, retrying with the next one: %s",
                state_name(owned.key),
                exc,
            )
            # Back in front of what was taken since: a newer record of a key wins.
            owned.unsent = {**records, **owned.unsent}
            return False
        return True

    async def _send(
        self, producer: AIOKafkaProducer, partition: int, records: dict[bytes, bytes | None]
    ) -> list[asyncio.Future[Any]]:
        """Queue ``records`` as whole record batches, one future per batch.

        A batch holds records up to the producer's ``max_batch_size``; a
        record larger than that goes alone in a batch of its own. Appending
        to a batch is aiokafka's compiled record builder, with none of the
        per-record work of ``send()`` (metadata wait, partitioner, future).
        """
        topic = self.topic
        timestamp = int(time.time() * 1000)
        futures = []
        batch = producer.create_batch()
        for key, value in records.items():
            if batch.append(timestamp=timestamp, key=key, value=value) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(timestamp=timestamp, key=key, value=value)
        if batch.record_count():
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def stop(self) -> None:
        for key in list(self._owned):
            await self.release(key)
