"""The same traffic as v1 logger records and as Core 2 records gives the same numbers."""

from __future__ import annotations

import base64
import math
import random
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from feedback_stream.core2 import Core2Decoder, Experiments
from feedback_stream.core2.convert import core2_model, experiments_for, to_core2
from feedback_stream.core2.grpc_predict_v2_pb2 import ModelInferResponse
from feedback_stream.core2.replaying import Core2Replay
from feedback_stream.core2.tensors import RAW_FORMAT
from feedback_stream.engine import Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
    intended_outcomes,
)
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.replay import replay
from tests._processor import assert_window_matches, get_json, oracle, running, settings

WINDOWS = ["total", "1m", "500"]


def _config(seed: int) -> GeneratorConfig:
    shadowed = (PredictorSpec("default", 0.85), PredictorSpec("shadow", 0.6, shadow=True))
    return GeneratorConfig(
        seed=seed,
        n_requests=600,
        deployments=(
            DeploymentSpec("iris", predictors=shadowed, payload="ndarray"),
            DeploymentSpec("wine", predictors=shadowed, payload="v2", n_classes=4),
            DeploymentSpec(
                "income",
                namespace="prod",
                predictors=(PredictorSpec("default", 0.7),),
                payload="tf",
                output="label",
            ),
        ),
        batch_max=3,
        feedback_share=0.8,
        truth_share=0.7,
        amendment_share=0.1,
        disorder_share=0.1,
        disorder_max_s=2.0,
        feedback_scope="predictor" if seed % 2 else "deployment",
    )


def _core2_key(key: ModelKey, experiments: set[str]) -> ModelKey:
    model = core2_model(key)
    if key.deployment in experiments:
        predictor = "default" if key.predictor == "default" else model
        return ModelKey(key.namespace, key.deployment, predictor, model)
    return ModelKey(key.namespace, "", "", model)


