"""Paired outcomes: two predictors' outcomes for the same row, as one 2x2 cell.

When two predictors of one deployment (Seldon's default and its shadow, or
pairs named in the settings) answered the same puid and that puid got
feedback, each row gives one *paired outcome*: whether the baseline was
right and whether the candidate was. A :class:`Pairing` keeps, per
:class:`Comparison`, windows of paired outcomes exactly as a model keeps
windows of outcomes, so the 2x2 table of every window kind is exact under
amendments, retractions and disorder:

* A paired outcome exists while both of its outcomes are applied. When
  either is retracted (an amendment), the pair is retracted from every
  window; the join store applies the replacement in the same step, and the
  replacement forms a new pair. So pairs, like outcomes, are retracted only
  together with as many new ones, which count windows rely on.
* Its time is the later of its two outcomes' times (with feedback time as
  the basis, both usually carry the same feedback's time); its sequence
  number is taken when it forms, so count windows hold the newest pairs in
  the order they formed (the order of the later of the two outcomes).
* It is stored as an :class:`~feedback_stream.outcomes.Outcome` of the
  candidate whose ``truth`` is the baseline's correctness and whose
  ``predicted`` is the candidate's (``"1"`` right, ``"0"`` wrong), so the
  confusion cells of a window's :class:`~feedback_stream.metrics.Counts`
  *are* the 2x2 table, and the windows and snapshots of models serve pairs
  unchanged. A pair where either correctness is unknown has no truth: it
  takes a place in count windows (as an unknown outcome does) but no cell.

A puid's outcomes share one partition state (the join routes by puid), so
pairing is partition-scoped; the state is serialised with the partition
(:mod:`feedback_stream.snapshot`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from feedback_stream.events import ModelKey
from feedback_stream.join import Sequence as OutcomeSequence
from feedback_stream.metrics import Counts
from feedback_stream.outcomes import Outcome
from feedback_stream.paired_statistics import PairTable
from feedback_stream.windows import ModelWindows, WindowSpec

__all__ = [
    "DEFAULT_BASELINE",
    "Comparison",
    "PairRule",
    "Pairing",
    "pair_table",
    "parse_pair_rules",
]

DEFAULT_BASELINE: Final = "default"
"""The predictor that is the baseline of automatic comparisons (Seldon's default)."""

RIGHT: Final = "1"
WRONG: Final = "0"


class Comparison:
    """A baseline model and a candidate model of one deployment.

    Immutable (``Final`` attributes), hashable, ordered by (baseline,
    candidate). A plain class rather than a frozen dataclass: one is made
    and hashed per paired outcome, and compiled (mypyc) its constructor is
    native code and its hash a stored field, where a dataclass's would run
    interpreted.
    """

    __slots__ = ("_hash", "baseline", "candidate")

    def __init__(self, baseline: ModelKey, candidate: ModelKey) -> None:
        self.baseline: Final = baseline
        self.candidate: Final = candidate
        self._hash: Final = hash((baseline, candidate))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Comparison):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.baseline == other.baseline
            and self.candidate == other.candidate
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def _fields(self) -> tuple[ModelKey, ModelKey]:
        return (self.baseline, self.candidate)

    def __lt__(self, other: Comparison) -> bool:
        return self._fields() < other._fields()

    def __le__(self, other: Comparison) -> bool:
        return self._fields() <= other._fields()

    def __gt__(self, other: Comparison) -> bool:
        return self._fields() > other._fields()

    def __ge__(self, other: Comparison) -> bool:
        return self._fields() >= other._fields()

    def __reduce__(self) -> tuple[type[Comparison], tuple[ModelKey, ModelKey]]:
        return (Comparison, self._fields())  # the hash is per process: recompute it

    def __repr__(self) -> str:
        return f"Comparison(baseline={self.baseline!r}, candidate={self.candidate!r})"

    @property
    def namespace(self) -> str:
        return self.baseline.namespace

    @property
    def deployment(self) -> str:
        return self.baseline.deployment


