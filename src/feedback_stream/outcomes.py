"""What one row of a joined (response, feedback) pair says about a model.

An :class:`Outcome` is the unit every window counts and every retraction
takes back. It is built only by :func:`pair_outcomes`, which holds the
feedback rules of EVENTS.md §3 in one place: truth beats reward, a reward
of 1 without truth means "every row right", a reward of 0 without truth
means "every row wrong, true class unknown", anything else says nothing
about correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from feedback_stream.events import ModelKey
from feedback_stream.scores import ModelKind, ResponseScores, Term

__all__ = [
    "UNCLASSIFIED",
    "Outcome",
    "OutcomeResult",
    "TimeBasis",
    "is_conflict",
    "pair_outcomes",
    "to_tick",
]

TICKS_PER_SECOND: Final = 1_000_000

UNCLASSIFIED: Final = "\x00unclassified"
"""The predicted "class" of a response that holds no classes (Seldon ``jsonData``,
``strData``, ``binData``): one row whose class is unknown. A reward still says
whether it was right; a truth cannot be compared with it (an ``unscorable`` pair).
"""


def to_tick(seconds: float) -> int:
    """Seconds since the epoch as integer microseconds.

    Window bounds ``T - W < t <= T`` are compared on these integers, so that
    a millisecond Kafka timestamp is never on the wrong side of a bound
    because of a binary fraction.
    """
    return round(seconds * TICKS_PER_SECOND)


class OutcomeResult(StrEnum):
    """The ``result`` label of the outcome counters."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNKNOWN = "unknown"


class TimeBasis(StrEnum):
    """Which event's time places an outcome in the time windows."""

    FEEDBACK = "feedback"
    REQUEST = "request"


@dataclass(slots=True, eq=False)
class Outcome:
    """One row of one joined (response, feedback) pair.

    ``truth`` is the true class when known (given, or implied by reward 1);
    ``correct`` is ``None`` when the feedback says nothing about this row.
    ``reward`` is set on row 0 only, so that reward statistics count each
    pair once. ``time`` is the window time (feedback or request time, per
    :class:`TimeBasis`) and ``tick`` the same in microseconds. ``seq`` orders
    outcomes by when they were applied (count windows keep the newest);
    ``retracted`` is set once an amendment has taken the outcome back, so
    that windows evicting it later know its counts are already gone.
    ``term`` is what the outcome adds to score-based metrics (log loss,
    ROC AUC, regression errors; :mod:`feedback_stream.scores`), ``None``
    when its response had no scores or its truth is unknown. A regression
    outcome has no ``truth`` class and no ``correct``: its truth is in
    ``term``.
    Row 0 of a pair also says whether the pair's reward contradicts its
    truth (``conflict``) and, for a logged response, the label delay
    (feedback time - response time, seconds), so that counters of the
    pairs currently applied follow amendments.
    """

    key: ModelKey
    puid: str
    row: int
    predicted: str
    truth: str | None
    correct: bool | None
    reward: float | None
    time: float
    tick: int
    response_time: float
    feedback_time: float
    request_time: float | None
    seq: int
    retracted: bool = False
    term: Term | None = None
    conflict: bool = False
    label_delay: float | None = None

    def __init__(
        self,
        key: ModelKey,
        puid: str,
        row: int,
        predicted: str,
        truth: str | None,
        correct: bool | None,
        reward: float | None,
        time: float,
        tick: int,
        response_time: float,
        feedback_time: float,
        request_time: float | None,
        seq: int,
        retracted: bool = False,
        term: Term | None = None,
        conflict: bool = False,
        label_delay: float | None = None,
    ) -> None:
        # Written out: compiled (mypyc), an explicit __init__ is native code, a
        # dataclass's generated one runs interpreted (one outcome per joined row).
        self.key = key
        self.puid = puid
        self.row = row
        self.predicted = predicted
        self.truth = truth
        self.correct = correct
        self.reward = reward
        self.time = time
        self.tick = tick
        self.response_time = response_time
        self.feedback_time = feedback_time
        self.request_time = request_time
        self.seq = seq
        self.retracted = retracted
        self.term = term
        self.conflict = conflict
        self.label_delay = label_delay

    @property
    def result(self) -> OutcomeResult:
        if self.correct is None:
            return OutcomeResult.UNKNOWN
        return OutcomeResult.CORRECT if self.correct else OutcomeResult.INCORRECT


def pair_outcomes(
    key: ModelKey,
    puid: str,
    predicted: tuple[str, ...],
    truth: tuple[str, ...] | None,
    reward: float | None,
    time: float,
    response_time: float,
    feedback_time: float,
    request_time: float | None,
    first_seq: int,
    scores: ResponseScores | None = None,
) -> tuple[Outcome, ...]:
    """The outcomes of one (response, feedback) pair; ``truth`` must match the rows.

    Sequence numbers ``first_seq``, ``first_seq + 1``, ... go to the rows.
    With ``scores``, each row whose true class is known (given, or implied
    by a reward of 1) gets its term; a regression row takes its truth from
    the feedback's truth only (a reward says nothing about a number).
    A row predicted :data:`UNCLASSIFIED` takes no truth (pass ``None``): a
    reward of 1 makes it correct with its true class unknown.
    """
    tick = to_tick(time)
    outcomes: list[Outcome] = []
    regression = scores is not None and scores.kind is ModelKind.REGRESSION
    for row, pred in enumerate(predicted):
        true_class: str | None
        correct: bool | None
        term: Term | None = None
        if regression:
            assert scores is not None
            true_class = correct = None
            if truth is not None:
                term = scores.term(row, truth[row])
        elif truth is not None:
            true_class = truth[row]
            correct = true_class == pred
        elif reward == 1.0:
            # Right, and so the true class is the predicted one, unless that is unknown.
            true_class, correct = (None if pred == UNCLASSIFIED else pred), True
        elif reward == 0.0:
            true_class, correct = None, False
        else:
            true_class, correct = None, None
        if scores is not None and true_class is not None and not regression:
            term = scores.term(row, true_class)
        outcomes.append(
            Outcome(
                key,
                puid,
                row,
                pred,
                true_class,
                correct,
                reward if row == 0 else None,
                time,
                tick,
                response_time,
                feedback_time,
                request_time,
                first_seq + row,
                False,
                term,
            )
        )
    return tuple(outcomes)


def is_conflict(
    predicted: tuple[str, ...], truth: tuple[str, ...] | None, reward: float | None
) -> bool:
    """Whether a feedback's reward contradicts its own truth (EVENTS.md §3).

    Reward 1 with some row wrong, or reward 0 with every row right; other
    rewards (bandit-style) and feedback without truth never conflict.
    """
    if truth is None or reward is None:
        return False
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truth rows for {len(predicted)} predicted rows")
    all_right = truth == predicted  # tuples of classes, row by row
    return (reward == 1.0 and not all_right) or (reward == 0.0 and all_right)
