"""Random Seldon event streams and a brute-force reference for the core's property tests.

:func:`streams` draws replay records (Kafka records as consumed) with
disorder, duplicates, amendments, multi-row batches, feedback without truth
or with a mismatched row count, several models per puid, and gaps longer
than the TTL. Each record carries the meaning it was built from, so the
reference never decodes.

:func:`reference` replays the same records naively: it recomputes every
puid's winners from all its events after each event, and keeps every live
outcome in one list. The windows are then cut from that list by their
definitions and the metrics computed by scikit-learn, so the engine's
incremental windows and counts are checked against an oracle that shares
none of their code.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from feedback_stream.events import ModelKey
from feedback_stream.outcomes import to_tick
from feedback_stream.windows import WindowKind, WindowSpec

KEYS = (
    ModelKey("seldon", "iris", "default", "clf"),
    ModelKey("seldon", "iris", "default", "tf"),
    ModelKey("seldon", "iris", "shadow", "clf"),
)
CLASSES = ("a", "b", "c")
SELDON_TYPES = {
    "request": "io.seldon.serving.inference.request",
    "response": "io.seldon.serving.inference.response",
    "feedback": "io.seldon.serving.feedback",
}


@dataclass(frozen=True)
class Meaning:
    """What a record says, as the reference reads it."""

    kind: str
    puid: str
    key: ModelKey
    time: float
    identity: tuple[str, ...]
    classes: tuple[str, ...] | None = None
    reward: float | None = None
    named: bool = False


@dataclass
class Stream:
    records: list[dict[str, Any]]
    meanings: list[Meaning]

    def lines(self) -> list[bytes]:
        return [orjson.dumps(r) for r in self.records]


def _scores(cls: str, names: bool, index_of: dict[str, int]) -> list[float]:
    hot = index_of[cls]
    return [0.7 if i == hot else 0.1 for i in range(len(CLASSES))]


def _rows_payload(classes: list[str], style: int) -> dict[str, Any]:
    index_of = {c: i for i, c in enumerate(CLASSES)}
    if style == 0:
        return {"names": list(CLASSES), "ndarray": [_scores(c, True, index_of) for c in classes]}
    if style == 1:
        return {"ndarray": list(classes)}
    return {"ndarray": [[c] for c in classes]}


@st.composite
def streams(draw: st.DrawFn, max_puids: int = 8) -> Stream:
    """A shuffled stream of replay records with the meaning of each."""
    built: list[tuple[dict[str, Any], Meaning, bool]] = []  # record, meaning, has id
    n_puids = draw(st.integers(1, max_puids))
    event_no = 0

    def add(
        kind: str, puid: str, key: ModelKey, time_ms: int, payload: Any, **meaning: Any
    ) -> None:
        nonlocal event_no
        event_no += 1
        with_id = draw(st.booleans())
        headers = {
            "type": SELDON_TYPES[kind],
            "content-type": "application/json",
            "requestid": puid,
            "inferenceservicename": key.deployment,
            "namespace": key.namespace,
        }
        if key.predictor:
            headers["endpoint"] = key.predictor
        if key.model:
            headers["modelid"] = key.model
        if with_id:
            headers = {f"ce_{k}" if k != "content-type" else k: v for k, v in headers.items()}
            headers["ce_id"] = f"id-{event_no}"
            headers["ce_specversion"] = "1.0"
            identity: tuple[str, ...] = (SELDON_TYPES[kind], f"id-{event_no}")
        else:
            identity = ("@", "seldon", str(event_no % 3), str(event_no))
        record = {
            "topic": "seldon",
            "partition": event_no % 3,
            "offset": event_no,
            "timestamp": time_ms,
            "key": None,
            "headers": headers,
            "value": payload,
        }
        built.append(
            (record, Meaning(kind, puid, key, time_ms / 1000.0, identity, **meaning), with_id)
        )

    for p in range(n_puids):
        puid = f"puid-{p}"
        base = draw(st.integers(0, 400)) * 1000
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True))
        rows_of: dict[ModelKey, int] = {}
        for key in keys:
            rows = draw(st.integers(1, 3))
            rows_of[key] = rows
            if draw(st.booleans()):
                add(
                    "request",
                    puid,
                    key,
                    base + draw(st.integers(0, 2000)),
                    {"data": {"ndarray": [[1]]}},
                )
            for _ in range(draw(st.integers(1, 2))):
                predicted = draw(st.lists(st.sampled_from(CLASSES), min_size=rows, max_size=rows))
                style = draw(st.integers(0, 2))
                add(
                    "response",
                    puid,
                    key,
                    base + draw(st.integers(0, 5000)),
                    {"data": _rows_payload(predicted, style), "meta": {}},
                    classes=tuple(predicted),
                    named=style == 0,
                )
        for _ in range(draw(st.integers(0, 3))):
            target = draw(st.sampled_from(KEYS))
            how = draw(st.integers(0, 3))
            fkey = ModelKey(
                target.namespace,
                target.deployment,
                target.predictor if how in (1, 3) else "",
                target.model if how in (2, 3) else "",
            )
            rows = rows_of.get(target, draw(st.integers(1, 3)))
            if draw(st.integers(0, 9)) == 0:
                rows = draw(st.integers(1, 3))  # maybe a row mismatch
            reward = draw(st.sampled_from([None, 0, 1, True, False, 0.5]))
            truth: tuple[str, ...] | None = None
            named = False
            payload: dict[str, Any] = {}
            if reward is not None:
                payload["reward"] = reward
            if draw(st.booleans()):
                truth = tuple(
                    draw(st.lists(st.sampled_from(CLASSES), min_size=rows, max_size=rows))
                )
                style = draw(st.integers(0, 3))
                named = style == 0
                if style == 3:
                    # One-hot rows without names: index classes, read in the response's names.
                    hot = [[1 if CLASSES[i] == c else 0 for i in range(3)] for c in truth]
                    payload["truth"] = {"data": {"ndarray": hot}}
                    truth = tuple(str(CLASSES.index(c)) for c in truth)
                else:
                    payload["truth"] = {"data": _rows_payload(list(truth), style)}
            else:
                payload["truth"] = {"meta": {"tags": {"user": "x"}}}
            add(
                "feedback",
                puid,
                fkey,
                # Whole seconds mostly, so that outcomes land exactly on window bounds.
                base + draw(st.integers(0, 120)) * 1000 + draw(st.sampled_from([0, 0, 1, 999])),
                payload,
                classes=truth,
                reward=None if reward is None else float(reward),
                named=named,
            )
    order = draw(st.permutations(range(len(built))))
    arrival = [built[i] for i in order]
    # Redeliveries: the same record again (a new offset when it has an id).
    for _ in range(draw(st.integers(0, 3))):
        if not arrival:
            break
        at = draw(st.integers(0, len(arrival) - 1))
        record, meaning, with_id = arrival[at]
        again = dict(record)
        if with_id:
            again["offset"] = record["offset"] + 100_000
        insert = draw(st.integers(at + 1, len(arrival)))
        arrival.insert(insert, (again, meaning, with_id))
    return Stream([r for r, _, _ in arrival], [m for _, m, _ in arrival])


# ---------------------------------------------------------------- the reference


@dataclass
class RefOutcome:
    key: ModelKey
    predicted: str
    truth: str | None
    correct: bool | None
    reward: float | None
    time: float
    stamp: int
    live: bool = True
    conflict: bool = False
    puid: str = ""
    row: int = 0
    life: int = 0
    """Which join entry of the puid applied it (a puid can come back after expiring)."""


@dataclass
class _RefEntry:
    deadline: float
    seen: set[tuple[str, ...]] = field(default_factory=set)
    events: list[tuple[int, Meaning]] = field(default_factory=list)
    applied: dict[ModelKey, tuple[int, float, tuple[str, ...], list[RefOutcome]]] = field(
        default_factory=dict
    )
    labelled: set[ModelKey] = field(default_factory=set)
    mismatched: set[tuple[ModelKey, int]] = field(default_factory=set)
    life: int = 0


@dataclass
class Reference:
    outcomes: list[RefOutcome] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SELDON_TYPES, 0))
    duplicate: int = 0
    amended: int = 0
    invalid: int = 0
    expired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SELDON_TYPES, 0))
    conflicts: dict[ModelKey, int] = field(default_factory=dict)
    labelled: dict[ModelKey, int] = field(default_factory=dict)
    models: set[ModelKey] = field(default_factory=set)
    clock: float = -math.inf
    pending: int = 0

    def live(self) -> list[RefOutcome]:
        return [o for o in self.outcomes if o.live]


def rank(identity: tuple[str, ...]) -> int:
    """The stable tie-break of an event: a 64-bit hash of its identity (crc32, adler32)."""
    raw = "\x1f".join(identity).encode("utf-8", "surrogatepass")
    return (zlib.crc32(raw) << 32) | zlib.adler32(raw)


def _matches(fkey: ModelKey, key: ModelKey) -> bool:
    return (not fkey.predictor or fkey.predictor == key.predictor) and (
        not fkey.model or fkey.model == key.model
    )


def reference(stream: Stream, ttl: float, basis: str) -> Reference:
    ref = Reference()
    entries: dict[str, _RefEntry] = {}
    stamp = 0
    lives = 0

    def expire(now: float) -> None:
        for puid in [p for p, e in entries.items() if e.deadline < now]:
            e = entries.pop(puid)
            kinds = [m for _, m in e.events]
            if not e.applied:
                ref.expired["request"] += sum(1 for m in kinds if m.kind == "request")
            responses = _first_responses(e)
            ref.expired["response"] += sum(1 for k in responses if k not in e.labelled)
            ref.expired["feedback"] += sum(
                1
                for _, m in e.events
                if m.kind == "feedback"
                and not any(
                    _matches(m.key, k)
                    and (m.classes is None or len(m.classes) == len(r.classes or ()))
                    for k, r in responses.items()
                )
            )

    for arrival, meaning in enumerate(stream.meanings):
        ref.clock = max(ref.clock, meaning.time)
        expire(ref.clock)
        entry = entries.get(meaning.puid)
        if entry is None:
            entry = entries[meaning.puid] = _RefEntry(meaning.time + ttl)
            lives += 1
            entry.life = lives
        if meaning.identity in entry.seen:
            ref.duplicate += 1
            continue
        entry.seen.add(meaning.identity)
        entry.deadline = max(entry.deadline, meaning.time + ttl)
        entry.events.append((arrival, meaning))
        ref.accepted[meaning.kind] += 1
        if meaning.kind == "response":
            ref.models.add(meaning.key)
        amended = False
        feedbacks = [(n, m) for n, m in entry.events if m.kind == "feedback"]
        requests = [m for _, m in entry.events if m.kind == "request"]
        for key, response in _first_responses(entry).items():
            assert response.classes is not None
            rows = len(response.classes)
            compatible = []
            for n, f in feedbacks:
                if not _matches(f.key, key):
                    continue
                if f.classes is not None and len(f.classes) != rows:
                    if (key, n) not in entry.mismatched:
                        entry.mismatched.add((key, n))
                        ref.invalid += 1
                    continue
                compatible.append((f.time, rank(f.identity), n, f))
            if not compatible:
                old_pair = entry.applied.pop(key, None)
                if old_pair is not None:
                    for o in old_pair[3]:
                        o.live = False
                continue
            _, _, best_n, best = max(compatible, key=lambda c: (c[0], c[1]))
            same = [m.time for m in requests if m.key == key]
            request_time = min(same) if same else min((m.time for m in requests), default=None)
            if basis == "feedback":
                time = best.time
            else:
                time = request_time if request_time is not None else response.time
            truth_classes = best.classes
            if truth_classes is not None and not best.named and response.named:
                truth_classes = tuple(CLASSES[int(c)] if c.isdigit() else c for c in truth_classes)
            old = entry.applied.get(key)
            if (
                old is not None
                and old[0] == best_n
                and old[1] == time
                and old[2] == response.identity
            ):
                continue
            if old is not None:
                for o in old[3]:
                    o.live = False
                if old[0] != best_n:
                    amended = True
            new = []
            for row, pred in enumerate(response.classes):
                if truth_classes is not None:
                    truth: str | None = truth_classes[row]
                    correct: bool | None = truth == pred
                elif best.reward == 1.0:
                    truth, correct = pred, True
                elif best.reward == 0.0:
                    truth, correct = None, False
                else:
                    truth, correct = None, None
                new.append(
                    RefOutcome(
                        key,
                        pred,
                        truth,
                        correct,
                        best.reward if row == 0 else None,
                        time,
                        stamp,
                        puid=meaning.puid,
                        row=row,
                        life=entry.life,
                    )
                )
                stamp += 1
            if truth_classes is not None and best.reward is not None:
                right = truth_classes == response.classes
                new[0].conflict = (best.reward == 1.0 and not right) or (
                    best.reward == 0.0 and right
                )
            ref.outcomes.extend(new)
            entry.applied[key] = (best_n, time, response.identity, new)
            if key not in entry.labelled:
                entry.labelled.add(key)
                ref.labelled[key] = ref.labelled.get(key, 0) + 1
        if amended:
            ref.amended += 1
    expire(ref.clock)
    ref.pending = len(entries)
    for o in ref.live():
        if o.conflict:
            ref.conflicts[o.key] = ref.conflicts.get(o.key, 0) + 1
    return ref


def _first_responses(entry: _RefEntry) -> dict[ModelKey, Meaning]:
    """Per model, the response with the earliest event time, then the smallest rank."""
    first: dict[ModelKey, Meaning] = {}
    for _, m in entry.events:
        if m.kind != "response":
            continue
        held = first.get(m.key)
        if held is None or (m.time, rank(m.identity)) < (held.time, rank(held.identity)):
            first[m.key] = m
    return first


# ---------------------------------------------------------------- windows and sklearn


def window_outcomes(outcomes: list[RefOutcome], spec: WindowSpec, clock: float) -> list[RefOutcome]:
    """The live outcomes of one model a window holds at ``clock``, by definition."""
    if spec.kind is WindowKind.TOTAL:
        return outcomes
    if spec.kind is WindowKind.COUNT:
        return sorted(outcomes, key=lambda o: o.stamp)[-spec.size :]
    high = to_tick(clock)
    low = high - round(spec.width_s * 1_000_000)
    return [o for o in outcomes if low < to_tick(o.time) <= high]


_UNKNOWN = "\x00unknown"


def expected_metrics(outcomes: list[RefOutcome]) -> dict[str, Any]:
    """The report's window object, computed with scikit-learn."""
    known = [o for o in outcomes if o.correct is not None]
    labelled = [o for o in outcomes if o.truth is not None]
    rewards = [o.reward for o in outcomes if o.reward is not None]
    result: dict[str, Any] = {
        "outcomes": len(outcomes),
        "known": len(known),
        "correct": sum(1 for o in known if o.correct),
        "accuracy": None,
        "labels": [],
        "confusion_matrix": [],
        "per_class": {},
        "macro": {"precision": None, "recall": None, "f1": None},
        "micro": {"precision": None, "recall": None, "f1": None},
        "weighted": {"precision": None, "recall": None, "f1": None},
        "reward": {
            "count": len(rewards),
            "sum": float(np.sum(rewards)) if rewards else 0.0,
            "mean": float(np.mean(rewards)) if rewards else None,
        },
    }
    warnings.filterwarnings("ignore", message="A single label", category=UserWarning)
    if known:
        result["accuracy"] = float(
            accuracy_score(
                [o.truth if o.truth is not None else _UNKNOWN for o in known],
                [o.predicted for o in known],
            )
        )
    if labelled:
        y_true = [o.truth for o in labelled if o.truth is not None]
        y_pred = [o.predicted for o in labelled]
        labels = sorted(set(y_true) | set(y_pred))
        result["labels"] = labels
        result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        result["per_class"] = {
            label: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, label in enumerate(labels)
        }
        for average in ("macro", "micro", "weighted"):
            ap, ar, af, _ = precision_recall_fscore_support(
                y_true, y_pred, labels=labels, average=average, zero_division=0
            )
            result[average] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return result


