"""A partition state as a stream of keyed delta records, and back (pure).

The durable state of a processor is a compacted Kafka topic (written by
:mod:`feedback_stream.kafka.state_store`). This module decides what goes
into it: a :class:`ChangeTracker` watches one
:class:`~feedback_stream.partition.PartitionState` and, at each commit,
turns what changed since the last one into records; a :class:`Restorer`
takes the surviving records of a state (the topic after compaction: the last
value of every key, tombstones deleting) and rebuilds the state.

Records are ``(key, value)`` byte pairs, ``value`` ``None`` for a tombstone.
A key is ``<state name> NUL <kind> <rest>``; values are orjson:

====  ===============================  =========================================
kind  key rest                         value
====  ===============================  =========================================
E     puid                             the join entry, compact
                                       (:meth:`JoinStore.dump_entry`): each model
                                       key once, named by index in the entry
O     outcome seq                      the outcome row (:func:`snapshot.outcome_row`),
                                       or ``[model key of its windows, outcome row]``
                                       when the caps fold its model into another
W     ``[model key, window name]``     ``window.dump()`` of a window that keeps
                                       its own aggregate (``total``)
M     model key                        the model's counters (``ModelCounters``)
S     (none)                           clock, newest event time, sequence, event
                                       counters, window names, TTL, time basis
C     (none)                           the paired comparisons, ``[[baseline key,
                                       candidate key], ...]``, in the order they
                                       appeared (values below refer to them by index)
A     ``[comparison, window name]``    ``window.dump()`` of a comparison's window that
                                       keeps its own aggregate (``total``)
Q     pair seq                         ``[comparison, outcome row]``: one pair a
                                       comparison's window or index holds
H     puid                             ``[clock, [[comparison, row, pair seq,
                                       baseline seq, candidate seq], ...]]``: the
                                       pairs of a puid the join store still holds
                                       (found again when an amendment retracts one)
P     (none)                           ``{"topic/partition": offset}``: the input
                                       offsets the state reflects (written by
                                       the store with every commit)
====  ===============================  =========================================

Format 3 (this one) differs from format 2 only in the ``E`` and ``O``
values: a format-2 entry writes every model key in full where it is used
(up to six times) and its seen hashes as a list of ints, a format-2
outcome always ``[model key, row]``. :class:`Restorer` reads both, record
by record, so a topic format 2 wrote (and format 3 went on writing after
an upgrade) restores; the restore of an older version refuses a format-3
state (:class:`ChangelogError`) rather than misread it.

Only what changed is written: the entries of puids that took an event (and
tombstones for entries dropped: expired, evicted, merged under an alias), the
outcomes applied (and tombstones for those retracted), the counters and
aggregate windows of models whose numbers moved, and the ``S`` record when
it differs from the last one written. Paired comparisons are written the same
way: a pair is a ``Q`` record of its own, a puid's pairs an ``H`` record, a
comparison's aggregate windows ``A`` records; their time and count windows
are rebuilt from the ``Q`` records as a model's are from its ``O`` records.
No record grows with the state: the largest is one puid's join entry or one
model's counters.

Sliding time windows and count windows are *derived*: their content is a
function of the live outcomes and the clock (outcomes with
``T - W < t``, plus those stamped after ``T``; the newest N by sequence and
a reserve of N before them), so they are rebuilt from the ``O`` records
and write nothing of their own. An outcome's record is deleted once no
derived window can hold it again and the join store no longer holds it
(:meth:`ChangeTracker.changes`), which bounds the topic by the pending puids
plus the outcomes of the widest time window (or twice the largest count
window).

Adding window state: a window kind whose content is *not* a function of
the live outcomes (an aggregate such as ``total``, or paired statistics)
is persisted through its ``dump()`` / ``load()`` pair, the same one
snapshots use, as a ``W`` record of every model it changed in: nothing else
is needed. A window kind that *is* such a function goes into
:data:`DERIVED_WINDOWS` with its rebuild rule in :func:`_derived_dump`.
Per-model counters travel in ``ModelCounters.to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import orjson

from feedback_stream import snapshot
from feedback_stream.events import ModelKey
from feedback_stream.join import Sequence as OutcomeSequence
from feedback_stream.outcomes import Outcome, TimeBasis, to_tick
from feedback_stream.paired import Comparison
from feedback_stream.partition import PartitionState
from feedback_stream.windows import CountWindow, SlidingWindow, Window, WindowKind, WindowSpec

_K = TypeVar("_K")

__all__ = [
    "DERIVED_WINDOWS",
    "FORMAT",
    "Change",
    "ChangeTracker",
    "ChangelogError",
    "Restorer",
    "state_prefix",
]

FORMAT: Final = "feedback-stream/changelog/3"
_READS: Final = frozenset({"feedback-stream/changelog/2", FORMAT})
"""The formats :class:`Restorer` reads: this one, and the one before (see the module docstring)."""

Change = tuple[bytes, bytes | None]
"""One record: key, and value or ``None`` (a tombstone)."""

DERIVED_WINDOWS: Final[tuple[type[Window], ...]] = (SlidingWindow, CountWindow)
"""Window classes rebuilt from the live outcomes; every other kind writes ``W`` records."""

_SEP: Final = b"\x00"
_E, _O, _W, _M, _S, _P = b"E", b"O", b"W", b"M", b"S", b"P"
_C, _A, _Q, _H = b"C", b"A", b"Q", b"H"


class ChangelogError(ValueError):
    """A record this version cannot read (another format, or corrupt)."""


def state_prefix(name: str) -> bytes:
    """The key prefix of every record of the state called ``name``."""
    return name.encode("utf-8", "surrogatepass") + _SEP


def _key(key: ModelKey) -> list[str]:
    return [key.namespace, key.deployment, key.predictor, key.model]


def _model_bytes(key: ModelKey) -> bytes:
    return orjson.dumps(_key(key))


class ChangeTracker:
    """Collects what one state changes between commits (a :class:`ChangeObserver`).

    Args:
        name: the state's name (its records' key prefix).
        state: the state; the tracker sets itself as its ``observer``.
        retained: seqs of the outcome records already in the topic (after a
            restore); the tracker deletes those the state does not hold now,
            and the others once nothing can hold them.
        retained_pairs: seqs of the pair records already in the topic.
        held_puids: puids whose pair index record is in the topic.
    """

    def __init__(
        self,
        name: str,
        state: PartitionState,
        retained: Iterable[int] = (),
        retained_pairs: Iterable[int] = (),
        held_puids: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.prefix = state_prefix(name)
        self.offsets_key = self.prefix + _P
        """The key of the ``P`` record (input offsets), which the store writes."""
        self.state = state
        self._puids: set[str] = set()
        self._models: set[ModelKey] = set()
        # The observer's two per-event calls go straight to the sets' ``add`` (no
        # Python frame per event); the sets are cleared in place, never replaced.
        self.puid_changed: Callable[[str], None] = self._puids.add
        self.model_changed: Callable[[ModelKey], None] = self._models.add
        self._key_lists: dict[ModelKey, list[str]] = {}
        self._applied: list[Outcome] = []
        self._retracted: list[Outcome] = []
        self._written: dict[ModelKey, deque[Outcome]] = {}
        self._live: dict[ModelKey, int] = {}
        self._scalars: bytes | None = None
        self._comparisons: bytes | None = None
        self._aggregates: dict[bytes, bytes] = {}
        self._pairs_written: dict[Comparison, deque[Outcome]] = {}
        self._pairs_live: dict[Comparison, int] = {}
        self._pair_orphans: list[int] = []
        self._held_puids: set[str] = set(held_puids)
        self._orphans: list[int] = []
        specs = state.specs
        widths = [spec.width_s for spec in specs if spec.kind is WindowKind.TIME]
        sizes = [spec.size for spec in specs if spec.kind is WindowKind.COUNT]
        self._width_tick = to_tick(max(widths)) if widths else None
        self._keep = 2 * max(sizes) if sizes else None
        self._adopt(retained)
        self._adopt_pairs(retained_pairs)
        state.observer = self
        state.join.dropped = []
        state.pairing.formed = []
        state.pairing.retracted = []

    def _adopt(self, retained: Iterable[int]) -> None:
        held = {o.seq: o for o in self.state.join.held_outcomes()}
        for windows in self.state.models.values():
            held.update((o.seq, o) for o in windows.referenced())
        for seq in sorted(retained):
            outcome = held.get(seq)
            if outcome is not None and not outcome.retracted:
                self._track(outcome)
            else:
                self._orphans.append(seq)

    def _adopt_pairs(self, retained: Iterable[int]) -> None:
        pairing = self.state.pairing
        held = pairing.held_pairs()
        for comparison, pair in pairing.window_pairs():
            held[pair.seq] = (comparison, pair)
        for seq in sorted(retained):
            found = held.get(seq)
            if found is not None and not found[1].retracted:
                self._track_pair(*found)
            else:
                self._pair_orphans.append(seq)

    def _track_pair(self, comparison: Comparison, pair: Outcome) -> None:
        written = self._pairs_written.get(comparison)
        if written is None:
            written = self._pairs_written[comparison] = deque()
            self._pairs_live[comparison] = 0
        written.append(pair)
        self._pairs_live[comparison] += 1

    def _track(self, outcome: Outcome) -> None:
        written = self._written.get(outcome.key)
        if written is None:
            written = self._written[outcome.key] = deque()
            self._live[outcome.key] = 0
        written.append(outcome)
        self._live[outcome.key] += 1

    # -- ChangeObserver (``puid_changed`` and ``model_changed`` are set in __init__) --

    def outcomes_moved(self, retracted: Sequence[Outcome], applied: Sequence[Outcome]) -> None:
        # Their models count as changed too: :meth:`changes` adds their keys.
        if retracted:
            self._retracted.extend(retracted)
        if applied:
            self._applied.extend(applied)

    # -- commit ----------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether anything but the ``S`` record may have changed since the last commit."""
        return bool(
            self._puids
            or self._models
            or self._applied
            or self._retracted
            or self.state.join.dropped
        )

    def changes(self) -> list[Change]:
        """The records that bring the topic from the last call to the state now.

        Every call starts a new delta. Deltas compose: the records of two
        calls, the later replacing the earlier key by key, are the delta of
        one call made at the time of the later. So a commit may take part of
        its delta early, between batches (what a state store does to keep each
        stall short), as long as the last call before the transaction is made
        after the records its offsets cover were applied, and everything taken
        since the previous transaction goes into it. A call costs what changed
        since the last one, not the size of the state.
        """
        prefix = self.prefix
        state = self.state
        out: dict[bytes, bytes | None] = {}
        outcome_key = prefix + _O
        for seq in self._orphans:
            out[outcome_key + str(seq).encode()] = None
        self._orphans = []
        fold = state.caps.model
        dumps = orjson.dumps
        outcome_row = snapshot.outcome_row
        key_lists = self._key_lists
        written_by, live_by = self._written, self._live
        models = self._models
        unwritten: set[int] = set()
        for outcome in self._applied:
            models.add(outcome.key)
            if not outcome.retracted:
                folded = fold(outcome.key)
                if folded is outcome.key or folded == outcome.key:
                    # The row names its windows' model already: the row alone.
                    out[outcome_key + str(outcome.seq).encode()] = dumps(outcome_row(outcome))
                else:
                    key_list = key_lists.get(folded)
                    if key_list is None:  # one list per model (models are bounded by the caps)
                        key_list = key_lists[folded] = _key(folded)
                    out[outcome_key + str(outcome.seq).encode()] = dumps(
                        [key_list, outcome_row(outcome)]
                    )
                written = written_by.get(outcome.key)  # self._track(outcome), inlined
                if written is None:
                    written = written_by[outcome.key] = deque()
                    live_by[outcome.key] = 0
                written.append(outcome)
                live_by[outcome.key] += 1
            else:
                unwritten.add(outcome.seq)  # applied and retracted since the last commit
        for outcome in self._retracted:
            models.add(outcome.key)
            if outcome.seq in unwritten:
                continue  # never written: nothing to delete
            out[outcome_key + str(outcome.seq).encode()] = None
            if outcome.key in self._live:
                self._live[outcome.key] -= 1
        self._applied = []
        self._retracted = []
        entry_key = prefix + _E
        join = state.join
        puids = self._puids
        if join.dropped:
            puids.update(join.dropped)
            join.dropped.clear()
        changed = puids | {join.entry_key(p) for p in puids}
        dump_entry = join.dump_entry
        for puid in changed:
            row = dump_entry(puid, True)
            out[entry_key + puid.encode("utf-8", "surrogatepass")] = (
                None if row is None else dumps(row)
            )
        puids.clear()
        for key in {fold(k) for k in self._models}:
            model = _model_bytes(key)
            counters = state.model_counters.get(key)
            if counters is not None:
                out[prefix + _M + model] = orjson.dumps(counters.to_dict())
            windows = state.models.get(key)
            if windows is not None:
                for name, window in windows.windows.items():
                    if not isinstance(window, DERIVED_WINDOWS):
                        out[prefix + _W + orjson.dumps([_key(key), name])] = orjson.dumps(
                            window.dump()
                        )
        self._models.clear()
        for seq in self._collect():
            out[outcome_key + str(seq).encode()] = None
        scalars = orjson.dumps(
            {
                "format": FORMAT,
                "windows": [spec.name for spec in state.specs],
                "clock": state.clock if state.clock != float("-inf") else None,
                "event_clock": (state.event_clock if state.event_clock != float("-inf") else None),
                "sequence": state.sequence.next,
                "events": state.events.to_dict(),
                "ttl": state.join.ttl,
                "time_basis": state.join.time_basis.value,
            }
        )
        if scalars != self._scalars:
            out[prefix + _S] = scalars
            self._scalars = scalars
        self._pairing_changes(changed, out)
        return list(out.items())

    def _pairing_changes(self, puids: set[str], out: dict[bytes, bytes | None]) -> None:
        """The records of the paired comparisons that changed (see the module docstring).

        A pair's ``Q`` record is written when the pair is formed, deleted when
        it is retracted, and deleted once no derived window can hold it again
        and the pair index no longer holds it (as an outcome's ``O`` record).
        """
        prefix = self.prefix
        state = self.state
        pairing = state.pairing
        comparisons = pairing.comparisons()
        if not comparisons and not self._pair_orphans and not self._held_puids:
            return
        index = {c: i for i, c in enumerate(comparisons)}
        table = orjson.dumps([[_key(c.baseline), _key(c.candidate)] for c in comparisons])
        if table != self._comparisons:
            out[prefix + _C] = table
            self._comparisons = table
        for comparison, i in index.items():
            for name, window in pairing.windows[comparison].windows.items():
                if isinstance(window, DERIVED_WINDOWS):
                    continue
                key = prefix + _A + orjson.dumps([i, name])
                value = orjson.dumps(window.dump())
                if self._aggregates.get(key) != value:
                    out[key] = self._aggregates[key] = value
        held_key = prefix + _H
        clock = state.clock if state.clock != float("-inf") else None
        join = state.join
        written = self._held_puids
        for puid in puids:
            rows = pairing.dump_held(puid, index) if join.holds(puid) else None
            if rows is None and puid not in written:
                continue
            key = held_key + puid.encode("utf-8", "surrogatepass")
            if rows is None:
                out[key] = None
                written.discard(puid)
            else:
                out[key] = orjson.dumps([clock, rows])
                written.add(puid)
        pair_key = prefix + _Q
        for seq in self._pair_orphans:
            out[pair_key + str(seq).encode()] = None
        self._pair_orphans = []
        unwritten: set[int] = set()
        formed = pairing.formed
        if formed:
            for comparison, pair in formed:
                if pair.retracted:
                    unwritten.add(pair.seq)  # formed and retracted since the last call
                    continue
                out[pair_key + str(pair.seq).encode()] = orjson.dumps(
                    [index[comparison], snapshot.outcome_row(pair)]
                )
                self._track_pair(comparison, pair)
            formed.clear()
        retracted = pairing.retracted
        if retracted:
            for comparison, pair in retracted:
                if pair.seq in unwritten:
                    continue
                out[pair_key + str(pair.seq).encode()] = None
                if comparison in self._pairs_live:
                    self._pairs_live[comparison] -= 1
            retracted.clear()
        for seq in self._collect_pairs():
            out[pair_key + str(seq).encode()] = None

    def _collect_pairs(self) -> list[int]:
        """Pairs no derived window can hold again and the pair index no longer holds."""
        if not self._pairs_written:
            return []
        return self._collect_from(self._pairs_written, self._pairs_live, self.state.pairing.holds)

    def _collect(self) -> list[int]:
        """Outcomes no derived window can hold again and the join store no longer holds."""
        return self._collect_from(self._written, self._live, self.state.join.holds_outcome)

    def _collect_from(
        self,
        written_by: dict[_K, deque[Outcome]],
        live_by: dict[_K, int],
        holds: Callable[[Outcome], bool],
    ) -> list[int]:
        """The seqs of ``written_by``'s oldest records that are out of every window and
        no longer ``holds``-held, taken off ``written_by`` and counted off ``live_by``."""
        state = self.state
        if state.clock == float("-inf"):
            return []
        horizon = to_tick(state.clock) - self._width_tick if self._width_tick is not None else None
        keep = self._keep
        gone: list[int] = []
        for key, written in written_by.items():
            live = live_by[key]
            while written:
                oldest = written[0]
                if oldest.retracted:
                    written.popleft()
                    continue
                if horizon is not None and oldest.tick > horizon:
                    break
                if keep is not None and live - 1 < keep:
                    break
                if holds(oldest):
                    break
                written.popleft()
                live -= 1
                gone.append(oldest.seq)
            live_by[key] = live
        return gone


