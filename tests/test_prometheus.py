"""/metrics: names pass promtool, values equal scikit-learn, windows move on the wall clock."""

from __future__ import annotations

import asyncio
import math
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.exposition import choose_encoder

from feedback_stream.demo.traffic import DemoConfig, IrisTraffic, SimulatedRequest
from feedback_stream.events import ModelKey
from feedback_stream.generator import IntendedOutcome
from feedback_stream.prometheus import OTHER_CLASS, OVERFLOW_MODEL
from feedback_stream.service import Service
from tests._processor import (
    assert_gauges_match,
    get_text,
    model_labels,
    oracle,
    parse_metrics,
    running,
    sample_sum,
    settings,
)
from tests._services import system_tool


def _promtool() -> str:
    return system_tool("promtool", "prometheus")


def _iris(n: int, feedback_share: float = 0.8) -> list[SimulatedRequest]:
    config = DemoConfig(n_requests=n, feedback_share=feedback_share, seed=3)
    return list(IrisTraffic(config).requests())


def _intended(requests: list[SimulatedRequest]) -> list[IntendedOutcome]:
    out = []
    for request in requests:
        if not request.feedback:
            continue
        for predictor, predicted in request.predictions.items():
            key = ModelKey("seldon", "iris-perf", predictor, "classifier")
            out.append(
                IntendedOutcome(
                    key,
                    request.puid,
                    0,
                    predicted,
                    request.truth,
                    predicted == request.truth,
                    None,
                    request.at,
                )
            )
    return out


async def _post_all(url: str, requests: list[SimulatedRequest]) -> None:
    events = sorted((e for r in requests for e in r.events), key=lambda e: e.at)
    async with aiohttp.ClientSession() as http:
        for scheduled in events:
            async with http.post(
                f"{url}/", headers=scheduled.event.http_headers(), data=scheduled.event.body
            ) as reply:
                assert reply.status == 202, await reply.text()


async def test_exposition_passes_promtool_check_metrics(tmp_path: Path) -> None:
    promtool = _promtool()
    requests = _iris(30)
    async with running(settings(windows=["total", "5m", "1000"])) as (_, url):
        await _post_all(url, requests)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/", data=b"{}", headers={"Content-Type": "x"}) as reply,
        ):
            assert reply.status == 400
        status, text = await get_text(f"{url}/metrics")
    assert status == 200
    check = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await check.communicate(text.encode())
    assert check.returncode == 0, output.decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    for name in (
        "feedback_stream_outcomes_total",
        "feedback_stream_confusion_total",
        "feedback_stream_events_total",
        "feedback_stream_invalid_events_total",
        "feedback_stream_label_delay_seconds",
        "feedback_stream_accuracy",
        "feedback_stream_accuracy_ci_lower",
        "feedback_stream_accuracy_ci_upper",
        "feedback_stream_class_f1",
        "feedback_stream_average_f1",
        "feedback_stream_window_known",
        "feedback_stream_label_coverage",
        "feedback_stream_pending_puids",
        "feedback_stream_comparison_pairs",
        "feedback_stream_comparison_accuracy_difference",
        "feedback_stream_comparison_difference_ci_lower",
        "feedback_stream_comparison_difference_ci_upper",
        "feedback_stream_comparison_mcnemar_p_value",
        "feedback_stream_comparison_always_valid_p_value",
        "feedback_stream_comparison_decision",
        "feedback_stream_comparison_pairs_needed",
        "feedback_stream_awaiting_feedback_rows",
    ):
        assert name in names, name
    pairs = [
        line
        for line in text.splitlines()
        if line.startswith("feedback_stream_comparison_pairs{") and 'window="total"' in line
    ]
    assert len(pairs) == 4  # the 2x2 table of default vs shadow
    assert all('baseline="default"' in line and 'candidate="shadow"' in line for line in pairs)
    labelled = sum(1 for request in requests if request.feedback)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in pairs) == labelled  # each one paired


async def test_gauges_and_counters_equal_sklearn() -> None:
    requests = _iris(120)
    expected = oracle(_intended(requests))
    async with running(settings(windows=["total", "5m", "1000"])) as (_, url):
        await _post_all(url, requests)
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    assert len(expected) == 2
    for key, want in expected.items():
        for window in ("total", "5m", "1000"):
            assert_gauges_match(samples, key, window, want)
        labels = model_labels(key)
        correct = samples[("feedback_stream_outcomes_total", labels | {("result", "correct")})]
        assert correct == want.correct
        for (truth, predicted), count in want.confusion.items():
            cell = labels | {("true_class", truth), ("predicted_class", predicted)}
            assert samples[("feedback_stream_confusion_total", cell)] == count
        responses = samples[("feedback_stream_responses_total", labels)]
        labelled = samples[("feedback_stream_labelled_responses_total", labels)]
        assert responses == len(requests)
        assert labelled == want.outcomes
        assert samples[("feedback_stream_label_coverage", labels)] == labelled / responses
        assert samples[("feedback_stream_label_delay_seconds_count", labels)] == labelled
        low = samples[("feedback_stream_accuracy_ci_lower", labels | {("window", "total")})]
        high = samples[("feedback_stream_accuracy_ci_upper", labels | {("window", "total")})]
        assert low <= (want.accuracy or 0.0) <= high


