"""The synthetic stream: determinism, wire shapes per EVENTS.md, intended outcomes, CLI."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score

from feedback_stream.encode import (
    CLOUDEVENTS_JSON,
    JSON,
    KSERVE_REQUEST,
    KSERVE_RESPONSE,
    SELDON_FEEDBACK,
    SELDON_REQUEST,
    SELDON_RESPONSE,
)
from feedback_stream.events import ModelKey
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_main,
    generate_records,
    intended_outcomes,
    write_jsonl,
)
from tests._stream_reader import (
    DIRECT_HEADERS,
    attrs,
    by_type,
    classes,
    data,
    model_key,
    one_deployment,
    puid_of,
    records,
)

SELDON_CE_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_requestid",
    "ce_modelid",
    "ce_inferenceservicename",
    "ce_namespace",
    "ce_endpoint",
    "ce_protocol",
    "content-type",
}


# --- determinism ------------------------------------------------------------------


def test_same_seed_same_records() -> None:
    cfg = GeneratorConfig(
        n_requests=200,
        duplicate_share=0.1,
        disorder_share=0.2,
        disorder_max_s=1.0,
        amendment_share=0.3,
        batch_max=4,
    )
    assert list(generate_records(cfg)) == list(generate_records(cfg))
    assert intended_outcomes(cfg) == intended_outcomes(cfg)


def test_other_seed_other_records() -> None:
    assert records(n_requests=20, seed=1) != records(n_requests=20, seed=2)


# --- shapes -----------------------------------------------------------------------


def test_ce_binary_records_match_the_spec() -> None:
    rs = records(n_requests=50, feedback_share=1.0)
    assert {attrs(r)["type"] for r in rs} == {SELDON_REQUEST, SELDON_RESPONSE, SELDON_FEEDBACK}
    for r in rs:
        assert set(r["headers"]) == SELDON_CE_HEADERS
        assert r["headers"]["content-type"] == JSON
        assert r["headers"]["ce_specversion"] == "1.0"
        assert r["headers"]["ce_time"].endswith("Z")
        assert r["key"] is None
    for r in by_type(rs, SELDON_RESPONSE):
        d = r["value"]["data"]
        assert d["names"] == ["t:0", "t:1", "t:2"]
        assert all(len(row) == 3 for row in d["ndarray"])
    for r in by_type(rs, SELDON_REQUEST):
        assert all(len(row) == 4 for row in r["value"]["data"]["ndarray"])


def test_ce_structured_records_hold_the_whole_event() -> None:
    rs = records(n_requests=30, deployments=one_deployment(encoding="ce_structured"))
    for r in rs:
        assert r["headers"] == {"content-type": CLOUDEVENTS_JSON}
        v = r["value"]
        assert v["specversion"] == "1.0"
        assert v["datacontenttype"] == JSON
        assert {"id", "type", "source", "time", "requestid", "data"} <= set(v)


def test_seldon_direct_records_have_no_id_and_no_key() -> None:
    rs = records(
        n_requests=30,
        feedback_share=1.0,
        deployments=one_deployment(encoding="seldon_direct"),
        partitions=3,
    )
    for r in rs:
        assert set(r["headers"]) == DIRECT_HEADERS
        assert r["key"] is None
        assert r["headers"]["protocol"] == "seldon"


def test_seldon_mixed_uses_all_three_encodings() -> None:
    rs = records(n_requests=100, deployments=one_deployment(encoding="seldon_mixed"))
    kinds = Counter(
        "structured"
        if r["headers"].get("content-type") == CLOUDEVENTS_JSON
        else "binary"
        if "ce_id" in r["headers"]
        else "direct"
        for r in rs
    )
    assert set(kinds) == {"structured", "binary", "direct"}


def test_kserve_records_join_on_the_shared_id() -> None:
    dep = DeploymentSpec(
        name="sklearn-iris",
        namespace="kserve-test",
        encoding="kserve",
        payload="v2",
        predictors=(
            PredictorSpec("default", 0.9, traffic=0.8),
            PredictorSpec("canary", 0.6, traffic=0.2),
        ),
    )
    rs = records(n_requests=100, feedback_share=1.0, deployments=(dep,))
    requests = by_type(rs, KSERVE_REQUEST)
    responses = by_type(rs, KSERVE_RESPONSE)
    feedback = by_type(rs, SELDON_FEEDBACK)
    assert len(requests) == len(responses) == len(feedback) == 100
    assert {r["headers"]["ce_id"] for r in requests} == {r["headers"]["ce_id"] for r in responses}
    assert {r["headers"]["ce_requestid"] for r in feedback} == {
        r["headers"]["ce_id"] for r in responses
    }
    assert {r["headers"]["ce_endpoint"] for r in responses} == {"default", "canary"}
    for r in responses:
        assert r["headers"]["ce_component"] == "predictor"
        assert "ce_requestid" not in r["headers"]
        assert r["value"]["outputs"][0]["name"] == "predict_proba"
    for r in requests:
        assert r["value"]["inputs"][0]["datatype"] == "FP64"


def test_kserve_has_no_shadows() -> None:
    with pytest.raises(ValueError, match="shadow"):
        DeploymentSpec(encoding="kserve")


@pytest.mark.parametrize(
    ("payload", "output"),
    [
        ("ndarray", "proba"),
        ("tensor", "proba"),
        ("tf", "proba"),
        ("v2", "proba"),
        ("ndarray", "label"),
        ("tensor", "label"),
        ("tf", "label"),
        ("v2", "label"),
    ],
)
def test_payloads_carry_the_intended_classes(payload: str, output: str) -> None:
    """Every response's rows name the predicted classes the plan intended, every
    feedback truth the intended true classes."""
    cfg = GeneratorConfig(
        n_requests=80,
        batch_min=1,
        batch_max=5,
        feedback_share=1.0,
        truth_share=1.0,
        deployments=one_deployment(payload=payload, output=output, n_classes=4),
    )
    rs = list(generate_records(cfg))
    predicted: dict[tuple[ModelKey, str], list[str]] = {}
    for r in by_type(rs, SELDON_RESPONSE):
        predicted[(model_key(r), puid_of(r))] = classes(data(r))
    truths = {}
    for r in by_type(rs, SELDON_FEEDBACK):
        truths[(model_key(r), puid_of(r))] = classes(data(r)["truth"])
    intended = intended_outcomes(cfg)
    assert intended
    for o in intended:
        assert predicted[(o.key, o.puid)][o.row] == o.predicted
        assert truths[(o.key, o.puid)][o.row] == o.truth


def test_v2_and_tensor_shapes_match_the_rows() -> None:
    for payload in ("tensor", "v2"):
        cfg = GeneratorConfig(
            n_requests=30,
            batch_min=2,
            batch_max=6,
            deployments=one_deployment(payload=payload, n_classes=5),
        )
        for r in by_type(list(generate_records(cfg)), SELDON_RESPONSE):
            v = r["value"]
            t = v["data"]["tensor"] if payload == "tensor" else v["outputs"][0]
            values = t["values"] if payload == "tensor" else t["data"]
            assert t["shape"][1] == 5
            assert len(values) == t["shape"][0] * 5
            assert 2 <= t["shape"][0] <= 6


# --- intended outcomes -------------------------------------------------------------


def test_intended_accuracy_follows_the_predictor_accuracy() -> None:
    cfg = GeneratorConfig(n_requests=4000, feedback_share=1.0, truth_share=1.0)
    rows: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for o in intended_outcomes(cfg):
        assert o.truth is not None
        rows[o.key.predictor][0].append(o.truth)
        rows[o.key.predictor][1].append(o.predicted)
    assert accuracy_score(*rows["default"]) == pytest.approx(0.9, abs=0.03)
    assert accuracy_score(*rows["shadow"]) == pytest.approx(0.75, abs=0.03)


def test_reward_only_feedback_follows_events_md() -> None:
    cfg = GeneratorConfig(n_requests=500, feedback_share=1.0, truth_share=0.0, batch_max=3)
    outcomes = intended_outcomes(cfg)
    for o in outcomes:
        if o.correct:
            assert o.truth == o.predicted
        else:
            assert o.truth is None
    assert {o.correct for o in outcomes} == {True, False}
    assert all((o.reward is None) == (o.row > 0) for o in outcomes)


def test_feedback_share_and_truth_share() -> None:
    cfg = GeneratorConfig(n_requests=3000, feedback_share=0.4, truth_share=0.25)
    rs = list(generate_records(cfg))
    feedback = by_type(rs, SELDON_FEEDBACK)
    labelled = {puid_of(r) for r in feedback}
    assert len(labelled) / 3000 == pytest.approx(0.4, abs=0.03)
    with_truth = {puid_of(r) for r in feedback if "data" in data(r).get("truth", {})}
    assert len(with_truth) / len(labelled) == pytest.approx(0.25, abs=0.04)


def test_request_share_zero_sends_no_request_events() -> None:
    rs = records(n_requests=50, request_share=0.0)
    assert not by_type(rs, SELDON_REQUEST)
    assert len(by_type(rs, SELDON_RESPONSE)) == 100


def test_shadow_answers_every_request_with_the_same_puid() -> None:
    rs = records(n_requests=100)
    by_puid: dict[str, set[str]] = defaultdict(set)
    for r in by_type(rs, SELDON_RESPONSE):
        by_puid[puid_of(r)].add(r["headers"]["ce_endpoint"])
    assert len(by_puid) == 100
    assert all(endpoints == {"default", "shadow"} for endpoints in by_puid.values())


def test_traffic_split_routes_each_request_to_one_predictor() -> None:
    dep = DeploymentSpec(
        predictors=(PredictorSpec("a", traffic=3.0), PredictorSpec("b", traffic=1.0))
    )
    rs = records(n_requests=2000, deployments=(dep,))
    counts = Counter(r["headers"]["ce_endpoint"] for r in by_type(rs, SELDON_RESPONSE))
    assert counts["a"] + counts["b"] == 2000
    assert counts["a"] / 2000 == pytest.approx(0.75, abs=0.03)


def test_deployment_scope_feedback_names_no_model() -> None:
    rs = records(n_requests=100, feedback_share=1.0, feedback_scope="deployment")
    feedback = by_type(rs, SELDON_FEEDBACK)
    assert len(feedback) == 100
    for r in feedback:
        assert "ce_modelid" not in r["headers"]
        assert "ce_endpoint" not in r["headers"]
    assert (
        len(
            intended_outcomes(
                GeneratorConfig(n_requests=100, feedback_share=1.0, feedback_scope="deployment")
            )
        )
        == 200
    )


def test_batch_sizes_stay_in_range() -> None:
    rs = records(n_requests=300, batch_min=2, batch_max=5)
    sizes = Counter(len(r["value"]["data"]["ndarray"]) for r in by_type(rs, SELDON_RESPONSE))
    assert set(sizes) == {2, 3, 4, 5}


# --- multiple deployments, config checks ------------------------------------------


def test_deployments_share_requests_by_weight() -> None:
    deps = (
        DeploymentSpec(name="a", weight=1.0),
        DeploymentSpec(name="b", weight=3.0, encoding="seldon_direct", payload="tf"),
    )
    rs = records(n_requests=2000, deployments=deps, feedback_share=0.0, request_share=0.0)
    counts = Counter(attrs(r)["inferenceservicename"] for r in rs)
    assert counts["b"] / (counts["a"] + counts["b"]) == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize(
    "changes",
    [
        {"feedback_share": 1.5},
        {"batch_min": 3, "batch_max": 2},
        {"partitions": 0},
        {"request_rate": 0.0},
        {"deployments": ()},
        {"deployments": (DeploymentSpec(), DeploymentSpec())},
    ],
)
def test_bad_configs_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        GeneratorConfig(**changes)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GeneratorConfig().seed = 3  # type: ignore[misc]


# --- files and command line ---------------------------------------------------------


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    rs = records(n_requests=20)
    path = tmp_path / "stream.jsonl"
    assert write_jsonl(rs, path) == len(rs)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rs


def test_generate_main_writes_stream_and_intended(tmp_path: Path) -> None:
    out, intended = tmp_path / "s.jsonl", tmp_path / "i.jsonl"
    argv = [
        "--out",
        str(out),
        "--intended",
        str(intended),
        "--requests",
        "50",
        "--seed",
        "3",
        "--deployments",
        "3",
        "--encoding",
        "ce_binary,seldon_direct,kserve",
        "--payload",
        "ndarray,tf",
        "--partitions",
        "2",
        "--keyed",
        "--batch",
        "1-3",
        "--predictor",
        "default:0.9",
        "--predictor",
        "shadow:0.6:shadow",
        "--duplicate-share",
        "0.1",
        "--amendment-share",
        "0.2",
    ]
    assert generate_main(argv) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["partition"] for line in lines} == {0, 1}
    deployments = {attrs(line).get("inferenceservicename") for line in lines}
    assert deployments == {"iris-0", "iris-1", "iris-2"}
    rows = [json.loads(line) for line in intended.read_text().splitlines()]
    assert rows
    assert {"predictor", "predicted", "truth", "correct", "time"} <= set(rows[0])
    assert generate_main(argv) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


def test_generate_main_refuses_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate_main(["--out", str(tmp_path / "x"), "--feedback-share", "2"]) == 2
    assert "feedback_share" in capsys.readouterr().err