def _by_key(report: dict[str, Any]) -> dict[ModelKey, dict[str, Any]]:
    return {
        ModelKey(m["namespace"], m["deployment"], m["predictor"], m["model"]): m
        for m in report["models"]
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_core2_records_give_the_numbers_of_the_v1_stream_and_of_sklearn(seed: int) -> None:
    config = _config(seed)
    v1 = list(generate_records(config))
    core2 = list(to_core2(v1, seed=seed))
    layouts = {
        ("json" if "value" in r else "proto", "seldon-infer-type" in r["headers"])
        for r in core2
        if r["topic"].endswith(".outputs")
    }
    assert layouts == {("json", True), ("json", False), ("proto", True), ("proto", False)}

    v1_engine = Engine(WINDOWS)
    v1_result = replay([orjson.dumps(r) for r in v1], v1_engine)
    declared = experiments_for(config)
    reader = Core2Replay(Core2Decoder(experiments=Experiments.parse(declared)))
    core2_engine = Engine(WINDOWS)
    core2_result = replay([orjson.dumps(r) for r in core2], core2_engine, decoder=reader)
    assert v1_result.errors == []
    assert core2_result.errors == []

    v1_report = _by_key(v1_engine.report(v1_result.clock))
    core2_report = _by_key(core2_engine.report(core2_result.clock))
    in_experiments = {text.split("=")[0] for text in declared}
    assert in_experiments == {"iris", "wine"}
    assert set(core2_report) == {_core2_key(k, in_experiments) for k in v1_report}
    for key, document in v1_report.items():
        theirs = core2_report[_core2_key(key, in_experiments)]
        assert theirs["windows"] == document["windows"]
        assert theirs["counters"] == document["counters"]
    v1_events = v1_engine.report(v1_result.clock)["events"]
    core2_events = core2_engine.report(core2_result.clock)["events"]
    assert core2_events == v1_events

    # The experiment's default and shadow are compared as v1's default and shadow predictors.
    v1_pairs = v1_engine.report(v1_result.clock)["comparisons"]
    core2_pairs = core2_engine.report(core2_result.clock)["comparisons"]
    assert [p["deployment"] for p in core2_pairs] == ["iris", "wine"]
    assert [p["deployment"] for p in v1_pairs] == ["iris", "wine"]
    for theirs, ours in zip(v1_pairs, core2_pairs, strict=True):
        assert ours["baseline"]["predictor"] == "default"
        assert ours["candidate"]["model"] == f"{ours['deployment']}-shadow"
        assert ours["windows"] == theirs["windows"]

    for key, want in oracle(intended_outcomes(config)).items():
        assert_window_matches(
            core2_report[_core2_key(key, in_experiments)]["windows"]["total"], want
        )


def test_replay_command_reads_core2_records_and_counts_model_errors(tmp_path: Path) -> None:
    config = _config(4)
    core2 = list(to_core2(generate_records(config), seed=4))
    errors = [
        {
            "topic": "seldon.seldon.errors.errors",
            "partition": 0,
            "offset": n,
            "timestamp": core2[-1]["timestamp"],
            "key": None,
            "headers": {"x-request-id": f"failed-{n}", "seldon-pipeline-errors": "iris-default"},
            "value": "rpc error: code = Unavailable",
        }
        for n in range(3)
    ]
    path = tmp_path / "core2.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [*core2, *errors]) + b"\n")
    args = [sys.executable, "-m", "feedback_stream.cli", "replay", str(path)]
    flags = ["--source", "seldon-core-2"]
    for text in experiments_for(config):
        flags += ["--seldon-experiment", text]
    done = subprocess.run([*args, *flags], capture_output=True, check=True)
    document = orjson.loads(done.stdout)
    assert document["model_errors"] == [
        {
            "namespace": "seldon",
            "deployment": "iris",
            "predictor": "default",
            "model": "iris-default",
            "errors": 3,
        }
    ]
    assert document["events"]["invalid"] == 0
    labels = {(m["deployment"], m["predictor"]) for m in document["models"]}
    assert ("iris", "iris-shadow") in labels
    # The same file read as CloudEvents is all invalid: the source has to be said.
    plain = subprocess.run(args, capture_output=True, check=True)
    assert orjson.loads(plain.stdout)["events"]["response"] == 0


def test_a_binary_value_travels_in_a_replay_line_as_value_base64(tmp_path: Path) -> None:
    core2 = list(to_core2(generate_records(_config(5)), seed=5, layouts=("raw",)))
    binary = [r for r in core2 if "value_base64" in r]
    assert binary
    assert all(base64.b64decode(r["value_base64"]) for r in binary)
    line = dict(binary[0], value_base64="not base64!")
    reader = Core2Replay(Core2Decoder())
    result = replay([orjson.dumps(line)], Engine(["total"]), decoder=reader)
    assert [e.code for e in result.errors] == ["bad_record"]
    assert "value_base64" in result.errors[0].reason


DOCS = Path(__file__).resolve().parents[1] / "docs"
CLI = (sys.executable, "-m", "feedback_stream.cli")
EXPERIMENT = ("--seldon-experiment", "iris=iris-default:iris-shadow")


def test_the_docs_example_file_is_what_the_documented_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "example.jsonl"
    subprocess.run(
        [*CLI, "generate", "--out", str(out), "--requests", "40", "--seed", "7", "--seldon-core-2"],
        capture_output=True,
        check=True,
    )
    example = DOCS / "examples" / "seldon-core-2.jsonl"
    assert out.read_bytes() == example.read_bytes()
    done = subprocess.run(
        [*CLI, "replay", str(example), "--source", "seldon-core-2", *EXPERIMENT],
        capture_output=True,
        check=True,
    )
    document = orjson.loads(done.stdout)
    assert document["events"]["invalid"] == 0
    assert [(m["deployment"], m["predictor"]) for m in document["models"]] == [
        ("iris", "default"),
        ("iris", "iris-shadow"),
    ]
    assert all(m["windows"]["total"]["outcomes"] > 0 for m in document["models"])


def test_the_docs_feedback_examples_are_read_as_feedback() -> None:
    text = (DOCS / "seldon-core-2.md").read_text(encoding="utf-8")
    section = text.split("## Feedback", 1)[1].split("## Experiments", 1)[0]
    body = section.split("```json\n", 1)[1].split("```", 1)[0]
    reader = Core2Replay(Core2Decoder())
    event = reader(
        "feedback-stream.feedback",
        {"x-request-id": "cq2v7e0s3b1d8n4tq2a0"},
        None,
        body.encode(),
        1_000,
        SourcePosition("feedback-stream.feedback", 0, 0),
    )
    assert isinstance(event, Event)
    assert (event.kind, event.puid, event.classes, event.reward) == (
        EventKind.FEEDBACK,
        "cq2v7e0s3b1d8n4tq2a0",
        ("setosa",),
        1.0,
    )


async def test_the_docs_feedback_request_is_accepted_by_the_feedback_endpoint() -> None:
    text = (DOCS / "seldon-core-2.md").read_text(encoding="utf-8")
    section = text.split("## Feedback", 1)[1].split("## Experiments", 1)[0]
    curl = section.split("```sh\ncurl", 1)[1].split("```", 1)[0]
    url = re.search(r"-X POST (\S+)", curl)
    data = re.search(r"-d '([^']+)'", curl)
    assert url is not None
    assert data is not None
    headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", curl))
    path = urlsplit(url.group(1)).path
    async with running(settings(source="seldon-core-2")) as (service, base):
        assert service.core2 is not None  # the source changes Kafka only: HTTP is the same
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}{path}", headers=headers, data=data.group(1)) as answer,
        ):
            assert answer.status == 200, await answer.text()
            body = await answer.json()
        assert body["meta"]["puid"] == "cq2v7e0s3b1d8n4tq2a0"
        document = await get_json(f"{base}/api/v1/metrics")
    assert document["events"]["feedback"] == 1
    assert document["events"]["invalid"] == 0


