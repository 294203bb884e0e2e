"""A model's kind is declared or detected, never guessed into junk classes.

Fixtures are the output shapes real servers send: Seldon's request-logger
single-probability binary model, predict_proba rows, a V2 (Open Inference
Protocol) FP32 regression output and KServe V1 ``predictions`` of floats.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from feedback_stream.cli import main
from feedback_stream.decode import DecodeError, decode_kafka_record
from feedback_stream.engine import Engine
from feedback_stream.events import Event, ModelKey, SourcePosition
from feedback_stream.model_kinds import KindSpec, ModelKinds, ModelKindsError
from feedback_stream.replay import replay
from feedback_stream.scores import ModelKind, top_scores

_CASE_INPUT = Path(__file__).parent / "cases" / "single-proba-output.jsonl"
"""Case single-proba-output: Seldon's request-logger binary model, ``names: ["proba"]``.

Expected: a lone probability is not a class label: either refused with a
clear reason, or read at a 0.5 threshold (m-1 correct, m-2 correct, m-3
correct by reward); never classes named '0.1951846770138402' with accuracy 1/3.
"""


def _case_lines() -> list[str]:
    return _CASE_INPUT.read_text().splitlines()


def _report_model(engine: Engine, clock: float | None) -> dict[str, Any]:
    (model,) = engine.report(clock)["models"]
    return model  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the case


def test_single_probability_without_a_kind_is_refused_as_needs_kind() -> None:
    engine = Engine(("total",))
    result = replay(_case_lines(), engine)
    assert [e.code for e in result.errors] == ["needs_kind"] * 3
    assert "declare the model's kind" in result.errors[0].reason.lower()
    model = _report_model(engine, result.clock)
    assert model["kind"] == "needs_kind"
    assert model["counters"]["needs_kind"] == 3
    total = model["windows"]["total"]
    # Never classes named '0.1951846770138402' with accuracy 1/3.
    assert total["outcomes"] == 0
    assert total["labels"] == []
    assert total["accuracy"] is None
    assert engine.report(result.clock)["events"]["invalid_reasons"] == {"needs_kind": 3}


def test_single_probability_declared_binary_reads_at_the_threshold() -> None:
    kinds = ModelKinds.parse({"model": [{"deployment": "seldon-*", "kind": "binary"}]})
    engine = Engine(("total",), kinds=kinds)
    result = replay(_case_lines(), engine)
    assert result.errors == []
    model = _report_model(engine, result.clock)
    assert (model["kind"], model["kind_declared"]) == ("binary", True)
    total = model["windows"]["total"]
    # m-1 (0.195, truth 0) right, m-2 (0.8734, truth 1) right, m-3 (0.6502) right by reward.
    assert (total["known"], total["correct"], total["accuracy"]) == (3, 3, 1.0)
    assert total["labels"] == ["0", "1"]
    y, s = [0, 1, 1], [0.1951846770138402, 0.8734, 0.6502]
    binary = total["binary"]
    assert binary["scored"] == 3
    assert binary["positives"] == 2
    assert binary["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert binary["log_loss"] == pytest.approx(log_loss(y, s), abs=1e-12)
    assert binary["brier"] == pytest.approx(brier_score_loss(y, s), abs=1e-12)


# ---------------------------------------------------------------- real output shapes


def _record(value: Any, puid: str, kind: str = "response", **headers: str) -> dict[str, Any]:
    ce_type = {
        "response": "io.seldon.serving.inference.response",
        "feedback": "io.seldon.serving.feedback",
    }[kind]
    return {
        "topic": "t",
        "partition": 0,
        "offset": 0,
        "timestamp": 1_780_000_000_000,
        "key": None,
        "headers": {
            "type": ce_type,
            "content-type": "application/json",
            "requestid": puid,
            "namespace": "prod",
            "inferenceservicename": "dep",
            "endpoint": "default",
            "modelid": "m",
            **headers,
        },
        "value": value,
    }


def _lines(records: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for offset, record in enumerate(records):
        record = {**record, "offset": offset, "timestamp": record["timestamp"] + offset}
        out.append(orjson.dumps(record))
    return out


def _truth(*values: Any) -> dict[str, Any]:
    return {"truth": {"data": {"ndarray": [[v] for v in values]}}}


def _engine(kind: str, **options: Any) -> Engine:
    return Engine(("total",), kinds=ModelKinds.parse({"model": [{"kind": kind, **options}]}))


def test_predict_proba_rows_give_log_loss_brier_and_ece() -> None:
    rows = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
    response = {"data": {"names": ["setosa", "versicolor", "virginica"], "ndarray": rows}}
    engine = _engine("classification")
    result = replay(
        _lines([_record(response, "a"), _record(_truth("setosa", "versicolor"), "a", "feedback")]),
        engine,
    )
    assert result.errors == []
    total = _report_model(engine, result.clock)["windows"]["total"]
    assert total["labels"] == ["setosa", "versicolor", "virginica"]
    assert total["accuracy"] == 0.5
    y = ["setosa", "versicolor"]
    labels = ["setosa", "versicolor", "virginica"]
    probability = total["probability"]
    assert probability["log_loss"] == pytest.approx(log_loss(y, rows, labels=labels), abs=1e-12)
    assert probability["brier"] == pytest.approx(
        brier_score_loss(y, rows, labels=labels), abs=1e-12
    )
    # Bins: 0.7 -> [0.7, 0.8) right; 0.6 -> [0.6, 0.7) wrong.
    assert probability["ece"] == pytest.approx((abs(1 - 0.7) + abs(0 - 0.6)) / 2, abs=1e-12)


def test_predict_proba_rows_of_an_undeclared_model_stay_argmax_classes() -> None:
    rows = [[0.7, 0.2, 0.1]]
    engine = Engine(("total",))
    result = replay(
        _lines([_record({"data": {"ndarray": rows}}, "a"), _record(_truth(0), "a", "feedback")]),
        engine,
    )
    total = _report_model(engine, result.clock)["windows"]["total"]
    assert total["accuracy"] == 1.0
    assert total["probability"] is None


def test_v2_fp32_regression_output() -> None:
    response = {
        "model_name": "m",
        "id": "x",
        "outputs": [
            {"name": "predict", "shape": [3, 1], "datatype": "FP32", "data": [1.5, 2.25, -0.5]}
        ],
    }
    engine = _engine("regression")
    result = replay(
        _lines([_record(response, "a"), _record(_truth(1.0, 2.25, 0.5), "a", "feedback")]), engine
    )
    assert result.errors == []
    model = _report_model(engine, result.clock)
    total = model["windows"]["total"]
    assert model["kind"] == "regression"
    # No classes for a regression model: nothing in the confusion matrix, no accuracy.
    assert total["labels"] == []
    assert total["accuracy"] is None
    assert total["outcomes"] == 3
    regression = total["regression"]
    assert regression["mae"] == pytest.approx((0.5 + 0 + 1.0) / 3, abs=1e-15)
    assert regression["mse"] == pytest.approx((0.25 + 0 + 1.0) / 3, abs=1e-15)
    assert regression["mean_error"] == pytest.approx((0.5 + 0 - 1.0) / 3, abs=1e-15)
    assert regression["mape"] == pytest.approx((0.5 + 0 + 2.0) / 3, abs=1e-15)
    assert regression["zero_truths"] == 0


def test_kserve_predictions_of_floats() -> None:
    response = {"predictions": [0.25, 3.5]}
    undeclared = Engine(("total",))
    result = replay(_lines([_record(response, "a")]), undeclared)
    assert [e.code for e in result.errors] == ["needs_kind"]

    engine = _engine("regression")
    result = replay(
        _lines([_record(response, "a"), _record(_truth(0, 3), "a", "feedback")]), engine
    )
    regression = _report_model(engine, result.clock)["windows"]["total"]["regression"]
    assert regression["mae"] == pytest.approx(0.375, abs=1e-15)
    # A truth of 0: MAPE is not defined; the window says how many truths were 0.
    assert regression["mape"] is None
    assert regression["zero_truths"] == 1


def test_two_column_binary_rows_take_the_positive_column_by_name() -> None:
    response = {"data": {"names": ["fraud", "legit"], "ndarray": [[0.8, 0.2], [0.3, 0.7]]}}
    engine = _engine("binary", positive="fraud", threshold=0.75)
    result = replay(
        _lines([_record(response, "a"), _record(_truth("fraud", "fraud"), "a", "feedback")]),
        engine,
    )
    total = _report_model(engine, result.clock)["windows"]["total"]
    # Scores of "fraud": 0.8 (>= 0.75: fraud), 0.3 (legit).
    assert total["confusion_matrix"] == [[1, 1], [0, 0]]
    assert total["labels"] == ["fraud", "legit"]
    assert total["binary"]["positives"] == 2
    assert total["binary"]["roc_auc"] is None
    assert total["binary"]["log_loss"] == pytest.approx(
        log_loss([1, 1], [0.8, 0.3], labels=[0, 1]), abs=1e-12
    )


def test_integral_scalars_and_strings_keep_todays_rule() -> None:
    engine = Engine(("total",))
    result = replay(
        _lines(
            [
                _record({"data": {"ndarray": [[2.0], [1]]}}, "a"),
                _record({"data": {"ndarray": ["cat"]}}, "b"),
            ]
        ),
        engine,
    )
    assert result.errors == []


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("binary", {"data": {"ndarray": [[0.2, 0.3, 0.5]]}}, "one score or two"),
        ("binary", {"data": {"ndarray": [[1.5]]}}, "not a probability"),
        ("binary", {"data": {"ndarray": ["yes"]}}, "not a number"),
        ("regression", {"data": {"ndarray": [[1.0, 2.0]]}}, "sends one"),
        ("regression", {"data": {"ndarray": [["x"]]}}, "not a number"),
        ("classification", {"data": {"ndarray": [[0.25]]}}, "not a class"),
    ],
)
def test_responses_that_do_not_fit_the_declared_kind_are_counted(
    kind: str, value: Any, reason: str
) -> None:
    engine = _engine(kind)
    result = replay(_lines([_record(value, "a")]), engine)
    assert [e.code for e in result.errors] == ["bad_scores"]
    assert reason in result.errors[0].reason


def test_binary_ignores_reward_for_scores_but_a_regression_truth_is_a_number() -> None:
    engine = _engine("regression")
    result = replay(
        _lines(
            [
                _record({"predictions": [2.0]}, "a"),
                _record({"reward": 1}, "a", "feedback"),
                _record({"predictions": [2.0]}, "b"),
                _record({"truth": {"data": {"ndarray": [["many"]]}}}, "b", "feedback"),
            ]
        ),
        engine,
    )
    total = _report_model(engine, result.clock)["windows"]["total"]
    assert total["outcomes"] == 2
    assert total["regression"] is None


# ---------------------------------------------------------------- configuration


def test_toml_configuration_with_globs_first_match_wins(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        """
[[model]]
namespace = "prod"
deployment = "fraud-*"
kind = "binary"
threshold = 0.3
classes = ["legit", "fraud"]

