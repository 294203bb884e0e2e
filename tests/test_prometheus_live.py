"""The monitoring parts against a real Prometheus scraping a running processor.

``feedback-stream demo --http-port P`` runs the processor with the seed's iris
traffic (default LogisticRegression vs shadow Perceptron). A real Prometheus
(Debian's package, ``scripts/install-prometheus.sh``) on a free port scrapes
it every second and evaluates ``deploy/prometheus/rules.yml`` every second.
Then:

* the cumulative accuracy recorded from the counters equals the processor's
  own window gauges exactly, per predictor and for the seed's
  ``sum(correct_total) / sum(total_total)`` panel;
* the 5m and 1h recording rules (``increase()``) equal the processor's exact
  accuracy over the outcomes Prometheus saw;
* every rule evaluates without error, and every dashboard query runs and
  returns data.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy_static import (
    ARCHITECTURE,
    RULES_FILE,
    dashboard_targets,
    interpolate,
    prometheus_binary,
)

pytestmark = pytest.mark.timeout(300)

DEMO_READY_TIMEOUT_S = 90.0
DATA_TIMEOUT_S = 120.0
MIN_KNOWN_PER_PREDICTOR = 50
PREDICTORS = {"default", "shadow"}
GROUP = "namespace, deployment, predictor"
RULE = "namespace_deployment_predictor:feedback_stream_"


# -- processes -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_until(
    ready: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{what} not ready after {timeout_s}s:\n{log.read_text(errors='replace')[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def processor_address() -> str:
    """``host:port`` of the processor: ``FEEDBACK_STREAM_TEST_PROCESSOR_URL``'s, or a free one.

    That variable names a processor already running with traffic (the compose
    stack's ``http://127.0.0.1:8080``, say) instead of the demo started here.
    """
    given = os.environ.get("FEEDBACK_STREAM_TEST_PROCESSOR_URL")
    if given:
        return urllib.parse.urlsplit(given).netloc
    return f"127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def prometheus_url(
    processor_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping the processor every second, with our rules.

    It starts before the processor, so its first scrape comes before the first
    outcome and ``increase()`` misses no more than it must (see
    :func:`test_windowed_accuracy_rules_agree_with_the_processor`).
    """
    binary = prometheus_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {"job_name": "feedback-stream", "static_configs": [{"targets": [processor_address]}]}
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _get(f"{url}/-/ready")[0] == 200, 60.0, "prometheus", proc, log)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def processor_url(
    processor_address: str, prometheus_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A running ``feedback-stream demo`` (processor + iris traffic), ready."""
    url = f"http://{processor_address}"
    if os.environ.get("FEEDBACK_STREAM_TEST_PROCESSOR_URL"):
        yield url
        return
    executable = Path(sys.executable).parent / "feedback-stream"
    assert executable.exists(), f"{executable} missing: pip install -e '.[dev,demo]'"
    port = urllib.parse.urlsplit(url).port
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDBACK_STREAM_")}
    env["FEEDBACK_STREAM_HTTP_HOST"] = "127.0.0.1"
    env["FEEDBACK_STREAM_WINDOWS"] = "total,5m,1h,1000"
    models = tmp_path_factory.mktemp("models") / "models.toml"
    models.write_text(MODELS_TOML)
    env["FEEDBACK_STREAM_MODELS_CONFIG"] = str(models)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(executable),
                "demo",
                f"--http-port={port}",
                "--request-interval=0.1",
                # The first outcome comes seconds after the processor is up,
                # so Prometheus samples every counter at 0 first.
                "--feedback-delay=5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_until(
            lambda: _get(f"{url}/readyz")[0] == 200, DEMO_READY_TIMEOUT_S, "demo", proc, log
        )
        _post_scored(url)
        yield url
    finally:
        _stop(proc)


MODELS_TOML = """
[[model]]
deployment = "iris-perf"
predictor = "default"
kind = "classification"

[[model]]
deployment = "scored-fraud"
kind = "binary"

[[model]]
deployment = "scored-price"
kind = "regression"
"""
"""The demo's default model sends predict_proba rows; two more models send scores."""

BINARY_ROWS = ((0.9, 1), (0.8, 0), (0.3, 1), (0.2, 0), (0.6, 1), (0.1, 0))
REGRESSION_ROWS = ((1.5, 1.0), (2.0, 2.5), (4.0, 4.0), (-1.0, 0.5))


def _post_scored(url: str) -> None:
    """Responses and feedback of a binary and a regression model, over HTTP ingest.

    They give the dashboard's score panels (ROC AUC, MAE, ...) data; their
    predictor ``scorer`` keeps them out of the default-vs-shadow checks.
    """

    def post(deployment: str, kind: str, puid: str, body: object) -> None:
        ce_type = "io.seldon.serving." + (
            "feedback" if kind == "feedback" else "inference.response"
        )
        request = urllib.request.Request(
            f"{url}/",
            data=json.dumps(body).encode(),
            headers={
                "Ce-Specversion": "1.0",
                "Ce-Type": ce_type,
                "Ce-Id": f"{deployment}-{kind}-{puid}",
                "Ce-Source": "test",
                "Ce-Requestid": f"{deployment}-{puid}",
                "Ce-Namespace": "seldon",
                "Ce-Inferenceservicename": deployment,
                "Ce-Endpoint": "scorer",
                "Ce-Modelid": "m",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5.0) as response:
            assert response.status == 202

    for i, (score, truth) in enumerate(BINARY_ROWS):
        post("scored-fraud", "response", str(i), {"data": {"ndarray": [[score]]}})
        post("scored-fraud", "feedback", str(i), {"truth": {"data": {"ndarray": [[truth]]}}})
    for i, (prediction, target) in enumerate(REGRESSION_ROWS):
        post("scored-price", "response", str(i), {"predictions": [prediction]})
        post("scored-price", "feedback", str(i), {"truth": {"data": {"ndarray": [target]}}})


# -- queries ---------------------------------------------------------------


def _api(prometheus: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    status, body = _get(f"{prometheus}/api/v1/{path}?{query}", timeout=15.0)
    document = json.loads(body)
    assert status == 200, document
    assert document["status"] == "success", document
    return document["data"]


def query(prometheus: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = _api(prometheus, "query", **params)
    result: list[dict[str, Any]] = data["result"]
    return result


def by_predictor(result: list[dict[str, Any]]) -> dict[str, float]:
    """Values of the demo's default and shadow predictors (not the scored models' ``scorer``)."""
    return {
        item["metric"]["predictor"]: float(item["value"][1])
        for item in result
        if item["metric"].get("predictor") in PREDICTORS
    }


def scalar(result: list[dict[str, Any]]) -> float:
    (item,) = result
    return float(item["value"][1])


def sample_times(prometheus: str, selector: str, span: str = "20s") -> list[float]:
    """Timestamps of the samples of ``selector`` over the last ``span``, ascending."""
    times = {
        float(ts) for item in query(prometheus, f"{selector}[{span}]") for ts, _ in item["values"]
    }
    return sorted(times)


@pytest.fixture(scope="module")
def settled(prometheus_url: str, processor_url: str) -> str:
    """Prometheus, once both predictors have labelled outcomes and rules ran."""
    deadline = time.monotonic() + DATA_TIMEOUT_S
    known: dict[str, float] = {}
    while time.monotonic() < deadline:
        known = by_predictor(query(prometheus_url, f"{RULE}known:cumulative"))
        ready = known.keys() >= PREDICTORS and all(
            known[predictor] >= MIN_KNOWN_PER_PREDICTOR for predictor in PREDICTORS
        )
        if ready and query(prometheus_url, f"{RULE}accuracy_vs_default:zscore1h"):
            time.sleep(3)  # a few more scrapes, so rate() over 1m has samples
            return prometheus_url
        time.sleep(1)
    pytest.fail(f"no labelled outcomes for {PREDICTORS} after {DATA_TIMEOUT_S}s: {known}")


def _processor_accuracy(window: str) -> str:
    return (
        f'sum by ({GROUP}) (feedback_stream_window_correct{{window="{window}"}})'
        f' / sum by ({GROUP}) (feedback_stream_window_known{{window="{window}"}})'
    )


def _assert_close(got: float, expected: float, what: str) -> None:
    """Equal to 1e-12, or both NaN: no labelled outcome yet, accuracy undefined on both sides."""
    if math.isnan(expected):
        assert math.isnan(got), f"{what}: {got} != NaN"
        return
    assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12), f"{what}: {got} != {expected}"


# -- tests -----------------------------------------------------------------


def test_prometheus_scrapes_the_processor(settled: str) -> None:
    assert scalar(query(settled, 'up{job="feedback-stream"}')) == 1.0


def test_every_rule_evaluates_without_error(settled: str) -> None:
    groups = _api(settled, "rules")["groups"]
    expected = {group["name"] for group in yaml.safe_load(RULES_FILE.read_text())["groups"]}
    assert {group["name"] for group in groups} == expected
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


def test_cumulative_accuracy_rule_equals_the_processor(settled: str) -> None:
    """The recorded accuracy equals the processor's window="total" gauges exactly.

    A rule evaluated at ``t`` saw the newest scrape appended by then: the one
    before ``t`` or, when a scrape was still being appended, the one before
    it. The recorded value must equal the processor's numbers of one of them.
    """
    recorded = f"{RULE}accuracy:ratio_cumulative"
    evaluation = sample_times(settled, recorded)[-1]
    scrapes = [t for t in sample_times(settled, 'up{job="feedback-stream"}') if t <= evaluation]
    assert len(scrapes) >= 2
    rule_values = by_predictor(query(settled, recorded, at=evaluation))
    assert rule_values.keys() >= PREDICTORS
    candidates = [
        by_predictor(query(settled, _processor_accuracy("total"), at=scrape + 0.0005))
        for scrape in scrapes[-2:]
    ]
    matches = [
        candidate
        for candidate in candidates
        if candidate.keys() == rule_values.keys()
        and all(math.isclose(candidate[p], rule_values[p], rel_tol=1e-12) for p in rule_values)
    ]
    assert matches, f"rule {rule_values} matches neither scrape's gauges {candidates}"


def test_counter_accuracy_equals_the_processor_at_every_scrape(settled: str) -> None:
    """Counters net of retractions give the gauges' numbers in every recent scrape."""

    def net(result: str) -> str:
        applied = f'feedback_stream_outcomes_total{{result=~"{result}"}}'
        retracted = f'feedback_stream_outcomes_retracted_total{{result=~"{result}"}}'
        return f"sum by ({GROUP}) ({applied}) - sum by ({GROUP}) ({retracted} or 0 * {applied})"

    counters, known = net("correct"), net("correct|incorrect")
    for scrape in sample_times(settled, 'up{job="feedback-stream"}', "10s"):
        at = scrape + 0.0005
        from_counters = by_predictor(query(settled, f"({counters}) / ({known})", at=at))
        from_gauges = by_predictor(query(settled, _processor_accuracy("total"), at=at))
        per_model = by_predictor(query(settled, 'feedback_stream_accuracy{window="total"}', at=at))
        assert from_gauges.keys() >= PREDICTORS
        assert from_counters.keys() == from_gauges.keys()
        for predictor, value in from_gauges.items():
            _assert_close(from_counters[predictor], value, f"counters {predictor} at {at}")
            # Before the first labelled outcome the accuracy gauge is absent: undefined.
            model_value = per_model.get(predictor, math.nan)
            _assert_close(model_value, value, f"accuracy gauge {predictor} at {at}")


def test_seed_panel_query_equals_the_counters(settled: str) -> None:
    """The seed's sum(correct_total) / sum(total_total), as docs/architecture.md gives it."""
    match = re.search(
        r"```\n(sum\(feedback_stream_window_correct[^\n]+)\n```", ARCHITECTURE.read_text()
    )
    assert match
    seed_query = match.group(1)
    scrape = sample_times(settled, 'up{job="feedback-stream"}', "10s")[-1]
    at = scrape + 0.0005
    seed_value = scalar(query(settled, seed_query, at=at))
    correct = scalar(query(settled, 'sum(feedback_stream_outcomes_total{result="correct"})', at=at))
    retracted = query(
        settled, 'sum(feedback_stream_outcomes_retracted_total{result="correct"})', at=at
    )
    known = scalar(
        query(settled, 'sum(feedback_stream_outcomes_total{result=~"correct|incorrect"})', at=at)
    )
    retracted_known = query(
        settled,
        'sum(feedback_stream_outcomes_retracted_total{result=~"correct|incorrect"})',
        at=at,
    )
    net_correct = correct - (scalar(retracted) if retracted else 0.0)
    net_known = known - (scalar(retracted_known) if retracted_known else 0.0)
    _assert_close(seed_value, net_correct / net_known, "seed panel")
    assert 0.0 < seed_value <= 1.0


@pytest.mark.parametrize("window", ["5m", "1h"])
def test_windowed_accuracy_rules_equal_the_processor(settled: str, window: str) -> None:
    """The 5m / 1h rules equal the processor's accuracy over the outcomes they saw.

    Prometheus has run for less than 5 minutes, so ``increase()`` covers what
    happened since it first sampled a predictor's counters: the processor's own
    numbers for that are the change of its cumulative gauges since then (from
    0 when the gauges did not exist yet). ``increase()`` extrapolates every
    series to the ends of the range, from 0 when it first saw the series at 0:
    the processor exports a model's counters at 0 before their first
    increment, and Prometheus scrapes the demo before its first outcome, so
    the correct and the known counts are scaled alike and the ratio is exact.
    A processor that ran before Prometheus (``FEEDBACK_STREAM_TEST_PROCESSOR_URL``)
    leaves series first seen above 0, each then off by up to one outcome.
    """
    evaluation = sample_times(settled, f"{RULE}accuracy:ratio{window}")[-1]
    started = sample_times(settled, 'up{job="feedback-stream"}', "10m")[0]
    assert evaluation - started < 300, "the test assumes Prometheus ran for less than 5m"
    rule = by_predictor(query(settled, f"{RULE}accuracy:ratio{window}", at=evaluation))
    assert rule.keys() >= PREDICTORS
    first: dict[str, list[tuple[float, float]]] = {}
    for item in query(settled, "feedback_stream_outcomes_total[10m]", at=evaluation):
        time_, value = item["values"][0]
        first.setdefault(item["metric"]["predictor"], []).append((float(time_), float(value)))

    def gauge(name: str, predictor: str, at: float) -> float:
        result = query(settled, f'{name}{{window="total",predictor="{predictor}"}}', at=at)
        return float(sum(float(item["value"][1]) for item in result))

    for predictor in PREDICTORS:
        since = min(time_ for time_, _ in first[predictor])
        seen = {
            name: gauge(name, predictor, evaluation) - gauge(name, predictor, since)
            for name in ("feedback_stream_window_correct", "feedback_stream_window_known")
        }
        known = seen["feedback_stream_window_known"]
        assert known > 0
        expected = seen["feedback_stream_window_correct"] / known
        from_zero = all(value == 0 for _, value in first[predictor])
        if not os.environ.get("FEEDBACK_STREAM_TEST_PROCESSOR_URL"):
            assert from_zero, f"{predictor}: counters first seen above 0: {first[predictor]}"
        tolerance = 1e-9 if from_zero else len(first[predictor]) / known
        assert math.isclose(rule[predictor], expected, rel_tol=1e-9, abs_tol=tolerance), (
            f"{predictor} {window}: rule {rule[predictor]}, processor {expected} "
            f"on the {known} outcomes since {since}"
        )


def test_shadow_comparison_is_recorded(settled: str) -> None:
    """The z-score compares shadow with default of the same deployment, and only them."""
    result = query(settled, f"{RULE}accuracy_vs_default:zscore1h")
    assert {item["metric"]["predictor"] for item in result} == {"shadow"}
    for item in result:
        assert math.isfinite(float(item["value"][1]))


def test_dashboard_variables_have_values(settled: str) -> None:
    for label, metric in (
        ("namespace", "feedback_stream_responses_total"),
        ("deployment", "feedback_stream_responses_total"),
        ("window", "feedback_stream_accuracy"),
    ):
        values = _api(settled, f"label/{label}/values", **{"match[]": metric})
        assert values, f"no {label} values for the dashboard's variable"


@pytest.mark.parametrize(
    ("title", "expr"),
    dashboard_targets(),
    ids=[f"{i}-{title}" for i, (title, _) in enumerate(dashboard_targets())],
)
def test_dashboard_query_returns_data(settled: str, title: str, expr: str) -> None:
    result = query(settled, interpolate(expr, window="total"))
    assert result, f"panel {title!r}: no data for {expr}"