@dataclass(frozen=True, slots=True)
class PairRule:
    """``baseline->candidate`` predictor names from the settings."""

    baseline: str
    candidate: str


def parse_pair_rules(texts: Iterable[str]) -> tuple[PairRule, ...]:
    """``["default->shadow", ...]`` as rules.

    Raises:
        ValueError: an item is not ``baseline->candidate`` with two different names.
    """
    rules = []
    for text in texts:
        baseline, arrow, candidate = text.partition("->")
        baseline, candidate = baseline.strip(), candidate.strip()
        if not arrow or not baseline or not candidate or baseline == candidate:
            raise ValueError(
                f"{text!r} is not a comparison: expected baseline->candidate predictor names, "
                "like default->shadow"
            )
        rules.append(PairRule(baseline, candidate))
    return tuple(rules)


def comparisons_of(a: ModelKey, b: ModelKey, rules: Sequence[PairRule]) -> tuple[Comparison, ...]:
    """The comparisons two models of one puid take part in (either orientation).

    Without rules, any two predictors of one deployment are compared: the
    predictor named ``default`` is the baseline, else the first by name.
    """
    if (a.namespace, a.deployment) != (b.namespace, b.deployment) or a.predictor == b.predictor:
        return ()
    if rules:
        found = []
        for rule in rules:
            if rule.baseline == a.predictor and rule.candidate == b.predictor:
                found.append(Comparison(a, b))
            elif rule.baseline == b.predictor and rule.candidate == a.predictor:
                found.append(Comparison(b, a))
        return tuple(found)
    if b.predictor == DEFAULT_BASELINE or (
        a.predictor != DEFAULT_BASELINE and b.predictor < a.predictor
    ):
        return (Comparison(b, a),)
    return (Comparison(a, b),)


def _correctness(correct: bool | None) -> str | None:
    if correct is None:
        return None
    return RIGHT if correct else WRONG


def pair_table(counts: Counts) -> PairTable:
    """The 2x2 table held in a pair window's counts (see the module docstring)."""
    cells = counts.confusion
    return PairTable(
        both_right=cells.get((RIGHT, RIGHT), 0),
        baseline_only=cells.get((RIGHT, WRONG), 0),
        candidate_only=cells.get((WRONG, RIGHT), 0),
        both_wrong=cells.get((WRONG, WRONG), 0),
    )


@dataclass(slots=True, eq=False)
class _Held:
    """The pair currently formed from a baseline and a candidate outcome."""

    pair: Outcome
    baseline_seq: int
    candidate_seq: int

    def __init__(self, pair: Outcome, baseline_seq: int, candidate_seq: int) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code.
        self.pair = pair
        self.baseline_seq = baseline_seq
        self.candidate_seq = candidate_seq


AppliedOf = Callable[[str], Mapping[ModelKey, Sequence[Outcome]]]
"""puid -> the outcomes the join store currently applies for it, per model."""


