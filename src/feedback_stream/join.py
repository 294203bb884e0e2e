"""Join request, response and feedback events by puid, with a TTL.

One :class:`JoinStore` serves one input partition (or, routed by puid, a
whole processor). For every puid it keeps what the metrics need and nothing
else: the request times, each model's predicted classes and response time,
every feedback's truth classes, reward and time, the outcomes currently
applied, and the identities of the events seen (as 64-bit hashes, for
dedupe). Payloads are never kept.

After each event the store recomputes, for every response the event can
touch, which feedback wins it (EVENTS.md §3 and docs/semantics.md):

* a feedback joins a response if its ``predictor`` / ``model`` filter
  matches (empty = any) and, when it carries a truth, the row counts agree;
* among those, the latest feedback event time wins, ties by arrival.

When the winner, or the outcome time, differs from what is applied, the old
outcomes are reported as retracted and the new ones as applied; the caller
moves its windows accordingly. Retractions always come with as many
applications (the rows of a response never change), which count windows
rely on.

An entry lives until ``TTL`` after the newest event time seen for its puid;
:meth:`JoinStore.expire` drops entries past that and counts, per event type,
the parts that never joined.
"""

from __future__ import annotations

import heapq
import zlib
from collections import deque
from collections.abc import Iterator
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, EventKind, ModelKey
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.outcomes import Outcome, TimeBasis, is_conflict, pair_outcomes
from feedback_stream.scores import ModelKind, ResponseScores

__all__ = ["EventStatus", "JoinResult", "JoinStore", "Sequence", "identity_hash"]

DEFAULT_TTL_S = 3600.0


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
    return (zlib.crc32(raw) << 32) | zlib.adler32(raw)


@dataclass(slots=True, eq=False)
class _Response:
    key: ModelKey
    classes: tuple[str, ...]
    time: float
    labelled: bool = False
    names: tuple[str, ...] | None = None
    scores: ResponseScores | None = None


@dataclass(slots=True, eq=False)
class _Feedback:
    predictor: str
    model: str
    truth: tuple[str, ...] | None
    reward: float | None
    time: float
    arrival: int
    joined: bool = False
    named: bool = False

    def matches(self, key: ModelKey) -> bool:
        return (not self.predictor or self.predictor == key.predictor) and (
            not self.model or self.model == key.model
        )


@dataclass(slots=True, eq=False)
class _Pair:
    feedback: _Feedback
    time: float
    outcomes: tuple[Outcome, ...]


_T = TypeVar("_T")


@dataclass(slots=True, eq=False)
class _Entry:
    """One puid. Parts are kept as one item, or a list once there are several.

    Most puids have one request, one response and one feedback, and most
    pending ones only the first two: not allocating a container for a single
    item keeps a pending puid to a few hundred bytes.
    """

    deadline: float
    seen: bytes
    requests: tuple[ModelKey, float] | list[tuple[ModelKey, float]] | None = None
    responses: _Response | list[_Response] | None = None
    feedbacks: _Feedback | list[_Feedback] | None = None
    pairs: dict[ModelKey, _Pair] | None = None
    mismatched: set[tuple[ModelKey, int]] | None = None
    joined: bool = False


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


