"""The synthetic stream's time and delivery: delays, disorder, duplicates, amendments,
partitions, invalid records, and what the core reads from it all."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import precision_recall_fscore_support

from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.encode import (
    SELDON_FEEDBACK,
    SELDON_REQUEST,
    SELDON_RESPONSE,
    ReplayRecord,
    kafka_partition,
)
from feedback_stream.engine import Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.generator import (
    INVALID_KINDS,
    DeploymentSpec,
    GeneratorConfig,
    IntendedOutcome,
    PredictorSpec,
    add_parser,
    generate_records,
    intended_outcomes,
    run,
)
from tests._stream_reader import (
    by_type,
    classes,
    content,
    one_deployment,
    puid_of,
    records,
)

# --- time ---------------------------------------------------------------------------


def test_fixed_feedback_delay_is_exact() -> None:
    cfg = GeneratorConfig(
        n_requests=100,
        feedback_share=1.0,
        feedback_delay="fixed",
        feedback_delay_mean_s=7.5,
        deployments=one_deployment(predictors=(PredictorSpec("default"),)),
    )
    rs = list(generate_records(cfg))
    answered = {puid_of(r): r["timestamp"] for r in by_type(rs, SELDON_RESPONSE)}
    for r in by_type(rs, SELDON_FEEDBACK):
        assert r["timestamp"] - answered[puid_of(r)] == 7500


def test_exponential_feedback_delay_has_the_mean() -> None:
    cfg = GeneratorConfig(
        n_requests=3000,
        feedback_share=1.0,
        feedback_delay_mean_s=20.0,
        deployments=one_deployment(predictors=(PredictorSpec("default"),)),
    )
    rs = list(generate_records(cfg))
    answered = {puid_of(r): r["timestamp"] for r in by_type(rs, SELDON_RESPONSE)}
    delays = [r["timestamp"] - answered[puid_of(r)] for r in by_type(rs, SELDON_FEEDBACK)]
    assert sum(delays) / len(delays) == pytest.approx(20_000, rel=0.07)


def test_request_rate_sets_the_event_time_span() -> None:
    rs = records(n_requests=2000, request_rate=50.0, arrivals="uniform", feedback_share=0.0)
    requests = by_type(rs, SELDON_REQUEST)
    span = requests[-1]["timestamp"] - requests[0]["timestamp"]
    assert span == pytest.approx(1999 / 50 * 1000, abs=2)
    assert requests[0]["timestamp"] == GeneratorConfig().start_ms


def test_without_disorder_timestamps_never_go_back() -> None:
    rs = records(n_requests=500, feedback_share=0.7, batch_max=3, feedback_delay_mean_s=2.0)
    stamps = [r["timestamp"] for r in rs]
    assert stamps == sorted(stamps)


def test_disorder_moves_records_within_its_bound_and_only_moves_them() -> None:
    base = records(n_requests=500, feedback_share=0.7, feedback_delay_mean_s=2.0)
    late = records(
        n_requests=500,
        feedback_share=0.7,
        feedback_delay_mean_s=2.0,
        disorder_share=0.3,
        disorder_max_s=1.5,
    )
    assert sorted(map(content, base)) == sorted(map(content, late))
    newest = 0
    lateness = []
    for r in late:
        newest = max(newest, r["timestamp"])
        lateness.append(newest - r["timestamp"])
    assert max(lateness) <= 1500
    assert sum(1 for x in lateness if x > 0) > 50


# --- duplicates and amendments ---------------------------------------------------


@pytest.mark.parametrize("mode", ["id", "offset", "mixed"])
def test_duplicates_add_redeliveries_and_nothing_else(mode: str) -> None:
    base = records(n_requests=400, feedback_share=0.5)
    duped = records(n_requests=400, feedback_share=0.5, duplicate_share=0.2, duplicate_mode=mode)
    extra = len(duped) - len(base)
    assert extra / len(base) == pytest.approx(0.2, abs=0.04)
    seen: dict[tuple[str, str], ReplayRecord] = {}
    same_offset = same_id = 0
    unique = []
    for r in duped:
        identity = (r["headers"]["ce_type"], r["headers"]["ce_id"])
        if identity in seen:
            first = seen[identity]
            if first["offset"] == r["offset"]:
                assert first == r
                same_offset += 1
            else:
                assert content(first) == content(r)
                same_id += 1
            continue
        seen[identity] = r
        unique.append(r)
    assert same_offset + same_id == extra
    assert sorted(map(content, unique)) == sorted(map(content, base))
    if mode == "id":
        assert same_offset == 0
    elif mode == "offset":
        assert same_id == 0
    else:
        assert same_offset > 0
        assert same_id > 0


def test_direct_records_are_duplicated_by_offset() -> None:
    rs = records(
        n_requests=200,
        duplicate_share=0.3,
        duplicate_mode="id",
        deployments=one_deployment(encoding="seldon_direct"),
    )
    positions = Counter((r["partition"], r["offset"]) for r in rs)
    assert any(n == 2 for n in positions.values())


def test_amendments_come_later_with_a_truth() -> None:
    cfg = GeneratorConfig(
        n_requests=300,
        feedback_share=1.0,
        amendment_share=0.5,
        truth_share=0.5,
        disorder_share=0.5,
        disorder_max_s=3.0,
        duplicate_share=0.2,
    )
    rs = list(generate_records(cfg))
    feedback: dict[tuple[str, str], list[ReplayRecord]] = defaultdict(list)
    for r in by_type(rs, SELDON_FEEDBACK):
        if r not in feedback[(puid_of(r), r["headers"]["ce_endpoint"])]:
            feedback[(puid_of(r), r["headers"]["ce_endpoint"])].append(r)
    amended = {k: v for k, v in feedback.items() if len({x["headers"]["ce_id"] for x in v}) == 2}
    assert len(amended) / len(feedback) == pytest.approx(0.5, abs=0.08)
    for key, versions in amended.items():
        first, second = versions[0], versions[-1]
        assert second["timestamp"] > first["timestamp"] + 3000
        assert second["value"]["reward"] is not None
        assert "data" in second["value"]["truth"]
        # the intended outcome is the amendment's
        rows = [o for o in intended_outcomes_cache(cfg) if (o.puid, o.key.predictor) == key]
        assert rows[0].time == second["timestamp"] / 1000
        assert [o.truth for o in rows] == classes(second["value"]["truth"])


_CACHE: dict[GeneratorConfig, list[IntendedOutcome]] = {}


def intended_outcomes_cache(cfg: GeneratorConfig) -> list[IntendedOutcome]:
    if cfg not in _CACHE:
        _CACHE[cfg] = intended_outcomes(cfg)
    return _CACHE[cfg]


def test_amendments_change_only_the_amended_outcomes() -> None:
    plain = intended_outcomes(GeneratorConfig(n_requests=300, feedback_share=0.6))
    amended = intended_outcomes(
        GeneratorConfig(n_requests=300, feedback_share=0.6, amendment_share=0.4)
    )
    assert [(o.key, o.puid, o.row, o.predicted) for o in plain] == [
        (o.key, o.puid, o.row, o.predicted) for o in amended
    ]
    changed = {o.puid for o, p in zip(amended, plain, strict=True) if o.time != p.time}
    assert len(changed) / len({o.puid for o in plain}) == pytest.approx(0.4, abs=0.08)


# --- partitions and keys ---------------------------------------------------------


def test_keyed_records_follow_kafkas_partitioner() -> None:
    rs = records(n_requests=300, partitions=6, keyed=True, feedback_share=0.5)
    for r in rs:
        assert r["key"] == puid_of(r)
        assert r["partition"] == kafka_partition(r["key"].encode(), 6)
    assert len({r["partition"] for r in rs}) == 6


def test_unkeyed_records_spread_one_puid_over_partitions() -> None:
    rs = records(n_requests=300, partitions=4)
    assert all(r["key"] is None for r in rs)
    spread: dict[str, set[int]] = defaultdict(set)
    for r in rs:
        spread[puid_of(r)].add(r["partition"])
    assert any(len(p) > 1 for p in spread.values())
    assert {r["partition"] for r in rs} == {0, 1, 2, 3}


def test_offsets_count_up_per_partition() -> None:
    rs = records(n_requests=300, partitions=3, disorder_share=0.5, disorder_max_s=2.0)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in rs:
        by_partition[r["partition"]].append(r["offset"])
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))


# --- the core's decoder reads every record as intended ------------------------------

ENCODINGS = ["ce_binary", "ce_structured", "seldon_direct", "seldon_mixed", "kserve"]


def decode(r: ReplayRecord) -> Event:
    position = SourcePosition(r["topic"], r["partition"], r["offset"])
    event = decode_kafka_record(r["headers"], r["value"], r["timestamp"], position)
    assert not isinstance(event, DecodeError), f"{event} in {r}"
    return event


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("payload", ["ndarray", "tensor", "tf", "v2"])
@pytest.mark.parametrize("output", ["proba", "label"])
def test_every_record_decodes_to_the_intended_events(
    encoding: str, payload: str, output: str
) -> None:
    predictors = (
        (PredictorSpec("default", 0.8), PredictorSpec("canary", 0.6, traffic=0.5))
        if encoding == "kserve"
        else DeploymentSpec().predictors
    )
    dep = DeploymentSpec(
        encoding=encoding,  # type: ignore[arg-type]
        payload=payload,  # type: ignore[arg-type]
        output=output,  # type: ignore[arg-type]
        predictors=predictors,
        n_classes=4,
    )
    cfg = GeneratorConfig(
        n_requests=60,
        batch_max=3,
        feedback_share=0.8,
        truth_share=0.5,
        amendment_share=0.3,
        feedback_echo=True,
        duplicate_share=0.1,
        deployments=(dep,),
    )
    rs = list(generate_records(cfg))
    events = [decode(r) for r in rs]
    # duplicates are exactly the records whose identity was seen before
    without = list(generate_records(dataclasses.replace(cfg, duplicate_share=0.0)))
    assert len({e.identity for e in events}) == len(without) < len(events)
    predicted: dict[tuple[ModelKey, str], tuple[str, ...] | None] = {}
    last_feedback: dict[tuple[str, str], Event] = {}
    for r, e in zip(rs, events, strict=True):
        assert e.time * 1000 == pytest.approx(r["timestamp"])
        if e.kind is EventKind.RESPONSE:
            predicted[(e.key, e.puid)] = e.classes
        elif e.kind is EventKind.FEEDBACK:
            last_feedback[(e.key.predictor, e.puid)] = e
    intended = intended_outcomes(cfg)
    assert intended
    for o in intended:
        classes_ = predicted[(o.key, o.puid)]
        assert classes_ is not None
        assert classes_[o.row] == o.predicted
        fb = last_feedback[(o.key.predictor, o.puid)]
        assert fb.time == o.time
        if fb.classes is not None:
            assert fb.classes[o.row] == o.truth
        elif o.row == 0:
            assert fb.reward == o.reward


def test_deployment_scope_feedback_decodes_to_a_wildcard_key() -> None:
    rs = records(n_requests=20, feedback_share=1.0, feedback_scope="deployment")
    for e in map(decode, rs):
        if e.kind is EventKind.FEEDBACK:
            assert e.key == ModelKey("seldon", "iris", "", "")


def test_invalid_records_are_extra_and_each_fails_to_decode() -> None:
    base = records(n_requests=400, feedback_share=0.5, partitions=2)
    mixed = records(n_requests=400, feedback_share=0.5, partitions=2, invalid_share=0.1)
    base_content = Counter(map(content, base))
    extra = [r for r in mixed if base_content[content(r)] == 0]
    assert Counter(map(content, mixed)) - Counter(map(content, extra)) == base_content
    assert len(extra) / 400 == pytest.approx(0.1, abs=0.04)
    codes: Counter[str] = Counter()
    for r in extra:
        position = SourcePosition(r["topic"], r["partition"], r["offset"])
        error = decode_kafka_record(r["headers"], r["value"], r["timestamp"], position)
        assert isinstance(error, DecodeError)
        codes[error.code] += 1
    assert set(codes) == {
        "unsupported_content_type",
        "not_classifiable",
        "missing_puid",
        "unknown_type",
        "bad_json",
    }
    assert len(INVALID_KINDS) == len(codes)


def test_add_parser_wires_generate_into_a_command_line(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="feedback-stream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "s.jsonl"
    args = parser.parse_args(["generate", "--out", str(out), "--requests", "10"])
    assert args.handler is run
    assert args.handler(args) == 0
    assert len(out.read_text().splitlines()) == len(records(n_requests=10))


def test_generator_imports_no_io_clients() -> None:
    code = (
        "import sys, feedback_stream.generator, feedback_stream.encode, "
        "feedback_stream.demo.traffic; "
        "print(sorted(m for m in ('aiokafka', 'aiohttp', 'elasticsearch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"amendment_share": 0.3, "duplicate_share": 0.2},
        {"disorder_share": 0.4, "disorder_max_s": 5.0, "partitions": 4, "invalid_share": 0.05},
        {"feedback_scope": "deployment", "amendment_share": 0.3},
        {"deployments": one_deployment(encoding="seldon_mixed", payload="tensor")},
    ],
)
def test_the_core_computes_the_intended_metrics(faults: dict[str, Any]) -> None:
    """End to end: the engine's numbers on the stream equal sklearn's on the
    intended outcomes, whatever faults the delivery adds."""
    cfg = GeneratorConfig(
        n_requests=600,
        batch_max=3,
        feedback_share=0.7,
        truth_share=0.6,
        feedback_delay_mean_s=10.0,
        **faults,
    )
    engine = Engine(windows=("total",), ttl=1e9)
    for r in generate_records(cfg):
        position = SourcePosition(r["topic"], r["partition"], r["offset"])
        engine.process_record(r["headers"], r["value"], r["timestamp"], position)
    by_key: dict[ModelKey, list[IntendedOutcome]] = defaultdict(list)
    for o in intended_outcomes(cfg):
        by_key[o.key].append(o)
    assert sorted(by_key) == engine.model_keys()
    for key, rows in by_key.items():
        m = engine.metrics(key, "total")
        assert m.outcomes == m.known == len(rows)
        assert m.accuracy == pytest.approx(sum(o.correct for o in rows) / len(rows), abs=1e-12)
        rewards = [o.reward for o in rows if o.reward is not None]
        assert m.reward_count == len(rewards)
        assert m.reward_sum == pytest.approx(sum(rewards))
        labelled = [o for o in rows if o.truth is not None]
        _, _, f1, _ = precision_recall_fscore_support(
            [o.truth for o in labelled],
            [o.predicted for o in labelled],
            average="macro",
            zero_division=0,
        )
        assert m.macro is not None
        assert m.macro[2] == pytest.approx(f1, abs=1e-12)