[[model]]
model = "price*"
kind = "regression"

[[model]]
kind = "classification"
classes = ["setosa", "versicolor", "virginica"]
"""
    )
    kinds = ModelKinds.load(path)
    fraud = kinds.spec(ModelKey("prod", "fraud-eu", "default", "m"))
    assert fraud == KindSpec(ModelKind.BINARY, 0.3, None, ("legit", "fraud"))
    assert fraud is not None
    assert fraud.binary_labels() == ("legit", "fraud")
    assert kinds.kind(ModelKey("dev", "x", "y", "price-v2")) == (ModelKind.REGRESSION, True)
    assert kinds.kind(ModelKey("dev", "fraud-eu", "y", "z")) == (ModelKind.CLASSIFICATION, True)
    assert ModelKinds().kind(ModelKey()) == (ModelKind.CLASSIFICATION, False)


def test_configured_class_names_name_index_outputs() -> None:
    engine = _engine("classification", classes=["setosa", "versicolor", "virginica"])
    result = replay(
        _lines([_record({"data": {"ndarray": [[2]]}}, "a"), _record(_truth(2), "a", "feedback")]),
        engine,
    )
    total = _report_model(engine, result.clock)["windows"]["total"]
    assert total["labels"] == ["virginica"]
    assert total["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"model": [{"kind": "ranking"}]}, "kind must be one of"),
        ({"model": [{"kind": "binary", "threshold": 2}]}, "threshold must be a number in"),
        ({"model": [{"kind": "regression", "threshold": 0.2}]}, "apply to kind"),
        ({"model": [{"kind": "binary", "classes": ["a", "b", "c"]}]}, "2 classes"),
        ({"model": [{"kind": "binary", "classes": ["a", "b"], "positive": "c"}]}, "not one of"),
        ({"model": [{"kind": "binary", "colour": "red"}]}, "unknown field"),
        ({"model": [{"kind": "binary", "model": 3}]}, "must be a string"),
        ({"models": []}, "unknown key"),
        ({"model": {"kind": "binary"}}, "array of tables"),
    ],
)
def test_invalid_configuration_names_the_rule_and_field(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelKindsError, match=message):
        ModelKinds.parse(document)


def test_unreadable_or_invalid_toml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelKindsError, match="models configuration"):
        ModelKinds.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\nkind=")
    with pytest.raises(ModelKindsError, match="not valid TOML"):
        ModelKinds.load(bad)


# ---------------------------------------------------------------- scores on events


def _decoded(value: Any) -> Event:
    record = _record(value, "a")
    event = decode_kafka_record(record["headers"], value, 0, SourcePosition("t", 0, 0))
    assert not isinstance(event, DecodeError)
    return event


def test_decoded_responses_carry_their_rows_and_top_scores() -> None:
    event = _decoded({"data": {"ndarray": [[0.2, 0.8], [0.6, 0.4]]}})
    assert event.values == [[0.2, 0.8], [0.6, 0.4]]
    assert top_scores(event.values) == (0.8, 0.6)
    assert top_scores(_decoded({"predictions": [0.1]}).values) == (0.9,)
    assert top_scores(_decoded({"predictions": [3]}).values) is None
    assert top_scores(_decoded({"data": {"ndarray": [[3.0, 1.0]]}}).values) is None
    read = _engine("binary").kinds.interpret(_decoded({"data": {"ndarray": [[0.2]]}}))
    assert not isinstance(read, DecodeError)
    scores = read[2]
    assert scores is not None
    assert math.isclose(scores.confidence(0), 0.8)


# ---------------------------------------------------------------- the command line


def test_replay_models_config_json_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[model]]\nmodel = "classifier"\nkind = "binary"\n')
    assert main(["replay", str(_CASE_INPUT), "--models-config", str(config)]) == 0
    (model,) = orjson.loads(capsys.readouterr().out)["models"]
    assert model["kind"] == "binary"
    assert model["windows"]["total"]["binary"]["roc_auc"] == 1.0
    code = main(["replay", str(_CASE_INPUT), "--models-config", str(config), "--output", "table"])
    assert code == 0
    table = capsys.readouterr().out
    assert "prod/seldon-single-model/default/classifier (binary)" in table
    assert "roc_auc  log_loss   brier" in table


def test_replay_refuses_an_invalid_models_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[model]]\nkind = "binary"\nthreshold = 7\n')
    assert main(["replay", str(_CASE_INPUT), "--models-config", str(config)]) == 2
    assert "threshold must be a number in [0, 1]" in capsys.readouterr().err