class _Deadlines:
    """When each entry may expire, in deadline order: a FIFO, and a heap for the rest.

    Event times mostly grow, so deadlines (time + TTL) mostly arrive in
    order. Those go to two parallel deques (16 bytes a puid, no comparisons)
    instead of a heap of ``(deadline, puid)`` tuples (64 bytes a puid and a
    sift per push); a deadline earlier than the FIFO's last one goes to a
    small heap. Popping takes the earlier of the two heads.
    """

    __slots__ = ("_late", "_puids", "_times")

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self._puids: deque[str] = deque()
        self._late: list[tuple[float, str]] = []

    def push(self, deadline: float, puid: str) -> None:
        times = self._times
        if not times or deadline >= times[-1]:
            times.append(deadline)
            self._puids.append(puid)
        else:
            heapq.heappush(self._late, (deadline, puid))

    def pop_before(self, now: float) -> tuple[float, str] | None:
        """The earliest (deadline, puid) with deadline before ``now``, removed; else None."""
        times, late = self._times, self._late
        if times and times[0] < now and (not late or times[0] <= late[0][0]):
            return times.popleft(), self._puids.popleft()
        if late and late[0][0] < now:
            return heapq.heappop(late)
        return None

    def load(self, items: list[tuple[float, str]]) -> None:
        """Replace the queue with ``items`` in any order (a restored snapshot)."""
        self._times.clear()
        self._puids.clear()
        self._late = items
        heapq.heapify(items)


