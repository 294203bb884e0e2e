"""The plan of a stream: who answers, what is true, what feedback comes when.

The outcomes the core should compute follow from the plan alone, so
:func:`intended_outcomes` replays this layer without rendering a record.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from feedback_stream.encode import uuid_from_int
from feedback_stream.events import ModelKey
from feedback_stream.generator._config import (
    DelayDistribution,
    DeploymentSpec,
    FeedbackScope,
    GeneratorConfig,
    PredictorSpec,
)


@dataclass(frozen=True, slots=True)
class IntendedOutcome:
    """One row outcome the core should compute from the stream, by EVENTS.md §3.

    The last feedback of a (response, feedback) pair wins (amendments).
    ``truth`` is None where a reward of 0 without truth leaves the true class
    unknown; ``reward`` is set on row 0 of a pair only; ``time`` is the
    feedback's event time in seconds. Outcomes whose feedback comes later
    than the core's join TTL after the response are listed all the same.
    """

    key: ModelKey
    puid: str
    row: int
    predicted: str
    truth: str | None
    correct: bool
    reward: float | None
    time: float


@dataclass(slots=True)
class Answer:
    """One predictor's response to a planned request."""

    predictor: PredictorSpec
    key: ModelKey
    predicted: list[int]
    time_ms: int


@dataclass(slots=True)
class Feedback:
    """One planned feedback event (an amendment is a second one, later)."""

    time_ms: int
    answer: Answer | None  # None: names no model, joins every answer
    truth: list[int] | None
    reward: int
    amendment: bool


@dataclass(slots=True)
class Plan:
    """One request of the stream and everything that follows from it."""

    puid: str
    deployment: DeploymentSpec
    time_ms: int
    truth: list[int]
    answers: list[Answer]
    log_request: bool
    feedbacks: list[Feedback] = field(default_factory=list)


def _cumulative(weights: Iterable[float]) -> list[float]:
    cum = list(itertools.accumulate(weights))
    if cum[-1] <= 0:
        raise ValueError("weights must not all be zero")
    return cum


def _pick(cum: list[float], u: float) -> int:
    return min(bisect.bisect_right(cum, u * cum[-1]), len(cum) - 1)


def _delay_ms(rng: random.Random, kind: DelayDistribution, mean_s: float) -> int:
    u = rng.random()  # one draw whatever the distribution: the plan stays aligned
    if kind == "fixed":
        return round(mean_s * 1000)
    if kind == "uniform":
        return round(u * 2 * mean_s * 1000)
    return round(-mean_s * 1000 * _log1m(u))


def _log1m(u: float) -> float:
    return math.log1p(-u)


def plans(config: GeneratorConfig) -> Iterator[Plan]:
    """The requests, answers and feedback of the stream, in request order."""
    rng = random.Random(f"feedback-stream/{config.seed}/plan")
    dep_cum = _cumulative(d.weight for d in config.deployments)
    class_cums = [
        _cumulative(d.class_weights) if d.class_weights else None for d in config.deployments
    ]
    routed = [[p for p in d.predictors if not p.shadow] for d in config.deployments]
    route_cums = [_cumulative(p.traffic for p in r) for r in routed]
    # Amendments come after every delivery delay of the original, so that
    # "later" is the same in event time and in delivery order.
    separation_ms = round((config.disorder_max_s + config.duplicate_delay_max_s) * 1000) + 1
    gap_s = 1.0 / config.request_rate
    t = float(config.start_ms)
    for i in range(config.n_requests):
        u_gap = rng.random()
        if config.arrivals == "poisson":
            t += -gap_s * 1000 * _log1m(u_gap)
        else:
            t = config.start_ms + i * gap_s * 1000
        time_ms = int(t)
        d_index = _pick(dep_cum, rng.random())
        dep = config.deployments[d_index]
        k = dep.n_classes
        class_cum = class_cums[d_index]
        puid = uuid_from_int(rng.getrandbits(128))
        batch = rng.randint(config.batch_min, config.batch_max)
        if class_cum is None:
            truth = [int(rng.random() * k) for _ in range(batch)]
        else:
            truth = [_pick(class_cum, rng.random()) for _ in range(batch)]
        primary = routed[d_index][_pick(route_cums[d_index], rng.random())]
        answers = []
        for p in dep.predictors:
            if p is not primary and not p.shadow:
                continue
            predicted = []
            for c in truth:
                u_ok, u_wrong = rng.random(), rng.random()
                predicted.append(c if u_ok < p.accuracy else (c + 1 + int(u_wrong * (k - 1))) % k)
            latency = round(-config.latency_mean_s * 1000 * _log1m(rng.random()))
            answers.append(Answer(p, dep.model_key(p), predicted, time_ms + latency))
        plan = Plan(puid, dep, time_ms, truth, answers, rng.random() < config.request_share)
        u_feedback, u_truth, u_amend = rng.random(), rng.random(), rng.random()
        delay = _delay_ms(rng, config.feedback_delay, config.feedback_delay_mean_s)
        amend_delay = _delay_ms(rng, config.feedback_delay, config.feedback_delay_mean_s)
        corrected = []
        for c in truth:
            u_keep, u_class = rng.random(), rng.random()
            corrected.append(c if u_keep < 0.5 else int(u_class * k))
        if u_feedback < config.feedback_share:
            first = next(a for a in answers if a.predictor is primary)
            fb_time = first.time_ms + delay
            given = truth if u_truth < config.truth_share else None
            _add_feedback(plan, config.feedback_scope, first, fb_time, given, amendment=False)
            if u_amend < config.amendment_share:
                amend_time = fb_time + separation_ms + amend_delay
                _add_feedback(
                    plan, config.feedback_scope, first, amend_time, corrected, amendment=True
                )
        yield plan


def _add_feedback(
    plan: Plan,
    scope: FeedbackScope,
    primary: Answer,
    time_ms: int,
    truth: list[int] | None,
    *,
    amendment: bool,
) -> None:
    """Add one feedback per answer (``predictor`` scope) or one naming no model.

    The reward is 1 when every row of the judged answer is right: against
    the given truth, or, for a reward-only feedback, against the real one.
    A deployment-wide feedback judges the answer the user got, the routed
    predictor's, and the core applies that reward to every answer.
    """
    against = truth if truth is not None else plan.truth
    if scope == "deployment":
        reward = int(primary.predicted == against)
        plan.feedbacks.append(Feedback(time_ms, None, truth, reward, amendment))
        return
    for answer in plan.answers:
        reward = int(answer.predicted == against)
        plan.feedbacks.append(Feedback(time_ms, answer, truth, reward, amendment))


def intended_outcomes(config: GeneratorConfig) -> list[IntendedOutcome]:
    """The row outcomes the core should compute from :func:`generate_records` (same config).

    Cheap: it replays only the plan, none of the payloads or delivery.
    """
    out: list[IntendedOutcome] = []
    for plan in plans(config):
        if not plan.feedbacks:
            continue
        labels = plan.deployment.labels
        for answer in plan.answers:
            final = None
            for fb in plan.feedbacks:
                if fb.answer is None or fb.answer is answer:
                    final = fb
            if final is None:
                continue
            when = final.time_ms / 1000
            for row, pred in enumerate(answer.predicted):
                if final.truth is not None:
                    truth: str | None = labels[final.truth[row]]
                    correct = final.truth[row] == pred
                else:
                    correct = final.reward == 1
                    truth = labels[pred] if correct else None
                reward = float(final.reward) if row == 0 else None
                out.append(
                    IntendedOutcome(
                        answer.key, plan.puid, row, labels[pred], truth, correct, reward, when
                    )
                )
    return out