class Pairing:
    """The paired outcomes of one partition state, with the windows of each comparison.

    Args:
        specs: the windows every comparison gets (the models' windows).
        rules: named comparisons; empty: every predictor pair (see :func:`comparisons_of`).
        sequence: the engine's outcome sequence (pairs take numbers from it too).
    """

    def __init__(
        self,
        specs: Sequence[WindowSpec],
        rules: Sequence[PairRule],
        sequence: OutcomeSequence,
    ) -> None:
        self.specs = tuple(specs)
        self.rules = tuple(rules)
        self.sequence = sequence
        self.windows: dict[Comparison, ModelWindows] = {}
        self._held: dict[str, dict[tuple[Comparison, int], _Held]] = {}
        # puids in the order they were first held, with the clock then: expiry checks.
        self._order: deque[tuple[float, str]] = deque()
        self.formed: list[tuple[Comparison, Outcome]] | None = None
        """Pairs formed since the changelog last took them (``None``: not collected)."""
        self.retracted: list[tuple[Comparison, Outcome]] | None = None
        """Pairs retracted since the changelog last took them (``None``: not collected)."""

    def _windows(self, comparison: Comparison) -> ModelWindows:
        windows = self.windows.get(comparison)
        if windows is None:
            windows = self.windows[comparison] = ModelWindows(self.specs)
        return windows

    def update(
        self,
        retracted: Sequence[Outcome],
        applied: Sequence[Outcome],
        applied_of: AppliedOf,
        clock: float,
        clock_tick: int,
    ) -> None:
        """Move pairs after the join retracted and applied these outcomes.

        ``applied_of`` reads the join store *after* the event, so a pair is
        formed with whatever partner outcome is applied now, in whichever
        order the two outcomes came.
        """
        for outcome in retracted:
            held = self._held.get(outcome.puid)
            if not held:
                continue
            for slot in [s for s in held if s[1] == outcome.row]:
                item = held[slot]
                if outcome.seq in (item.baseline_seq, item.candidate_seq):
                    self._windows(slot[0]).retract(item.pair)
                    del held[slot]
                    if self.retracted is not None:
                        self.retracted.append((slot[0], item.pair))
        if not applied:
            return
        current = applied_of(applied[0].puid)  # one event: one puid
        if len(current) < 2:
            return
        for outcome in applied:
            for key, outcomes in current.items():
                if key == outcome.key:
                    continue
                for comparison in comparisons_of(outcome.key, key, self.rules):
                    if outcome.row < len(outcomes):
                        self._form(comparison, outcome, outcomes[outcome.row], clock, clock_tick)

    def _form(
        self,
        comparison: Comparison,
        outcome: Outcome,
        partner: Outcome,
        clock: float,
        clock_tick: int,
    ) -> None:
        if outcome.key == comparison.baseline:
            baseline, candidate = outcome, partner
        else:
            baseline, candidate = partner, outcome
        held = self._held.get(outcome.puid)
        if held is None:
            held = self._held[outcome.puid] = {}
            self._order.append((clock, outcome.puid))
        slot = (comparison, outcome.row)
        windows = self._windows(comparison)
        existing = held.get(slot)
        if (
            existing is not None
            and existing.baseline_seq == baseline.seq
            and existing.candidate_seq == candidate.seq
        ):
            return  # both outcomes applied in one step: formed on the first
        # Any other pair in the slot is from an earlier life of the puid (its join
        # entry expired and the puid came back): final, like its outcomes.
        baseline_right = _correctness(baseline.correct)
        candidate_right = _correctness(candidate.correct)
        known = baseline_right is not None and candidate_right is not None
        later = baseline if baseline.tick >= candidate.tick else candidate
        pair = Outcome(
            key=candidate.key,
            puid=candidate.puid,
            row=candidate.row,
            predicted=candidate_right if candidate_right is not None else "",
            truth=baseline_right if known else None,
            correct=(baseline_right == candidate_right) if known else None,
            reward=None,
            time=later.time,
            tick=later.tick,
            response_time=candidate.response_time,
            feedback_time=max(baseline.feedback_time, candidate.feedback_time),
            request_time=candidate.request_time,
            seq=self.sequence.take(1),
        )
        held[slot] = _Held(pair, baseline.seq, candidate.seq)
        windows.advance(clock_tick)
        windows.apply(pair)
        if self.formed is not None:
            self.formed.append((comparison, pair))

    def advance(self, now_tick: int) -> None:
        for windows in self.windows.values():
            windows.advance(now_tick)

    def forget(self, now: float, ttl: float, holds: Callable[[str], bool]) -> None:
        """Drop the pairs of puids the join store no longer holds (they cannot change).

        Pairs stay in the windows; only the index that finds them for a
        retraction goes. Checked for puids held longer than ``ttl``.
        """
        order = self._order
        while order and order[0][0] + ttl < now:
            _, puid = order.popleft()
            if puid not in self._held:
                continue
            if holds(puid):
                order.append((now, puid))
            else:
                del self._held[puid]

    def counts(self, comparison: Comparison, name: str, now_tick: int) -> Counts:
        windows = self.windows.get(comparison)
        if windows is None:
            return Counts()
        return windows.counts(name, now_tick)

    # ------------------------------------------------------------ snapshot support

    def referenced(self) -> Iterator[Outcome]:
        """Every pair a window or the index still holds (for snapshots)."""
        for windows in self.windows.values():
            yield from windows.referenced()
        for held in self._held.values():
            for item in held.values():
                yield item.pair

    def dump(self) -> dict[str, Any]:
        """Plain data; pairs by sequence number (their fields go in the outcome table)."""
        comparisons = list(self.windows)
        index = {c: i for i, c in enumerate(comparisons)}
        return {
            "comparisons": [[_key_list(c.baseline), _key_list(c.candidate)] for c in comparisons],
            "windows": [
                {name: w.dump() for name, w in self.windows[c].windows.items()} for c in comparisons
            ],
            "held": [
                [
                    puid,
                    [
                        [index[c], row, h.pair.seq, h.baseline_seq, h.candidate_seq]
                        for (c, row), h in held.items()
                    ],
                ]
                for puid, held in self._held.items()
            ],
            "order": [[t, puid] for t, puid in self._order],
        }

    # ------------------------------------------------------------ changelog support

    def comparisons(self) -> list[Comparison]:
        """The comparisons in the order they appeared (an index into it is stable)."""
        return list(self.windows)

    def held_pairs(self) -> dict[int, tuple[Comparison, Outcome]]:
        """Every pair the index holds for a retraction, by sequence number."""
        return {
            item.pair.seq: (slot[0], item.pair)
            for held in self._held.values()
            for slot, item in held.items()
        }

    def window_pairs(self) -> Iterator[tuple[Comparison, Outcome]]:
        """Every live pair a window still holds, with its comparison."""
        for comparison, windows in self.windows.items():
            for pair in windows.referenced():
                yield comparison, pair

    def holds(self, pair: Outcome) -> bool:
        """Whether the index still holds ``pair`` (a retraction may still find it)."""
        held = self._held.get(pair.puid)
        return held is not None and any(item.pair is pair for item in held.values())

    def dump_held(self, puid: str, index: Mapping[Comparison, int]) -> list[list[int]] | None:
        """The index entries of one puid as rows of :meth:`dump`'s ``held``, or ``None``.

        ``index`` gives each comparison's position in :meth:`comparisons`.
        """
        held = self._held.get(puid)
        if not held:
            return None
        return [
            [index[c], row, h.pair.seq, h.baseline_seq, h.candidate_seq]
            for (c, row), h in held.items()
        ]

    def load(
        self, data: Mapping[str, Any], outcomes: dict[int, Outcome], saved: Iterable[str]
    ) -> None:
        """Refill an empty pairing from :meth:`dump`; ``saved``: window names it has."""
        saved_names = set(saved)
        comparisons = [Comparison(ModelKey(*b), ModelKey(*c)) for b, c in data["comparisons"]]
        for comparison, windows in zip(comparisons, data["windows"], strict=True):
            model = self._windows(comparison)
            for name, window in model.windows.items():
                if name in saved_names and name in windows:
                    window.load(windows[name], outcomes)
        for puid, items in data["held"]:
            self._held[puid] = {
                (comparisons[c], row): _Held(outcomes[seq], b, k) for c, row, seq, b, k in items
            }
        self._order = deque((t, puid) for t, puid in data["order"])


def _key_list(key: ModelKey) -> list[str]:
    return [key.namespace, key.deployment, key.predictor, key.model]
