"""Join request, response and feedback events by puid, with a TTL.

One :class:`JoinStore` serves one input partition (or, routed by puid, a
whole processor). For every puid it keeps what the metrics need and nothing
else: the request times, each model's predicted classes and response time,
every feedback's truth classes, reward and time, the outcomes currently
applied, and the identities of the events seen (as 64-bit hashes, for
dedupe). Payloads are never kept.

After each event the store recomputes the pairs of the event's puid
(EVENTS.md §3 and docs/semantics.md). Every rule is a function of the set
of events, never of the order they were read in, so any interleaving of
partitions gives the same pairs:

* per model key, the logged response with the earliest event time wins
  (a client retrying with the same puid); ties go to the smaller identity
  hash. A feedback carrying its own prediction stands in for a response
  only when no logged response of the puid matches it;
* a feedback joins a response if its ``predictor`` / ``model`` filter
  matches (empty = any) and, when it carries a truth, the row counts agree;
* among those, the latest feedback event time wins, ties to the larger
  identity hash.

When the winner, or the outcome time, differs from what is applied, the old
outcomes are reported as retracted and the new ones as applied; the caller
moves its windows accordingly.

A V2 response whose body ``id`` differs from its puid is also found by that
id (an alias): feedback waiting under the alias is taken in when the
response comes.

An entry lives until ``TTL`` after the newest event time seen for its puid;
:meth:`JoinStore.expire` drops entries past that and counts, per event type,
the parts that never joined.
"""

from __future__ import annotations

import heapq
import struct
from array import array
from base64 import b64decode, b64encode
from collections.abc import Iterator
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from zlib import adler32, crc32

from feedback_stream import packed
from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.model_kinds import Interpretation, ModelKinds
from feedback_stream.outcomes import UNCLASSIFIED, Outcome, TimeBasis, is_conflict, pair_outcomes
from feedback_stream.scores import ModelKind, ResponseScores

__all__ = ["EventStatus", "JoinResult", "JoinStore", "Sequence", "identity_hash"]

DEFAULT_TTL_S = 3600.0
_MAX_LABELS = 4096
"""Label tuples (classes, names) a store gives packing ids to; entries past it stay unpacked."""
_FEEDBACK_TYPE = "io.seldon.serving.feedback"


class EventStatus(StrEnum):
    """What the store did with an event (the ``status`` label of the event counter)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    AMENDED = "amended"
    INVALID = "invalid"


class Sequence:
    """Hands out outcome sequence numbers; shared by the states of one engine.

    A count window that merges several partitions takes the newest N
    outcomes of their union, which needs one order across partitions.
    """

    __slots__ = ("next",)

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def take(self, count: int) -> int:
        first = self.next
        self.next += count
        return first

    def ensure_above(self, seq: int) -> None:
        if self.next <= seq:
            self.next = seq + 1


def identity_hash(identity: tuple[str, ...]) -> int:
    """A stable 64-bit hash of an event identity (same in every process).

    Python's ``hash`` of a string changes per process, which would break
    dedupe after a snapshot is restored elsewhere. Two events of one puid
    colliding on 64 bits is not a practical concern.
    """
    raw = "\x1f".join(identity).encode("utf-8", "surrogatepass")
    return (crc32(raw) << 32) | adler32(raw)


@dataclass(slots=True, eq=False)
class _Response:
    key: ModelKey
    classes: tuple[str, ...]
    time: float
    labelled: bool = False
    names: tuple[str, ...] | None = None
    scores: ResponseScores | None = None
    rank: int = 0
    logged: bool = True

    def __init__(
        self,
        key: ModelKey,
        classes: tuple[str, ...],
        time: float,
        labelled: bool = False,
        names: tuple[str, ...] | None = None,
        scores: ResponseScores | None = None,
        rank: int = 0,
        logged: bool = True,
    ) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code.
        self.key = key
        self.classes = classes
        self.time = time
        self.labelled = labelled
        self.names = names
        self.scores = scores
        self.rank = rank
        self.logged = logged

    def same(self, other: _Response) -> bool:
        return (
            self.rank == other.rank
            and self.time == other.time
            and self.logged is other.logged
            and self.classes == other.classes
        )


@dataclass(slots=True, eq=False)
class _Feedback:
    key: ModelKey
    truth: tuple[str, ...] | None
    reward: float | None
    time: float
    rank: int
    named: bool = False
    embedded: tuple[str, ...] | None = None
    embedded_names: tuple[str, ...] | None = None

    def __init__(
        self,
        key: ModelKey,
        truth: tuple[str, ...] | None,
        reward: float | None,
        time: float,
        rank: int,
        named: bool = False,
        embedded: tuple[str, ...] | None = None,
        embedded_names: tuple[str, ...] | None = None,
    ) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code.
        self.key = key
        self.truth = truth
        self.reward = reward
        self.time = time
        self.rank = rank
        self.named = named
        self.embedded = embedded
        self.embedded_names = embedded_names

    def matches(self, key: ModelKey) -> bool:
        own = self.key
        return (not own.predictor or own.predictor == key.predictor) and (
            not own.model or own.model == key.model
        )


@dataclass(slots=True, eq=False)
class _Pair:
    feedback: _Feedback
    response: _Response
    time: float
    outcomes: tuple[Outcome, ...]

    def __init__(
        self, feedback: _Feedback, response: _Response, time: float, outcomes: tuple[Outcome, ...]
    ) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code.
        self.feedback = feedback
        self.response = response
        self.time = time
        self.outcomes = outcomes


_T = TypeVar("_T")


@dataclass(slots=True, eq=False)
class _Entry:
    """One puid. Parts are kept as one item, or a list once there are several.

    Most puids have one request, one response and one feedback, and most
    pending ones only the first two: not allocating a container for a single
    item saves a list per part. A pending entry (no feedback yet) is held
    packed, as bytes (:mod:`feedback_stream.packed`); it is unpacked into
    this form while an event is added to it. ``responses`` holds,
    per model key, only the winning logged response (earliest event time,
    then smallest identity hash). ``marks`` remembers the (key, feedback
    rank, what) checks already reported (row mismatch, conflict,
    unscorable), so each is reported once. ``aliases`` are the other puids
    (V2 body ids) that lead here.
    """

    deadline: float
    seen: bytes
    requests: tuple[ModelKey, float] | list[tuple[ModelKey, float]] | None = None
    responses: _Response | list[_Response] | None = None
    feedbacks: _Feedback | list[_Feedback] | None = None
    pairs: dict[ModelKey, _Pair] | None = None
    marks: set[tuple[ModelKey, int, str]] | None = None
    aliases: list[str] | None = None

    def __init__(self, deadline: float, seen: bytes) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code.
        self.deadline = deadline
        self.seen = seen
        self.requests = None
        self.responses = None
        self.feedbacks = None
        self.pairs = None
        self.marks = None
        self.aliases = None


def _items(held: _T | list[_T] | None) -> SequenceOf[_T]:
    if held is None:
        return ()
    if isinstance(held, list):
        return held
    return (held,)


def _append(held: _T | list[_T] | None, item: _T) -> _T | list[_T]:
    if held is None:
        return item
    if isinstance(held, list):
        held.append(item)
        return held
    return [held, item]


def _in_names(truth: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    """Read a truth given without names (an index, or a one-hot row) in the response's names."""
    return tuple(
        names[int(c)] if c.isdigit() and c.isascii() and int(c) < len(names) else c for c in truth
    )


