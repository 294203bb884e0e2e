"""Serialise a :class:`PartitionState` to bytes and back (versioned orjson).

A snapshot is what a checkpoint stores and what moves with a partition on a
rebalance: the join store (pending parts, joined outcomes still amendable,
dedupe hashes), every model's windows, the paired outcomes of comparisons
(:mod:`feedback_stream.paired`), the counters and the clock.

Outcomes are written once, in a table keyed by sequence number, and the
join store and windows refer to them by number, so that the restored state
shares one object per outcome as the original did (a retraction must reach
the same object in the join store and in every window).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from feedback_stream.events import ModelKey
from feedback_stream.join import JoinStore
from feedback_stream.join import Sequence as OutcomeSequence
from feedback_stream.outcomes import Outcome, TimeBasis
from feedback_stream.partition import EventCounters, ModelCounters, PartitionState
from feedback_stream.scores import term_from_list
from feedback_stream.windows import ModelWindows, WindowSpec

__all__ = [
    "FORMAT",
    "VERSION",
    "SnapshotError",
    "dumps",
    "from_document",
    "loads",
    "outcome_row",
]

FORMAT: Final = "feedback-stream/partition-state"
VERSION: Final = 3


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can read."""


def _key(key: ModelKey) -> list[str]:
    return [key.namespace, key.deployment, key.predictor, key.model]


def outcome_row(o: Outcome) -> list[Any]:
    """One outcome as the row the snapshot's (and the changelog's) outcome table holds."""
    return [
        o.seq,
        _key(o.key),
        o.puid,
        o.row,
        o.predicted,
        o.truth,
        o.correct,
        o.reward,
        o.time,
        o.tick,
        o.response_time,
        o.feedback_time,
        o.request_time,
        None if o.term is None else o.term.to_list(),
        o.conflict,
        o.label_delay,
    ]


def dumps(state: PartitionState) -> bytes:
    """The whole state of one partition as bytes."""
    referenced = {outcome.seq: outcome for outcome in state.join.held_outcomes()}
    join = state.join.dump()
    models = []
    for key, windows in state.models.items():
        for outcome in windows.referenced():
            referenced[outcome.seq] = outcome
        models.append([_key(key), {name: w.dump() for name, w in windows.windows.items()}])
    for outcome in state.pairing.referenced():
        referenced[outcome.seq] = outcome
    outcomes = [outcome_row(o) for o in sorted(referenced.values(), key=lambda o: o.seq)]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "windows": [spec.name for spec in state.specs],
        "clock": state.clock if state.clock != float("-inf") else None,
        "event_clock": state.event_clock if state.event_clock != float("-inf") else None,
        "sequence": state.sequence.next,
        "outcomes": outcomes,
        "join": join,
        "models": models,
        "model_counters": [[_key(k), c.to_dict()] for k, c in state.model_counters.items()],
        "events": state.events.to_dict(),
        "pairing": state.pairing.dump(),
    }
    return orjson.dumps(document)


def loads(
    data: bytes,
    sequence: OutcomeSequence | None = None,
    windows: Sequence[WindowSpec] | None = None,
) -> PartitionState:
    """Rebuild a state from :func:`dumps` output.

    Args:
        data: the snapshot.
        sequence: the engine's outcome sequence, moved past every restored outcome.
        windows: the windows wanted now; those the snapshot also has are
            restored, new ones start empty, missing ones are dropped.

    Raises:
        SnapshotError: not a snapshot, or a version this code cannot read.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"not a snapshot: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SnapshotError("not a feedback-stream partition snapshot")
    if document.get("version") != VERSION:
        raise SnapshotError(
            f"snapshot version {document.get('version')!r} is not supported (expected {VERSION})"
        )
    return from_document(document, sequence, windows)


def from_document(
    document: dict[str, Any],
    sequence: OutcomeSequence | None = None,
    windows: Sequence[WindowSpec] | None = None,
) -> PartitionState:
    """Rebuild a state from the parsed document (as :func:`loads`, after its checks).

    The changelog's restore assembles this document from its records.

    Raises:
        SnapshotError: a field is missing or malformed.
    """
    try:
        return _rebuild(document, sequence, windows)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from None


def _rebuild(
    document: dict[str, Any],
    sequence: OutcomeSequence | None,
    windows: Sequence[WindowSpec] | None,
) -> PartitionState:
    saved_specs = [WindowSpec.parse(name) for name in document["windows"]]
    specs = tuple(windows) if windows is not None else tuple(saved_specs)
    sequence = sequence if sequence is not None else OutcomeSequence()
    sequence.ensure_above(document["sequence"] - 1)
    keys: dict[tuple[str, ...], ModelKey] = {}

    def model_key(parts: list[str]) -> ModelKey:
        found = keys.get(tuple(parts))
        if found is None:
            found = keys[tuple(parts)] = ModelKey(*parts)
        return found

    outcomes: dict[int, Outcome] = {}
    for (
        seq,
        key,
        puid,
        row,
        pred,
        truth,
        correct,
        reward,
        time,
        tick,
        rt,
        ft,
        qt,
        *more,
    ) in document["outcomes"]:
        term = term_from_list(more[0]) if more and more[0] is not None else None
        outcome = Outcome(
            model_key(key),
            puid,
            row,
            pred,
            truth,
            correct,
            reward,
            time,
            tick,
            rt,
            ft,
            qt,
            seq,
            term=term,
        )
        outcome.conflict, outcome.label_delay = more[1], more[2]
        outcomes[seq] = outcome
        sequence.ensure_above(seq)
    join_data = document["join"]
    state = PartitionState(specs, join_data["ttl"], TimeBasis(join_data["time_basis"]), sequence)
    state.join = JoinStore.load(join_data, outcomes, sequence)
    clock = document["clock"]
    state.clock = float("-inf") if clock is None else clock
    # A state saved before the event clock was kept resumes from its read clock.
    event_clock = document.get("event_clock", clock)
    state.event_clock = float("-inf") if event_clock is None else event_clock
    saved_names = {spec.name for spec in saved_specs}
    for key_parts, saved in document["models"]:
        model = ModelWindows(specs)
        for name, window in model.windows.items():
            if name in saved_names and name in saved:
                window.load(saved[name], outcomes)
        state.models[model_key(key_parts)] = model
    for key_parts, counters in document["model_counters"]:
        state.model_counters[model_key(key_parts)] = ModelCounters.from_dict(counters)
    state.events = EventCounters.from_dict(document["events"])
    pairing = document.get("pairing")  # absent in snapshots taken before comparisons
    if pairing is not None:
        state.pairing.load(pairing, outcomes, saved_names)
    return state