async def test_the_seed_grafana_panel_has_a_one_line_equivalent() -> None:
    """``sum(correct_total) / sum(total_total)`` == our window gauges' and counters' ratio."""
    requests = _iris(60)
    intended = _intended(requests)
    seed_accuracy = sum(o.correct for o in intended) / len(intended)
    async with running(settings()) as (_, url):
        await _post_all(url, requests)
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    gauges = sample_sum(samples, "feedback_stream_window_correct", window="total") / sample_sum(
        samples, "feedback_stream_window_known", window="total"
    )
    counters = sample_sum(samples, "feedback_stream_outcomes_total", result="correct") / (
        sample_sum(samples, "feedback_stream_outcomes_total", result="correct")
        + sample_sum(samples, "feedback_stream_outcomes_total", result="incorrect")
    )
    assert math.isclose(gauges, seed_accuracy, abs_tol=1e-12)
    assert math.isclose(counters, seed_accuracy, abs_tol=1e-12)


async def test_sliding_windows_empty_on_the_wall_clock() -> None:
    offset = [0.0]

    def clock() -> float:
        import time

        return time.time() + offset[0]

    service = Service(settings(windows=["total", "1m", "50"]), clock=clock)
    await service.start()
    try:
        url = f"http://127.0.0.1:{service.http_port}"
        await _post_all(url, _iris(20))
        before = parse_metrics((await get_text(f"{url}/metrics"))[1])
        offset[0] = 120.0
        service.tick()
        after = parse_metrics((await get_text(f"{url}/metrics"))[1])
    finally:
        await service.stop()
    known = "feedback_stream_window_known"
    assert sample_sum(before, known, window="1m") == sample_sum(before, known, window="total") > 0
    assert sample_sum(after, known, window="1m") == 0
    assert sample_sum(after, known, window="total") == sample_sum(before, known, window="total")
    assert sample_sum(after, known, window="50") > 0
    # No outcome in the window: no accuracy sample rather than a stale or NaN one.
    assert not [k for k in after if k[0] == "feedback_stream_accuracy" and ("window", "1m") in k[1]]


async def test_cardinality_caps_bound_model_and_class_labels() -> None:
    config = settings(max_models=1, class_allowlist=["setosa", "virginica"])
    async with running(config) as (_, url):
        await _post_all(url, _iris(40, feedback_share=1.0))
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    models = {
        (dict(labels)["predictor"], dict(labels)["model"])
        for name, labels in samples
        if name == "feedback_stream_window_known"
    }
    # One model tracked on its own; the others are tracked (and shown) as one overflow model.
    assert len(models) == 2
    assert ("", OVERFLOW_MODEL) in models
    overflow = sample_sum(samples, "feedback_stream_outcomes_total", model=OVERFLOW_MODEL)
    assert overflow == 40
    classes = {
        dict(labels)["class"] for name, labels in samples if name == "feedback_stream_class_f1"
    }
    assert classes <= {"setosa", "virginica"}
    true_classes = {
        dict(labels)["true_class"]
        for name, labels in samples
        if name == "feedback_stream_confusion_total"
    }
    assert OTHER_CLASS in true_classes
    assert "versicolor" not in true_classes


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
async def test_metrics_negotiates_the_text_format(accept: str) -> None:
    async with (
        running(settings()) as (_, url),
        aiohttp.ClientSession() as http,
        http.get(f"{url}/metrics", headers={"Accept": accept}) as reply,
    ):
        assert reply.status == 200
        text = await reply.text()
    if accept:
        assert reply.content_type == "application/openmetrics-text"
        assert text.rstrip().endswith("# EOF")
    else:
        assert reply.content_type == "text/plain"


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
async def test_the_served_page_is_prometheus_clients_rendering_of_the_registry(
    accept: str,
) -> None:
    async with running(settings(windows=["total", "5m", "1000"])) as (service, url):
        await _post_all(url, _iris(40))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/metrics", headers={"Accept": accept}) as reply,
        ):
            assert reply.status == 200
            served = await reply.text()
        encoder, _ = choose_encoder(accept)
        expected = encoder(service.registry).decode()
    assert sorted(served.splitlines()) == sorted(expected.splitlines())
    assert 'feedback_stream_class_f1{class="setosa"' in served