def _seen(seen: bytes, ident: bytes) -> bool:
    """Whether an 8-byte identity hash is among those packed in ``seen``.

    Packed bytes cost 8 bytes an identity where a list of ints costs ~45.
    """
    at = seen.find(ident)
    while at != -1:
        if at % 8 == 0:
            return True
        at = seen.find(ident, at + 1)
    return False


def _response(entry: _Entry, key: ModelKey) -> _Response | None:
    # The decoder shares one ModelKey per label set, so identity settles almost
    # every comparison before the dataclass __eq__ (which builds two tuples) runs.
    held = entry.responses
    if held is None:
        return None
    if type(held) is _Response:
        held_key = held.key
        return held if held_key is key or held_key == key else None
    for response in held:  # type: ignore[union-attr]
        if response.key is key or response.key == key:
            return response
    return None


def _replace(held: _T | list[_T] | None, old: _T, new: _T) -> _T | list[_T]:
    if isinstance(held, list):
        held[held.index(old)] = new
        return held
    return new


def _fits(feedback: _Feedback, response: _Response) -> bool:
    """Whether a feedback's truth (if any) has the rows of the response."""
    truth = feedback.truth
    return (
        truth is None or response.classes[0] == UNCLASSIFIED or len(truth) == len(response.classes)
    )


def _truth(feedback: _Feedback, response: _Response) -> tuple[str, ...] | None:
    """The truth to score ``response`` with: in its names, none for one without classes."""
    truth = feedback.truth
    if truth is None or response.classes[0] == UNCLASSIFIED:
        return None
    if not feedback.named and response.names is not None:
        return _in_names(truth, response.names)
    return truth


def _inherited(feedback: _Feedback, response: _Response) -> bool:
    """Whether ``feedback``'s reward judged another prediction than ``response``'s.

    Seldon passes the feedback posted to a deployment, the client's reward
    and the prediction it carries included, to every predictor, shadows
    too. When the feedback carries a prediction other than this response's
    and its reward agrees with that prediction against the truth, the
    reward was the client's verdict on the default's answer: it contradicts
    this response's truth without being a conflict anyone must chase.
    A function of the feedback and the response only, so of no read order.
    """
    embedded, truth = feedback.embedded, feedback.truth
    if embedded is None or truth is None or embedded == response.classes:
        return False
    if not feedback.named and feedback.embedded_names is not None:
        truth = _in_names(truth, feedback.embedded_names)
    if len(truth) != len(embedded):
        return False
    return not is_conflict(embedded, truth, feedback.reward)


def _effective(entry: _Entry, feedbacks: SequenceOf[_Feedback]) -> dict[ModelKey, _Response]:
    """The response of each model key that feedback is scored against.

    The logged response of a key; else, for a feedback that carries its own
    prediction and matches no logged response, that embedded prediction
    (the earliest by event time, then identity hash, per key).
    """
    logged = _items(entry.responses)
    effective = {r.key: r for r in logged}
    for feedback in feedbacks:
        if feedback.embedded is None or any(feedback.matches(r.key) for r in logged):
            continue
        current = effective.get(feedback.key)
        if current is None or (feedback.time, feedback.rank) < (current.time, current.rank):
            effective[feedback.key] = _Response(
                feedback.key,
                feedback.embedded,
                feedback.time,
                names=feedback.embedded_names,
                rank=feedback.rank,
                logged=False,
            )
    return effective