def assert_close(actual: Any, expected: Any, path: str = "") -> None:
    """Equal structures, floats to 1e-12."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert set(actual) >= set(expected), (path, set(expected) - set(actual))
        for k, v in expected.items():
            assert_close(actual[k], v, f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), path
        assert len(actual) == len(expected), (path, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual is not None, path
        assert abs(actual - expected) <= 1e-12, (path, actual, expected)
    else:
        assert actual == expected, (path, actual, expected)


_HISTORY_COUNTERS = ("outcomes_applied", "outcomes_retracted")


def order_free(report: dict[str, Any]) -> dict[str, Any]:
    """A report less the counters of revisions (amendments and the outcomes they
    retracted and re-applied), which count how often a reader changed its mind
    and so follow the read order by definition; everything else must not."""
    document = orjson.loads(orjson.dumps(report))
    document["events"].pop("amended")
    for model in document["models"]:
        for name in _HISTORY_COUNTERS:
            model["counters"].pop(name)
    return dict(document)


TINY_P = 1e-250
"""Below this, scipy's and statsmodels' binomial tails underflow to 0 at random."""


def assert_p_close(actual: float, expected: float) -> None:
    """A p-value equal to an oracle's to 1e-8 relative; both tiny counts as equal."""
    if expected < TINY_P:
        assert actual < TINY_P, (actual, expected)
    else:
        assert abs(actual - expected) <= 1e-8 * expected, (actual, expected)