class Restorer:
    """Rebuilds one state from its records, read in topic order.

    Args:
        name: the state's name; records of other states are ignored.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = state_prefix(name)
        self._entries: dict[bytes, bytes] = {}
        self._outcomes: dict[bytes, bytes] = {}
        self._windows: dict[bytes, bytes] = {}
        self._models: dict[bytes, bytes] = {}
        self._scalars: bytes | None = None
        self._comparisons: bytes | None = None
        self._aggregates: dict[bytes, bytes] = {}
        self._pairs: dict[bytes, bytes] = {}
        self._held: dict[bytes, bytes] = {}
        # The keyed record kinds and the table each one fills.
        self._tables: dict[bytes, dict[bytes, bytes]] = {
            _E: self._entries,
            _O: self._outcomes,
            _W: self._windows,
            _M: self._models,
            _Q: self._pairs,
            _H: self._held,
            _A: self._aggregates,
        }
        self.records = 0
        self.offsets: dict[str, int] = {}
        """The input offsets the state reflects (``P`` record), by ``"topic/partition"``."""

    def add(self, key: bytes, value: bytes | None) -> None:
        """Take one record (later records of a key replace earlier ones)."""
        if not key.startswith(self.prefix):
            return
        self.records += 1
        at = len(self.prefix)
        kind, rest = key[at : at + 1], key[at + 1 :]
        table = self._tables.get(kind)
        if table is None:
            if kind == _S:
                self._scalars = value
            elif kind == _C:
                self._comparisons = value
            elif kind == _P:
                self.offsets = {} if value is None else dict(orjson.loads(value))
            else:
                raise ChangelogError(f"unknown record kind {kind!r} in key {key!r}")
            return
        if value is None:
            table.pop(rest, None)
        else:
            table[rest] = value

    def keys(self) -> list[bytes]:
        """The key of every record of the state that survives (to delete them all)."""
        prefix = self.prefix
        out = [prefix + _S, prefix + _P, prefix + _C]
        for kind, table in (
            (_E, self._entries),
            (_O, self._outcomes),
            (_W, self._windows),
            (_M, self._models),
            (_Q, self._pairs),
            (_H, self._held),
            (_A, self._aggregates),
        ):
            out.extend(prefix + kind + rest for rest in table)
        return out

    @property
    def empty(self) -> bool:
        """Whether no record of the state survives (a new state)."""
        return self._scalars is None and not self._entries and not self._outcomes

    @property
    def pending(self) -> int:
        """Join entries restored so far (for progress lines)."""
        return len(self._entries)

    def pair_seqs(self) -> list[int]:
        """The seqs of the pair records that survive (for :class:`ChangeTracker`)."""
        return [int(rest) for rest in self._pairs]

    def held_puids(self) -> list[str]:
        """The puids whose pair index record survives (for :class:`ChangeTracker`)."""
        return [rest.decode("utf-8", "surrogatepass") for rest in self._held]

    def build(
        self,
        specs: Sequence[WindowSpec],
        sequence: OutcomeSequence,
        ttl: float,
        time_basis: TimeBasis,
    ) -> tuple[PartitionState, list[int]]:
        """The state the records describe, and the seqs of its ``O`` records.

        Pass both to :class:`ChangeTracker`, which deletes the records of
        outcomes the rebuilt state does not hold.

        Join entries are kept whatever their age: the caller's TTL expiry
        drops those past it, counting them as usual.

        Raises:
            ChangelogError: a record is not of this format or is corrupt.
        """
        try:
            return self._build(specs, sequence, ttl, time_basis)
        except (KeyError, TypeError, ValueError, IndexError, snapshot.SnapshotError) as exc:
            raise ChangelogError(f"corrupt state changelog: {type(exc).__name__}: {exc}") from None

    def _build(
        self,
        specs: Sequence[WindowSpec],
        sequence: OutcomeSequence,
        ttl: float,
        time_basis: TimeBasis,
    ) -> tuple[PartitionState, list[int]]:
        scalars: dict[str, Any] = (
            orjson.loads(self._scalars)
            if self._scalars is not None
            else {
                "format": FORMAT,
                "windows": [],
                "clock": None,
                "sequence": 0,
                "events": {
                    "accepted": {},
                    "duplicate": {},
                    "amended": 0,
                    "invalid": {},
                    "expired": {},
                },
            }
        )
        if scalars.get("format") not in _READS:
            raise ChangelogError(f"state record of format {scalars.get('format')!r}")
        placed = sorted(
            (_placed(orjson.loads(v)) for v in self._outcomes.values()), key=lambda r: r[1][0]
        )
        rows = [row for _, row in placed]
        clock = scalars["clock"]
        clock_tick = to_tick(clock) if clock is not None else None
        by_model: dict[tuple[str, ...], list[list[Any]]] = {}
        for model, row in placed:
            by_model.setdefault(tuple(model), []).append(row)
        saved: dict[tuple[str, ...], dict[str, Any]] = {}
        for raw, value in self._windows.items():
            model, name = orjson.loads(raw)
            saved.setdefault(tuple(model), {})[name] = orjson.loads(value)
        for model, model_rows in by_model.items():
            windows = saved.setdefault(model, {})
            for spec in specs:
                derived = _derived_dump(spec, model_rows, clock_tick)
                if derived is not None:
                    windows[spec.name] = derived
        document = {
            "windows": sorted({spec.name for spec in specs} | set(scalars["windows"])),
            "clock": clock,
            "event_clock": scalars.get("event_clock", clock),
            "sequence": scalars["sequence"],
            "outcomes": rows,
            "join": {
                "ttl": ttl,
                "time_basis": time_basis.value,
                "entries": [orjson.loads(v) for v in self._entries.values()],
            },
            "models": [[list(model), windows] for model, windows in saved.items()],
            "model_counters": [[orjson.loads(k), orjson.loads(v)] for k, v in self._models.items()],
            "events": scalars["events"],
        }
        if self._comparisons is not None:
            document["pairing"], pair_rows = self._pairing_document(specs, clock_tick)
            # The pairs' rows join the outcome table; they are no model's window content.
            table = {row[0]: row for row in rows}
            table.update((row[0], row) for row in pair_rows)
            document["outcomes"] = sorted(table.values(), key=lambda r: r[0])
        state = snapshot.from_document(document, sequence, specs)
        return state, [row[0] for row in rows]

    def _pairing_document(
        self, specs: Sequence[WindowSpec], clock_tick: int | None
    ) -> tuple[dict[str, Any], list[list[Any]]]:
        """:meth:`Pairing.dump`'s document from the ``C``, ``A``, ``Q`` and ``H`` records,
        and the pairs' outcome rows."""
        assert self._comparisons is not None
        comparisons = orjson.loads(self._comparisons)
        windows: list[dict[str, Any]] = [{} for _ in comparisons]
        for raw, value in self._aggregates.items():
            at, name = orjson.loads(raw)
            windows[at][name] = orjson.loads(value)
        placed = sorted((orjson.loads(v) for v in self._pairs.values()), key=lambda p: p[1][0])
        by_comparison: dict[int, list[list[Any]]] = {}
        for at, row in placed:
            by_comparison.setdefault(at, []).append(row)
        for at, pair_rows in by_comparison.items():
            for spec in specs:
                derived = _derived_dump(spec, pair_rows, clock_tick)
                if derived is not None:
                    windows[at][spec.name] = derived
        held = []
        order = []
        for raw, value in self._held.items():
            puid = raw.decode("utf-8", "surrogatepass")
            at_clock, items = orjson.loads(value)
            held.append([puid, items])
            order.append([at_clock if at_clock is not None else 0.0, puid])
        order.sort(key=lambda item: item[0])
        document = {"comparisons": comparisons, "windows": windows, "held": held, "order": order}
        return document, [row for _, row in placed]