@dataclass(slots=True)
class JoinResult:
    """What one event changed.

    ``retracted`` outcomes must leave every window before ``applied`` ones
    enter. ``labelled`` lists, per response that got its first feedback, its
    model key and the label delay (feedback time - response time).
    ``conflicts`` lists the model key of each applied pair whose reward
    contradicts its truth; ``errors`` the invalid pairs (row mismatch).
    """

    status: EventStatus
    retracted: list[Outcome] = field(default_factory=list)
    applied: list[Outcome] = field(default_factory=list)
    labelled: list[tuple[ModelKey, float]] = field(default_factory=list)
    conflicts: list[ModelKey] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)


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
        self._entries: dict[str, _Entry] = {}
        self._deadlines = _Deadlines()
        self._arrivals = 0

    @property
    def pending(self) -> int:
        """Number of puids held (waiting for parts, or joined and still amendable)."""
        return len(self._entries)

    def add(self, event: Event) -> JoinResult:
        """Take one event; return the outcomes it retracts and applies."""
        ident = identity_hash(event.identity).to_bytes(8, "little")
        entry = self._entries.get(event.puid)
        deadline = event.time + self.ttl
        if entry is None:
            entry = _Entry(deadline, ident)
            self._entries[event.puid] = entry
            self._deadlines.push(deadline, event.puid)
        elif _seen(entry.seen, ident):
            return JoinResult(EventStatus.DUPLICATE)
        else:
            entry.seen += ident
            if deadline > entry.deadline:
                entry.deadline = deadline
        result = JoinResult(EventStatus.ACCEPTED)
        kind = event.kind
        if kind is EventKind.RESPONSE:
            if event.classes is not None and _response(entry, event.key) is None:
                read = self.kinds.interpret(event)
                if isinstance(read, DecodeError):
                    # Not joinable until its kind is known: counted, never read as junk classes.
                    result.errors.append(read)
                    return result
                classes, names, scores = read
                response = _Response(event.key, classes, event.time, names=names, scores=scores)
                entry.responses = _append(entry.responses, response)
                self._rejoin(event.puid, entry, (event.key,), result)
        elif kind is EventKind.FEEDBACK:
            self._arrivals += 1
            feedback = _Feedback(
                event.key.predictor,
                event.key.model,
                event.classes,
                event.reward,
                event.time,
                self._arrivals,
                named=event.names is not None,
            )
            entry.feedbacks = _append(entry.feedbacks, feedback)
            if entry.responses is not None:
                keys = tuple(r.key for r in _items(entry.responses) if feedback.matches(r.key))
                self._rejoin(event.puid, entry, keys, result)
        else:
            entry.requests = _append(entry.requests, (event.key, event.time))
            if self.time_basis is TimeBasis.REQUEST and entry.pairs:
                pairs = entry.pairs
                keys = tuple(r.key for r in _items(entry.responses) if r.key in pairs)
                self._rejoin(event.puid, entry, keys, result)
        return result

    def expire(self, now: float) -> dict[EventKind, int]:
        """Drop entries whose deadline is before ``now``; count their unjoined parts.

        A request counts as expired when no outcome came from its puid, a
        response when no feedback joined it, a feedback when it joined no
        response.
        """
        expired = {EventKind.REQUEST: 0, EventKind.RESPONSE: 0, EventKind.FEEDBACK: 0}
        deadlines = self._deadlines
        while (due := deadlines.pop_before(now)) is not None:
            deadline, puid = due
            entry = self._entries.get(puid)
            if entry is None:
                continue
            if entry.deadline > deadline:
                deadlines.push(entry.deadline, puid)
                continue
            del self._entries[puid]
            if not entry.joined:
                expired[EventKind.REQUEST] += len(_items(entry.requests))
            expired[EventKind.RESPONSE] += sum(1 for r in _items(entry.responses) if not r.labelled)
            expired[EventKind.FEEDBACK] += sum(1 for f in _items(entry.feedbacks) if not f.joined)
        return expired

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
            if entry.deadline > deadline:
                deadlines.push(entry.deadline, puid)
                continue
            del self._entries[puid]
            count -= 1
            if not entry.joined:
                evicted[EventKind.REQUEST] += len(_items(entry.requests))
            evicted[EventKind.RESPONSE] += sum(1 for r in _items(entry.responses) if not r.labelled)
            evicted[EventKind.FEEDBACK] += sum(1 for f in _items(entry.feedbacks) if not f.joined)
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

    def _rejoin(
        self, puid: str, entry: _Entry, keys: tuple[ModelKey, ...], result: JoinResult
    ) -> None:
        feedbacks = _items(entry.feedbacks)
        if not feedbacks:
            return
        for key in keys:
            response = _response(entry, key)
            if response is None:
                continue
            best: _Feedback | None = None
            for feedback in feedbacks:
                if not feedback.matches(key):
                    continue
                if feedback.truth is not None and len(feedback.truth) != len(response.classes):
                    self._mismatch(puid, entry, response, feedback, result)
                    continue
                if best is None or (feedback.time, feedback.arrival) > (best.time, best.arrival):
                    best = feedback
            if best is None:
                continue
            request_time = self._request_time(entry, key)
            if self.time_basis is TimeBasis.FEEDBACK:
                time = best.time
            else:
                time = request_time if request_time is not None else response.time
            if entry.pairs is None:
                entry.pairs = {}
            old = entry.pairs.get(key)
            if old is not None:
                if old.feedback is best and old.time == time:
                    continue
                result.retracted.extend(old.outcomes)
                if old.feedback is not best:
                    result.status = EventStatus.AMENDED
            rows = len(response.classes)
            truth = best.truth
            if truth is not None and not best.named and response.names is not None:
                truth = _in_names(truth, response.names)
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
                self.sequence.take(rows),
                response.scores,
            )
            entry.pairs[key] = _Pair(best, time, outcomes)
            result.applied.extend(outcomes)
            changed = old is None or old.feedback is not best
            numeric = response.scores is not None and response.scores.kind is ModelKind.REGRESSION
            if changed and not numeric and is_conflict(response.classes, truth, best.reward):
                result.conflicts.append(key)
            if not response.labelled:
                response.labelled = True
                result.labelled.append((key, best.time - response.time))
            best.joined = True
            entry.joined = True

    def _mismatch(
        self,
        puid: str,
        entry: _Entry,
        response: _Response,
        feedback: _Feedback,
        result: JoinResult,
    ) -> None:
        if entry.mismatched is None:
            entry.mismatched = set()
        mark = (response.key, feedback.arrival)
        if mark in entry.mismatched:
            return
        entry.mismatched.add(mark)
        truth_rows = len(feedback.truth) if feedback.truth is not None else 0
        result.errors.append(
            DecodeError(
                f"feedback for puid {puid} has {truth_rows} truth rows but the response of "
                f"model {response.key.model or '?'} has {len(response.classes)}",
                "row_mismatch",
                None,
                "io.seldon.serving.feedback",
                puid,
            )
        )

    # ------------------------------------------------------------ snapshot support

    def held_outcomes(self) -> Iterator[Outcome]:
        """The outcomes currently applied for puids the store still holds."""
        for entry in self._entries.values():
            if entry.pairs:
                for pair in entry.pairs.values():
                    yield from pair.outcomes

    def dump(self) -> dict[str, Any]:
        """Plain data for :mod:`feedback_stream.snapshot`; outcomes by ``seq``."""
        entries = []
        for puid, e in self._entries.items():
            feedbacks = _items(e.feedbacks)
            fb_index = {id(f): i for i, f in enumerate(feedbacks)}
            entries.append(
                [
                    puid,
                    e.deadline,
                    [int.from_bytes(e.seen[i : i + 8], "little") for i in range(0, len(e.seen), 8)],
                    [[_key_list(k), t] for k, t in _items(e.requests)],
                    [
                        [
                            _key_list(r.key),
                            list(r.classes),
                            r.time,
                            r.labelled,
                            None if r.names is None else list(r.names),
                            None if r.scores is None else r.scores.to_list(),
                        ]
                        for r in _items(e.responses)
                    ],
                    [
                        [
                            f.predictor,
                            f.model,
                            None if f.truth is None else list(f.truth),
                            f.reward,
                            f.time,
                            f.arrival,
                            f.joined,
                            f.named,
                        ]
                        for f in feedbacks
                    ],
                    [
                        [
                            _key_list(k),
                            fb_index[id(p.feedback)],
                            p.time,
                            [o.seq for o in p.outcomes],
                        ]
                        for k, p in (e.pairs or {}).items()
                    ],
                    [[_key_list(k), a] for k, a in (e.mismatched or set())],
                    e.joined,
                ]
            )
        return {
            "ttl": self.ttl,
            "time_basis": self.time_basis.value,
            "arrivals": self._arrivals,
            "entries": entries,
        }

    @classmethod
    def load(
        cls, data: dict[str, Any], outcomes: dict[int, Outcome], sequence: Sequence
    ) -> JoinStore:
        """Rebuild a store from :meth:`dump` output; ``outcomes`` maps seq to outcome."""
        store = cls(data["ttl"], TimeBasis(data["time_basis"]), sequence)
        store._arrivals = data["arrivals"]
        due: list[tuple[float, str]] = []
        for puid, deadline, seen, reqs, resps, fbs, pairs, mism, joined in data["entries"]:
            entry = _Entry(deadline, b"".join(h.to_bytes(8, "little") for h in seen))
            for k, t in reqs:
                entry.requests = _append(entry.requests, (ModelKey(*k), t))
            for k, c, t, lab, names, *more in resps:
                scores = more[0] if more else None
                response = _Response(
                    ModelKey(*k),
                    tuple(c),
                    t,
                    lab,
                    None if names is None else tuple(names),
                    None if scores is None else ResponseScores.from_list(scores),
                )
                entry.responses = _append(entry.responses, response)
            feedbacks = [
                _Feedback(p, m, None if tr is None else tuple(tr), rw, t, a, j, n)
                for p, m, tr, rw, t, a, j, n in fbs
            ]
            for feedback in feedbacks:
                entry.feedbacks = _append(entry.feedbacks, feedback)
            if pairs:
                entry.pairs = {
                    ModelKey(*k): _Pair(feedbacks[i], t, tuple(outcomes[s] for s in seqs))
                    for k, i, t, seqs in pairs
                }
            if mism:
                entry.mismatched = {(ModelKey(*k), a) for k, a in mism}
            entry.joined = joined
            store._entries[puid] = entry
            due.append((deadline, puid))
        store._deadlines.load(due)
        return store


def _key_list(key: ModelKey) -> list[str]:
    return [key.namespace, key.deployment, key.predictor, key.model]
