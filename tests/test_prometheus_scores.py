"""Score gauges on /metrics and in the JSON API: promtool-clean, equal to scikit-learn."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sklearn.metrics import (
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from feedback_stream.events import ModelKey
from tests._processor import get_json, get_text, model_labels, parse_metrics, running, settings
from tests._services import system_tool

BINARY = ModelKey("prod", "fraud", "default", "scorer")
REGRESSION = ModelKey("prod", "price", "default", "regressor")
UNDECLARED = ModelKey("prod", "mystery", "default", "m")

MODELS_TOML = """
[[model]]
deployment = "fraud"
kind = "binary"
threshold = 0.5

[[model]]
deployment = "price*"
kind = "regression"
"""


def _headers(key: ModelKey, kind: str, puid: str, event_id: str) -> dict[str, str]:
    return {
        "Ce-Specversion": "1.0",
        "Ce-Type": "io.seldon.serving."
        + ("feedback" if kind == "feedback" else "inference.response"),
        "Ce-Id": event_id,
        "Ce-Source": "test",
        "Ce-Requestid": puid,
        "Ce-Namespace": key.namespace,
        "Ce-Inferenceservicename": key.deployment,
        "Ce-Endpoint": key.predictor,
        "Ce-Modelid": key.model,
        "Content-Type": "application/json",
    }


async def _post(url: str, key: ModelKey, kind: str, puid: str, body: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/", headers=_headers(key, kind, puid, f"{kind}-{puid}"), data=orjson.dumps(body)
        ) as reply,
    ):
        assert reply.status == 202, await reply.text()


BINARY_ROWS = [(0.9, 1), (0.8, 0), (0.3, 1), (0.2, 0), (0.6, 1)]
REGRESSION_ROWS = [(1.5, 1.0), (2.0, 2.5), (4.0, 4.0), (-1.0, 0.5)]


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML)
    return path


async def test_score_gauges_pass_promtool_and_equal_sklearn(models_file: Path) -> None:
    async with running(settings(windows=["total", "3"], models_config=str(models_file))) as (
        _,
        url,
    ):
        for i, (score, truth) in enumerate(BINARY_ROWS):
            await _post(url, BINARY, "response", f"b{i}", {"data": {"ndarray": [[score]]}})
            await _post(
                url, BINARY, "feedback", f"b{i}", {"truth": {"data": {"ndarray": [[truth]]}}}
            )
        for i, (prediction, target) in enumerate(REGRESSION_ROWS):
            await _post(url, REGRESSION, "response", f"r{i}", {"predictions": [prediction]})
            await _post(
                url, REGRESSION, "feedback", f"r{i}", {"truth": {"data": {"ndarray": [target]}}}
            )
        await _post(url, UNDECLARED, "response", "u0", {"predictions": [0.42]})
        status, text = await get_text(f"{url}/metrics")
        document = await get_json(f"{url}/api/v1/metrics")
    assert status == 200
    check = await asyncio.create_subprocess_exec(
        system_tool("promtool", "prometheus"), "check", "metrics",
        stdin=PIPE, stdout=PIPE, stderr=STDOUT,
    )  # fmt: skip
    output, _ = await check.communicate(text.encode())
    assert check.returncode == 0, output.decode()
    samples = parse_metrics(text)

    def gauge(name: str, key: ModelKey, window: str = "total") -> float:
        return samples[(name, model_labels(key, window=window))]

    y = [t for _, t in BINARY_ROWS]
    s = [p for p, _ in BINARY_ROWS]
    assert gauge("feedback_stream_roc_auc", BINARY) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert gauge("feedback_stream_log_loss", BINARY) == pytest.approx(log_loss(y, s), abs=1e-12)
    assert gauge("feedback_stream_brier_score", BINARY) == pytest.approx(
        brier_score_loss(y, s), abs=1e-12
    )
    assert gauge("feedback_stream_window_scored", BINARY) == 5
    last3 = BINARY_ROWS[-3:]
    assert gauge("feedback_stream_roc_auc", BINARY, "3") == pytest.approx(
        roc_auc_score([t for _, t in last3], [p for p, _ in last3]), abs=1e-12
    )
    targets = [t for _, t in REGRESSION_ROWS]
    pred = [p for p, _ in REGRESSION_ROWS]
    assert gauge("feedback_stream_mean_absolute_error", REGRESSION) == pytest.approx(
        mean_absolute_error(targets, pred), abs=1e-12
    )
    assert gauge("feedback_stream_root_mean_squared_error", REGRESSION) == pytest.approx(
        root_mean_squared_error(targets, pred), abs=1e-12
    )
    assert gauge("feedback_stream_r2_score", REGRESSION) == pytest.approx(
        r2_score(targets, pred), abs=1e-12
    )
    assert ("feedback_stream_roc_auc", model_labels(REGRESSION, window="total")) not in samples
    kinds = {
        (dict(labels)["model"], dict(labels)["kind"], dict(labels)["declared"])
        for (name, labels), value in samples.items()
        if name == "feedback_stream_model_kind" and value == 1
    }
    assert kinds == {
        ("scorer", "binary", "true"),
        ("regressor", "regression", "true"),
        ("m", "classification", "false"),
    }
    assert (
        samples[("feedback_stream_invalid_events_total", frozenset({("reason", "needs_kind")}))]
        == 1
    )
    assert samples[("feedback_stream_needs_kind_responses_total", model_labels(UNDECLARED))] == 1
    by_model = {m["model"]: m for m in document["models"]}
    assert by_model["scorer"]["kind"] == "binary"
    assert by_model["regressor"]["kind"] == "regression"
    assert by_model["m"]["kind"] == "needs_kind"
    assert by_model["scorer"]["windows"]["total"]["binary"]["roc_auc"] == pytest.approx(
        roc_auc_score(y, s), abs=1e-12
    )


def test_an_invalid_models_config_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[model]]\nkind = "ranking"\n')
    with pytest.raises(ValueError, match="kind must be one of"):
        settings(models_config=str(path))