def test_a_core2_binary_model_s_scores_give_sklearn_s_roc_auc_log_loss_and_brier() -> None:
    rng = random.Random(8)
    lines = []
    scores: list[float] = []
    truths: list[int] = []
    for i in range(120):
        datatype = ("FP32", "FP64", "FP16")[i % 3]
        score = round(rng.random(), 3)
        raw = struct.pack(f"<{RAW_FORMAT[datatype]}", score)
        scores.append(struct.unpack(f"<{RAW_FORMAT[datatype]}", raw)[0])
        truths.append(1 if rng.random() < score else 0)
        tensor = ModelInferResponse.InferOutputTensor(name="p", datatype=datatype, shape=[1, 1])
        response = ModelInferResponse(outputs=[tensor], raw_output_contents=[raw])
        lines.append(
            orjson.dumps(
                {
                    "topic": "seldon.prod.model.fraud.outputs",
                    "partition": 0,
                    "offset": i,
                    "timestamp": 1_000 + i,
                    "key": f"0.fraud-pipe.r{i}",
                    "headers": {"x-request-id": f"r{i}", "pipeline": "fraud-pipe"},
                    "value_base64": base64.b64encode(response.SerializeToString()).decode(),
                }
            )
        )
        lines.append(
            orjson.dumps(
                {
                    "topic": "feedback-stream.feedback",
                    "partition": 0,
                    "offset": i,
                    "timestamp": 5_000 + i,
                    "key": f"r{i}",
                    "headers": {},
                    "value": {"truth": {"data": {"ndarray": [[truths[-1]]]}}},
                }
            )
        )
    kinds = ModelKinds.parse({"model": [{"model": "fraud", "kind": "binary"}]})
    engine = Engine(["total"], kinds=kinds)
    result = replay(lines, engine, decoder=Core2Replay(Core2Decoder()))
    assert result.errors == []
    (model,) = engine.report(result.clock)["models"]
    assert (model["deployment"], model["model"]) == ("fraud-pipe", "fraud")
    binary = model["windows"]["total"]["binary"]
    assert binary["scored"] == 120
    assert math.isclose(binary["roc_auc"], roc_auc_score(truths, scores), abs_tol=1e-12)
    assert math.isclose(binary["log_loss"], log_loss(truths, scores), abs_tol=1e-12)
    assert math.isclose(binary["brier"], brier_score_loss(truths, scores), abs_tol=1e-12)


def test_replay_takes_run_s_plural_experiments_flag_with_a_comma_list() -> None:
    example = DOCS / "examples" / "seldon-core-2.jsonl"
    base = [*CLI, "replay", str(example), "--source", "seldon-core-2"]
    singular = subprocess.run([*base, *EXPERIMENT], capture_output=True, check=True)
    plural = subprocess.run(
        [*base, "--seldon-experiments", "iris=iris-default:iris-shadow,other=a:b"],
        capture_output=True,
        check=True,
    )
    assert orjson.loads(plural.stdout)["models"] == orjson.loads(singular.stdout)["models"]