def _placed(value: list[Any]) -> tuple[Any, list[Any]]:
    """An ``O`` record's value as ``(model key of its windows, outcome row)``.

    The value is the row alone (its field 1 is the model key) or, when the
    windows' model is another (folded by the caps), and in format 2 always,
    ``[model key, row]``.
    """
    if isinstance(value[0], int):
        return value[1], value
    return value[0], value[1]


def _derived_dump(
    spec: WindowSpec, rows: list[list[Any]], clock_tick: int | None
) -> dict[str, Any] | None:
    """The ``dump()`` of a derived window over the live outcome ``rows`` (by seq).

    ``None`` for a window kind that is not derived (its ``W`` record holds it).
    Row fields: 0 seq, 9 tick.
    """
    if spec.kind is WindowKind.TIME:
        if clock_tick is None:
            return {"clock": -(2**62), "live": [], "future": []}
        low = clock_tick - round(spec.width_s * 1_000_000)
        return {
            "clock": clock_tick,
            "live": [r[0] for r in rows if low < r[9] <= clock_tick],
            "future": [r[0] for r in rows if r[9] > clock_tick],
        }
    if spec.kind is WindowKind.COUNT:
        size = spec.size
        window = rows[-size:] if size else []
        reserve = rows[max(0, len(rows) - 2 * size) : max(0, len(rows) - size)]
        return {"window": [r[0] for r in window], "reserve": [r[0] for r in reserve]}
    return None