class _Deadlines:
    """When each entry may expire, in (deadline, puid) order: a FIFO, and a heap for the rest.

    Event times mostly grow, so deadlines (time + TTL) mostly arrive in
    order. Those go to a FIFO of two parallel arrays, the deadlines as
    packed doubles and the puids as a list (about 17 bytes a puid with the
    arrays' spare room, no comparisons), instead of a heap of
    ``(deadline, puid)`` tuples (about 100 bytes a puid and a sift per
    push); a deadline earlier than the FIFO's last one goes to a small
    heap. Popping takes the earlier of the two heads. The FIFO's head moves
    by an index; the popped prefix is cut off once it is half the arrays,
    so a pop costs O(1) amortised.
    """

    __slots__ = ("_head", "_late", "_puids", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._puids: list[str] = []
        self._head = 0
        self._late: list[tuple[float, str]] = []

    def push(self, deadline: float, puid: str) -> None:
        times = self._times
        if self._head == len(times) or deadline > times[-1]:
            times.append(deadline)
            self._puids.append(puid)
        elif deadline == times[-1] and puid >= self._puids[-1]:
            # Equal deadlines leave in puid order, not arrival order, so that a
            # restored queue (``load``) evicts at the pending cap what the live
            # one would have (a restore does not know the arrival order).
            times.append(deadline)
            self._puids.append(puid)
        else:
            heapq.heappush(self._late, (deadline, puid))

    def pop_before(self, now: float) -> tuple[float, str] | None:
        """The earliest (deadline, puid) with deadline before ``now``, removed; else None."""
        times, late, head = self._times, self._late, self._head
        if head < len(times):
            first = times[head]
            puids = self._puids
            if first < now and (
                not late
                or first < late[0][0]
                or (first == late[0][0] and puids[head] <= late[0][1])
            ):
                puid = puids[head]
                puids[head] = ""  # the FIFO no longer keeps the puid alive
                head += 1
                if head == len(times):
                    del times[:]
                    puids.clear()
                    head = 0
                elif head >= 1024 and 2 * head >= len(times):
                    del times[:head]
                    del puids[:head]
                    head = 0
                self._head = head
                return first, puid
        if late and late[0][0] < now:
            return heapq.heappop(late)
        return None

    def load(self, items: list[tuple[float, str]]) -> None:
        """Replace the queue with ``items`` in any order (a restored snapshot)."""
        items.sort()
        self._times = array("d", [deadline for deadline, _ in items])
        self._puids = [puid for _, puid in items]
        self._head = 0
        self._late = []


@dataclass(slots=True)
class JoinResult:
    """What one event changed.

    ``responses`` lists the model key of each logged response that is the
    first of its (puid, model) (a duplicate or a retry of the same puid is
    not a new response). ``retracted`` outcomes must leave every window
    before ``applied`` ones enter. ``labelled`` lists, per response that got its first feedback, its
    model key and the label delay (feedback time - response time).
    ``conflicts`` lists the model key of each applied pair whose reward
    contradicts its truth; ``errors`` the invalid pairs (row mismatch).

    Each is a tuple, empty (the shared ``()``) unless the event changed
    something of that kind: one result is made per event, and most events
    change one or two of the six.
    """

    status: EventStatus
    responses: tuple[ModelKey, ...] = ()
    retracted: tuple[Outcome, ...] = ()
    applied: tuple[Outcome, ...] = ()
    labelled: tuple[tuple[ModelKey, float], ...] = ()
    conflicts: tuple[ModelKey, ...] = ()
    errors: tuple[DecodeError, ...] = ()

    def __init__(self, status: EventStatus) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code, a
        # dataclass's generated one runs interpreted (one result per record).
        self.status = status
        self.responses = ()
        self.retracted = ()
        self.applied = ()
        self.labelled = ()
        self.conflicts = ()
        self.errors = ()


class JoinStore:
    """puid -> the parts seen so far, for one partition.

    Args:
        ttl: seconds an entry lives after the newest event time of its puid.
        time_basis: which time places outcomes in time windows.
        sequence: outcome sequence numbers, shared with other stores of an engine.
        kinds: the declared model kinds, which read each response's rows
            (:mod:`feedback_stream.model_kinds`); by default every kind is detected.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL_S,
        time_basis: TimeBasis = TimeBasis.FEEDBACK,
        sequence: Sequence | None = None,
        kinds: ModelKinds | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.ttl = float(ttl)
        self.time_basis = TimeBasis(time_basis)
        self.sequence = sequence if sequence is not None else Sequence()
        self.kinds = kinds if kinds is not None else ModelKinds()
        self._entries: dict[str, _Entry | bytes] = {}
        self._keys: packed.Interned[ModelKey] = packed.Interned()
        self._labels: packed.Interned[tuple[str, ...]] = packed.Interned(_MAX_LABELS)
        self._deadlines = _Deadlines()
        self._aliases: dict[str, str] = {}
        self._unlabelled: dict[ModelKey, dict[str, _Response]] = {}
        """Per model, puid -> its logged scored (non-regression) response still without
        feedback: what :meth:`pending_scores` reads, kept as responses come, are labelled,
        replaced and dropped, so a scrape does not scan every entry."""
        self.dropped: list[str] | None = None
        """When a list, the key of every entry dropped (expired, evicted, merged into
        another under an alias) is appended, for the changelog to delete. Anything
        else that drops an entry must do the same, or a restore revives it.
        """

    @property
    def pending(self) -> int:
        """Number of puids held (waiting for parts, or joined and still amendable)."""
        return len(self._entries)

    def add(self, event: Event) -> JoinResult:
        """Take one event; return the outcomes it retracts and applies."""
        rank = identity_hash(event.identity)
        ident = rank.to_bytes(8, "little")
        puid = event.puid
        target = self._aliases.get(puid) if self._aliases else None
        if target is not None:
            puid = target
        held = self._entries.get(puid)
        deadline = event.time + self.ttl
        read: Interpretation | DecodeError | None = None
        if held is None or isinstance(held, bytes):
            if held is not None and packed.seen(held, ident):
                return JoinResult(EventStatus.DUPLICATE)
            kind = event.kind
            if kind is EventKind.REQUEST or (
                kind is EventKind.RESPONSE
                and event.classes is not None
                and (event.alias is None or event.alias == puid)
            ):
                # The common case: a part of a pending puid, added in packed form.
                done, read = self._add_packed(puid, held, event, rank, ident, deadline)
                if done is not None:
                    return done
        if held is None:
            entry = _Entry(deadline, ident)
            self._deadlines.push(deadline, puid)
        elif isinstance(held, bytes):
            entry = self._unpack(held)
            entry.seen += ident
            if deadline > entry.deadline:
                entry.deadline = deadline
        else:
            entry = held
            if _seen(entry.seen, ident):
                return JoinResult(EventStatus.DUPLICATE)
            entry.seen += ident
            if deadline > entry.deadline:
                entry.deadline = deadline
        result = self._take(puid, entry, event, rank, read)
        if not isinstance(held, _Entry):
            # New or packed: held packed again while it is still only pending.
            still = self._pack(entry)
            self._entries[puid] = entry if still is None else still
        return result

    def _add_packed(
        self,
        puid: str,
        held: bytes | None,
        event: Event,
        rank: int,
        ident: bytes,
        deadline: float,
    ) -> tuple[JoinResult | None, Interpretation | DecodeError | None]:
        """Add a request, or a response with classes and no alias, to a packed entry
        (or to a new one when ``held`` is ``None``) without unpacking it.

        The same as :meth:`_take` on the unpacked entry for what it covers: a
        request; a response whose model has no response yet, read without
        scores. Returns the result, or ``None`` with the response's reading
        (if it was read) when the full entry must take the event.
        """
        key_id = self._keys.id(event.key)
        if key_id == packed.NO_ID:
            return None, None
        if held is not None:
            n_requests, n_responses = packed.counts(held)
            old = packed.deadline(held)
            if old > deadline:
                deadline = old
        else:
            n_requests = n_responses = 0
        if event.kind is EventKind.REQUEST:
            if n_requests >= packed.MAX_PARTS:
                return None, None
            request = (key_id, event.time)
            if held is None:
                self._entries[puid] = packed.pack(deadline, [request], [], ident)
                self._deadlines.push(deadline, puid)
            else:
                self._entries[puid] = packed.with_request(held, deadline, request, ident)
            return JoinResult(EventStatus.ACCEPTED), None
        if n_responses >= packed.MAX_PARTS or (
            held is not None and packed.has_response(held, key_id)
        ):
            return None, None  # a retry of the same model is weighed by the full entry
        read = self.kinds.interpret(event)
        if isinstance(read, DecodeError) or read[2] is not None:
            return None, read
        classes, names, _ = read
        labels = self._labels
        classes_id = labels.id(classes)
        names_id = packed.NO_ID if names is None else labels.id(names)
        if classes_id == packed.NO_ID or (names_id == packed.NO_ID and names is not None):
            return None, read
        response = (event.time, rank, key_id, classes_id, names_id)
        if held is None:
            self._entries[puid] = packed.pack(deadline, [], [response], ident)
            self._deadlines.push(deadline, puid)
        else:
            self._entries[puid] = packed.with_response(held, deadline, response, ident)
        result = JoinResult(EventStatus.ACCEPTED)
        result.responses = (event.key,)
        return result, None

    def _take(
        self,
        puid: str,
        entry: _Entry,
        event: Event,
        rank: int,
        read: Interpretation | DecodeError | None = None,
    ) -> JoinResult:
        """Add the parts of a new (not duplicate) event to ``entry``; settle its pairs.

        ``read`` is the response's reading when it was already made.
        """
        result = JoinResult(EventStatus.ACCEPTED)
        kind = event.kind
        if kind is EventKind.RESPONSE:
            if event.classes is None:
                return result
            if event.alias is not None and event.alias != puid:
                self._alias(puid, entry, event.alias)
            key = event.key
            held = _response(entry, key)
            if held is not None and (event.time, rank) >= (held.time, held.rank):
                return result  # a later retry of the same puid: the earliest response stands
            if read is None:
                read = self.kinds.interpret(event)
            if isinstance(read, DecodeError):
                # Not joinable until its kind is known: counted, never read as junk classes.
                result.errors += (read,)
                return result
            classes, names, scores = read
            response = _Response(key, classes, event.time, False, names, scores, rank)
            if held is None:
                entry.responses = _append(entry.responses, response)
                result.responses += (key,)
            else:
                # A retry under the same puid, earlier than the one held: it replaces it.
                response.labelled = held.labelled
                entry.responses = _replace(entry.responses, held, response)
                self._release_unlabelled(puid, held)
            if scores is not None and not response.labelled:
                self._hold_unlabelled(puid, response)
            if entry.feedbacks is not None:
                self._settle(puid, entry, result)
        elif kind is EventKind.FEEDBACK:
            feedback = _Feedback(
                event.key,
                event.classes,
                event.reward,
                event.time,
                rank,
                event.names is not None,
                event.embedded,
                event.embedded_names,
            )
            entry.feedbacks = _append(entry.feedbacks, feedback)
            self._settle(puid, entry, result)
        else:
            entry.requests = _append(entry.requests, (event.key, event.time))
            if self.time_basis is TimeBasis.REQUEST and entry.pairs:
                self._settle(puid, entry, result)
        return result

    def _pack(self, entry: _Entry) -> bytes | None:
        """``entry`` packed (:mod:`feedback_stream.packed`), or ``None`` when it is not
        only pending (feedback, pairs, marks, aliases, scores) or a value got no id."""
        if entry.feedbacks is not None or entry.pairs or entry.marks or entry.aliases:
            return None
        requests = _items(entry.requests)
        responses = _items(entry.responses)
        if len(requests) > packed.MAX_PARTS or len(responses) > packed.MAX_PARTS:
            return None
        keys, labels = self._keys, self._labels
        packed_requests: list[packed.PackedRequest] = []
        for key, time in requests:
            key_id = keys.id(key)
            if key_id == packed.NO_ID:
                return None
            packed_requests.append((key_id, time))
        packed_responses: list[packed.PackedResponse] = []
        for response in responses:
            if response.labelled or response.scores is not None or not response.logged:
                return None
            key_id = keys.id(response.key)
            classes_id = labels.id(response.classes)
            names = response.names
            names_id = packed.NO_ID if names is None else labels.id(names)
            if (
                key_id == packed.NO_ID
                or classes_id == packed.NO_ID
                or (names_id == packed.NO_ID and names is not None)
            ):
                return None
            packed_responses.append((response.time, response.rank, key_id, classes_id, names_id))
        return packed.pack(entry.deadline, packed_requests, packed_responses, entry.seen)

    def _unpack(self, data: bytes) -> _Entry:
        """The full entry of a packed one (the same parts, in the same order)."""
        deadline, requests, responses, seen = packed.unpack(data)
        entry = _Entry(deadline, seen)
        keys, labels = self._keys.values, self._labels.values
        for key_id, time in requests:
            entry.requests = _append(entry.requests, (keys[key_id], time))
        for time, rank, key_id, classes_id, names_id in responses:
            response = _Response(
                keys[key_id],
                labels[classes_id],
                time,
                names=None if names_id == packed.NO_ID else labels[names_id],
                rank=rank,
            )
            entry.responses = _append(entry.responses, response)
        return entry

    def _alias(self, puid: str, entry: _Entry, alias: str) -> None:
        """Lead ``alias`` to ``puid``'s entry, taking in what already waits under it."""
        if alias in self._aliases:
            return
        held = self._entries.get(alias)
        if held is not None:
            other = self._unpack(held) if isinstance(held, bytes) else held
            if other.responses is not None or other.aliases:
                return  # a prediction of its own, not another name of this one
            del self._entries[alias]
            if self.dropped is not None:
                self.dropped.append(alias)
            entry.seen += other.seen
            for request in _items(other.requests):
                entry.requests = _append(entry.requests, request)
            for feedback in _items(other.feedbacks):
                entry.feedbacks = _append(entry.feedbacks, feedback)
            if other.deadline > entry.deadline:
                entry.deadline = other.deadline
        self._aliases[alias] = puid
        if entry.aliases is None:
            entry.aliases = []
        entry.aliases.append(alias)

    def has_response(self, puid: str, key: ModelKey) -> bool:
        """Whether a logged response of ``puid`` matches a feedback naming ``key``.

        ``key`` is what a feedback named: an empty predictor or model matches any.
        """
        held = self._entries.get(self._aliases.get(puid, puid))
        if held is None:
            return False
        entry = self._unpack(held) if isinstance(held, bytes) else held
        probe = _Feedback(key, None, None, 0.0, 0)
        return any(probe.matches(r.key) for r in _items(entry.responses))

    def expire(self, now: float) -> dict[EventKind, int]:
        """Drop entries whose deadline is before ``now``; count their unjoined parts.

        A request counts as expired when no outcome came from its puid, a
        logged response when no feedback joined it, a feedback when it
        matched no response (logged or embedded) whose rows it fits.
        """
        expired = {EventKind.REQUEST: 0, EventKind.RESPONSE: 0, EventKind.FEEDBACK: 0}
        deadlines = self._deadlines
        while (due := deadlines.pop_before(now)) is not None:
            deadline, puid = due
            entry = self._entries.get(puid)
            if entry is None:
                continue
            entry_deadline = packed.deadline(entry) if isinstance(entry, bytes) else entry.deadline
            if entry_deadline > deadline:
                deadlines.push(entry_deadline, puid)
                continue
            del self._entries[puid]
            if self.dropped is not None:
                self.dropped.append(puid)
            self._count_unjoined(puid, entry, expired)
        return expired

    def _count_unjoined(
        self, puid: str, entry: _Entry | bytes, counts: dict[EventKind, int]
    ) -> None:
        """Count the parts of a dropped entry that never joined; forget its aliases
        and its responses awaiting feedback.

        Requests when no pair stands for the puid, logged responses never
        labelled, feedbacks matching no response (logged or embedded) whose
        rows they fit: all read from the final state, whatever the order. A packed
        entry has neither pairs, nor labelled responses, nor feedback, nor aliases.
        """
        if isinstance(entry, bytes):
            n_requests, n_responses = packed.counts(entry)
            counts[EventKind.REQUEST] += n_requests
            counts[EventKind.RESPONSE] += n_responses
            return
        for alias in entry.aliases or ():
            self._aliases.pop(alias, None)
        for response in _items(entry.responses):
            if response.scores is not None and not response.labelled:
                self._release_unlabelled(puid, response)
        if not entry.pairs:
            counts[EventKind.REQUEST] += len(_items(entry.requests))
        counts[EventKind.RESPONSE] += sum(1 for r in _items(entry.responses) if not r.labelled)
        feedbacks = _items(entry.feedbacks)
        if feedbacks:
            responses = _effective(entry, feedbacks).values()
            counts[EventKind.FEEDBACK] += sum(
                1 for f in feedbacks if not any(f.matches(r.key) and _fits(f, r) for r in responses)
            )

    def evict_oldest(self, count: int) -> dict[EventKind, int]:
        """Drop the ``count`` entries nearest their deadline, whatever the clock says.

        The pending bound: past it, the oldest puids give way to new ones
        instead of the input stopping. Parts that never joined are counted
        per event type, as :meth:`expire` counts them.
        """
        evicted = {EventKind.REQUEST: 0, EventKind.RESPONSE: 0, EventKind.FEEDBACK: 0}
        deadlines = self._deadlines
        while count > 0 and (due := deadlines.pop_before(float("inf"))) is not None:
            deadline, puid = due
            entry = self._entries.get(puid)
            if entry is None:
                continue
            entry_deadline = packed.deadline(entry) if isinstance(entry, bytes) else entry.deadline
            if entry_deadline > deadline:
                deadlines.push(entry_deadline, puid)
                continue
            del self._entries[puid]
            if self.dropped is not None:
                self.dropped.append(puid)
            count -= 1
            self._count_unjoined(puid, entry, evicted)
        return evicted

    def _request_time(self, entry: _Entry, key: ModelKey) -> float | None:
        held = entry.requests
        if held is None:
            return None
        if not isinstance(held, list):  # one request: its time, whichever model it was for
            return held[1]
        requests = held
        same = [t for k, t in requests if k is key or k == key]
        return min(same) if same else min(t for _, t in requests)

    def _settle(self, puid: str, entry: _Entry, result: JoinResult) -> None:
        """Recompute every pair of ``entry`` from its parts; report what changed.

        Each rule is a function of the set of parts, never of their order:
        per model, the logged response (else the earliest embedded one) and
        the compatible feedback with the latest event time, ties to the
        larger identity hash.
        """
        feedbacks = _items(entry.feedbacks)
        if not feedbacks:
            return
        effective = _effective(entry, feedbacks)
        pairs = entry.pairs
        if pairs:
            for gone in [k for k in pairs if k not in effective]:
                result.retracted += pairs.pop(gone).outcomes
        for key, response in effective.items():
            best: _Feedback | None = None
            for feedback in feedbacks:
                if not feedback.matches(key):
                    continue
                if not self._check(puid, entry, response, feedback, result):
                    continue
                if best is None or (feedback.time, feedback.rank) > (best.time, best.rank):
                    best = feedback
            if best is None:
                if pairs and key in pairs:
                    result.retracted += pairs.pop(key).outcomes
                continue
            request_time = self._request_time(entry, key)
            if self.time_basis is TimeBasis.FEEDBACK:
                time = best.time
            else:
                time = request_time if request_time is not None else response.time
            if pairs is None:
                pairs = entry.pairs = {}
            old = pairs.get(key)
            if old is not None:
                if old.feedback is best and old.time == time and old.response.same(response):
                    continue
                result.retracted += old.outcomes
                if old.feedback is not best:
                    result.status = EventStatus.AMENDED
            truth = _truth(best, response)
            outcomes = pair_outcomes(
                key,
                puid,
                response.classes,
                truth,
                best.reward,
                time,
                response.time,
                best.time,
                request_time,
                self.sequence.take(len(response.classes)),
                response.scores,
            )
            head = outcomes[0]
            if response.logged:
                head.label_delay = best.time - response.time
            numeric = response.scores is not None and response.scores.kind is ModelKind.REGRESSION
            if (
                not numeric
                and is_conflict(response.classes, truth, best.reward)
                and not _inherited(best, response)
            ):
                head.conflict = True
                if old is None or old.feedback is not best or not old.response.same(response):
                    result.conflicts += (key,)
            pairs[key] = _Pair(best, response, time, outcomes)
            result.applied += outcomes
            if response.logged and not response.labelled:
                response.labelled = True
                if response.scores is not None:
                    self._release_unlabelled(puid, response)
                result.labelled += ((key, best.time - response.time),)

    def _check(
        self,
        puid: str,
        entry: _Entry,
        response: _Response,
        feedback: _Feedback,
        result: JoinResult,
    ) -> bool:
        """Whether ``feedback`` can pair with ``response``; report each problem once.

        A truth with another row count is an invalid pair (``row_mismatch``);
        a truth for a response without classes cannot be scored
        (``unscorable``: its reward still counts); a reward that contradicts
        the truth is a conflict (flagged on the pair's outcomes).
        """
        truth = feedback.truth
        if truth is None:
            return True
        key = response.key
        if response.classes[0] == UNCLASSIFIED:
            if self._mark(entry, key, feedback.rank, "u"):
                result.errors += (
                    DecodeError(
                        f"feedback for puid {puid} has a truth but the response of model "
                        f"{key.model or '?'} holds no classes to compare it with",
                        "unscorable",
                        None,
                        _FEEDBACK_TYPE,
                        puid,
                    ),
                )
            return True
        if len(truth) != len(response.classes):
            if self._mark(entry, key, feedback.rank, "m"):
                result.errors += (
                    DecodeError(
                        f"feedback for puid {puid} has {len(truth)} truth rows but the response "
                        f"of model {key.model or '?'} has {len(response.classes)}",
                        "row_mismatch",
                        None,
                        _FEEDBACK_TYPE,
                        puid,
                    ),
                )
            return False
        return True

    @staticmethod
    def _mark(entry: _Entry, key: ModelKey, rank: int, what: str) -> bool:
        """Remember one check of (key, feedback); ``False`` when it was already made."""
        if entry.marks is None:
            entry.marks = set()
        mark = (key, rank, what)
        if mark in entry.marks:
            return False
        entry.marks.add(mark)
        return True

    def _hold_unlabelled(self, puid: str, response: _Response) -> None:
        """Index a logged response with scores and no feedback (regression ones are not)."""
        scores = response.scores
        if scores is None or scores.kind is ModelKind.REGRESSION:
            return
        held = self._unlabelled.get(response.key)
        if held is None:
            held = self._unlabelled[response.key] = {}
        held[puid] = response

    def _release_unlabelled(self, puid: str, response: _Response) -> None:
        """Forget ``response`` (labelled, replaced or dropped) if it is the one indexed."""
        held = self._unlabelled.get(response.key)
        if held is not None and held.get(puid) is response:
            del held[puid]
            if not held:
                del self._unlabelled[response.key]

    def pending_scores(self) -> Iterator[tuple[ModelKey, float, tuple[float, ...]]]:
        """(model, response time, top score of each row) of every scored response still
        without feedback: what confidence-based estimation reads (:mod:`feedback_stream.cbpe`).

        Responses of regression models, and responses without scores, are left out.
        Read from an index kept as responses come and go: O(such responses), not
        O(entries held). Grouped by model, in no particular order within a model.
        """
        for held in self._unlabelled.values():
            for response in held.values():
                scores = response.scores
                assert scores is not None
                rows = len(response.classes)
                yield response.key, response.time, tuple(scores.confidence(r) for r in range(rows))

    def holds(self, puid: str) -> bool:
        """Whether the store still holds ``puid`` (its outcomes can still be amended)."""
        return puid in self._entries

    def applied(self, puid: str) -> dict[ModelKey, tuple[Outcome, ...]]:
        """The outcomes currently applied for ``puid``, per model (empty when none)."""
        entry = self._entries.get(puid)
        if entry is None or isinstance(entry, bytes) or not entry.pairs:
            return {}
        return {key: pair.outcomes for key, pair in entry.pairs.items()}

    # ------------------------------------------------------------ snapshot support

    def held_outcomes(self) -> Iterator[Outcome]:
        """The outcomes currently applied for puids the store still holds."""
        for entry in self._entries.values():
            if not isinstance(entry, bytes) and entry.pairs:
                for pair in entry.pairs.values():
                    yield from pair.outcomes

    def dump_entry(self, puid: str, compact: bool = False) -> list[Any] | None:
        """One entry as plain data (a row of :meth:`dump`), or ``None`` if not held.

        The changelog writes one row per changed entry
        (:mod:`feedback_stream.changelog`), ``compact``: each model key is
        then written once, in a tenth field (``[[namespace, deployment,
        predictor, model], ...]``), and the rows name it by its index there
        (an ``int`` where the plain row has the key's list); the seen event
        hashes (field 2) are the base64 of their little-endian 8-byte words
        instead of a list of ints. :meth:`load` reads both shapes.
        """
        held = self._entries.get(puid)
        if held is None:
            return None
        e = self._unpack(held) if isinstance(held, bytes) else held
        feedbacks = _items(e.feedbacks)
        responses = _items(e.responses)
        fb_index = {id(f): i for i, f in enumerate(feedbacks)}
        resp_index = {id(r): i for i, r in enumerate(responses)}
        table: dict[ModelKey, Any] = {}
        models: list[Any] = []
        if compact:
            for k, _ in _items(e.requests):
                if k not in table:
                    table[k] = len(table)
            for r in responses:
                if r.key not in table:
                    table[r.key] = len(table)
            for f in feedbacks:
                if f.key not in table:
                    table[f.key] = len(table)
            for k in e.pairs or ():
                if k not in table:
                    table[k] = len(table)
            for k, _, _ in e.marks or ():
                if k not in table:
                    table[k] = len(table)
            models = [_key_list(k) for k in table]
        else:
            for k, _ in _items(e.requests):
                table[k] = _key_list(k)
            for r in responses:
                table[r.key] = _key_list(r.key)
            for f in feedbacks:
                table[f.key] = _key_list(f.key)
            for k in e.pairs or ():
                table[k] = _key_list(k)
            for k, _, _ in e.marks or ():
                table[k] = _key_list(k)
        row = [
            puid,
            e.deadline,
            (
                b64encode(e.seen).decode("ascii")
                if compact
                else list(struct.unpack(f"<{len(e.seen) // 8}Q", e.seen))
            ),
            [[table[k], t] for k, t in _items(e.requests)],
            [
                [
                    table[r.key],
                    list(r.classes),
                    r.time,
                    r.labelled,
                    None if r.names is None else list(r.names),
                    None if r.scores is None else r.scores.to_list(),
                    r.rank,
                ]
                for r in responses
            ],
            [
                [
                    table[f.key],
                    None if f.truth is None else list(f.truth),
                    f.reward,
                    f.time,
                    f.rank,
                    f.named,
                    None if f.embedded is None else list(f.embedded),
                    None if f.embedded_names is None else list(f.embedded_names),
                ]
                for f in feedbacks
            ],
            [
                [
                    table[k],
                    fb_index[id(p.feedback)],
                    resp_index.get(id(p.response), -1),
                    p.time,
                    [o.seq for o in p.outcomes],
                ]
                for k, p in (e.pairs or {}).items()
            ],
            [[table[k], r, w] for k, r, w in (e.marks or set())],
            list(e.aliases or ()),
        ]
        if compact:
            row.append(models)
        return row

    def entry_key(self, puid: str) -> str:
        """The key of the entry holding ``puid``'s events (another puid, for an alias)."""
        return self._aliases.get(puid, puid) if self._aliases else puid

    def holds_outcome(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` is applied for a puid the store still holds."""
        entry = self._entries.get(self.entry_key(outcome.puid))
        if entry is None or isinstance(entry, bytes) or not entry.pairs:
            return False
        pair = entry.pairs.get(outcome.key)
        return pair is not None and any(o is outcome for o in pair.outcomes)

    def dump(self) -> dict[str, Any]:
        """Plain data for :mod:`feedback_stream.snapshot`; outcomes by ``seq``.

        A pair names its feedback by index and its response by index among
        the logged responses, or ``-1`` for the embedded prediction of its
        feedback.
        """
        entries = [self.dump_entry(puid) for puid in self._entries]
        return {
            "ttl": self.ttl,
            "time_basis": self.time_basis.value,
            "entries": entries,
        }

    @classmethod
    def load(
        cls, data: dict[str, Any], outcomes: dict[int, Outcome], sequence: Sequence
    ) -> JoinStore:
        """Rebuild a store from :meth:`dump` output; ``outcomes`` maps seq to outcome."""
        store = cls(data["ttl"], TimeBasis(data["time_basis"]), sequence)
        due: list[tuple[float, str]] = []
        for row in data["entries"]:
            puid, deadline, seen, reqs, resps, fbs, pairs, marks, aliases = row[:9]
            # A compact row (dump_entry(compact=True)) names its models by index.
            models = [ModelKey(*k) for k in row[9]] if len(row) > 9 else None
            packed_seen = (
                b64decode(seen) if isinstance(seen, str) else struct.pack(f"<{len(seen)}Q", *seen)
            )
            entry = _Entry(deadline, packed_seen)
            for k, t in reqs:
                entry.requests = _append(entry.requests, (_model(k, models), t))
            responses = [
                _Response(
                    _model(k, models),
                    tuple(c),
                    t,
                    lab,
                    None if n is None else tuple(n),
                    None if sc is None else ResponseScores.from_list(sc),
                    r,
                )
                for k, c, t, lab, n, sc, r in resps
            ]
            for response in responses:
                entry.responses = _append(entry.responses, response)
                if response.scores is not None and not response.labelled:
                    store._hold_unlabelled(puid, response)
            feedbacks = [
                _Feedback(
                    _model(k, models),
                    None if tr is None else tuple(tr),
                    rw,
                    t,
                    r,
                    n,
                    None if em is None else tuple(em),
                    None if en is None else tuple(en),
                )
                for k, tr, rw, t, r, n, em, en in fbs
            ]
            for feedback in feedbacks:
                entry.feedbacks = _append(entry.feedbacks, feedback)
            if pairs:
                effective = _effective(entry, feedbacks)
                entry.pairs = {}
                for k, i, ri, t, seqs in pairs:
                    key = _model(k, models)
                    response = responses[ri] if ri >= 0 else effective[key]
                    entry.pairs[key] = _Pair(
                        feedbacks[i], response, t, tuple(outcomes[s] for s in seqs)
                    )
            if marks:
                entry.marks = {(_model(k, models), r, w) for k, r, w in marks}
            if aliases:
                entry.aliases = list(aliases)
                for alias in aliases:
                    store._aliases[alias] = puid
            packed_entry = store._pack(entry)
            store._entries[puid] = entry if packed_entry is None else packed_entry
            due.append((deadline, puid))
        store._deadlines.load(due)
        return store


def _model(k: Any, models: list[ModelKey] | None) -> ModelKey:
    """A row's model: its index into ``models`` (a compact row), or its key's list."""
    return models[k] if models is not None else ModelKey(*k)


def _key_list(key: ModelKey) -> list[str]:
    return [key.namespace, key.deployment, key.predictor, key.model]
