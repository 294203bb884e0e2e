"""The JSON API and health endpoints over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from feedback_stream.demo.traffic import DemoConfig, IrisTraffic, replay_record
from tests._processor import get_json, get_text, running, settings


def _traffic(n: int) -> IrisTraffic:
    return IrisTraffic(DemoConfig(n_requests=n, feedback_share=0.7, seed=5))


async def _post_schedule(url: str, traffic: IrisTraffic) -> None:
    async with aiohttp.ClientSession() as http:
        for scheduled in traffic.schedule():
            async with http.post(
                f"{url}/", headers=scheduled.event.http_headers(), data=scheduled.event.body
            ) as reply:
                assert reply.status == 202


async def test_metrics_document_is_the_replay_document(tmp_path: Path) -> None:
    """Same events over HTTP and through ``replay --output json``: the same document.

    Time windows differ by construction (HTTP events are timed by arrival,
    replayed records by their timestamps), so the cumulative and count
    windows are compared, label delays aside.
    """
    traffic = _traffic(40)
    start_ms = int(time.time() * 1000)
    lines = [
        orjson.dumps(replay_record(event, start_ms=start_ms, offset=i))
        for i, event in enumerate(traffic.schedule())
    ]
    replay_file = tmp_path / "iris.jsonl"
    replay_file.write_bytes(b"\n".join(lines) + b"\n")
    replay = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "feedback_stream.cli", "replay", str(replay_file)],
        *["--window", "total", "--window", "100", "--output", "json"],
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await replay.communicate()
    assert replay.returncode == 0
    expected = json.loads(stdout)
    async with running(settings(windows=["total", "100"])) as (_, url):
        await _post_schedule(url, _traffic(40))
        document = await get_json(f"{url}/api/v1/metrics")
    assert set(document) == set(expected)
    assert set(document["events"]) == set(expected["events"])
    assert len(document["models"]) == len(expected["models"]) == 2
    for got, want in zip(document["models"], expected["models"], strict=True):
        assert set(got) == set(want)
        # Label delays are event-time differences, which differ by construction too.
        for window in (got["windows"], want["windows"]):
            for values in window.values():
                assert set(values.pop("label_delay_s")) == {"p50", "p90", "p99"}
        assert got["windows"] == want["windows"]
        assert got["counters"]["responses"] == want["counters"]["responses"]
        assert got["counters"]["labelled_responses"] == want["counters"]["labelled_responses"]
    assert document["events"]["feedback"] == expected["events"]["feedback"]


async def test_window_selection_and_bad_windows() -> None:
    async with running(settings(windows=["total", "5m", "1000"])) as (_, url):
        await _post_schedule(url, _traffic(10))
        one = await get_json(f"{url}/api/v1/metrics?window=5m")
        two = await get_json(f"{url}/api/v1/metrics?window=total,1000")
        status, body = await get_text(f"{url}/api/v1/metrics?window=7m")
    assert {tuple(m["windows"]) for m in one["models"]} == {("5m",)}
    assert {tuple(m["windows"]) for m in two["models"]} == {("total", "1000")}
    assert status == 400
    problem = json.loads(body)
    assert problem["error"] == "bad_window"
    assert "7m" in problem["reason"]


async def test_models_lists_coverage_and_current_metrics() -> None:
    traffic = _traffic(30)
    requests = list(_traffic(30).requests())
    async with running(settings(windows=["total", "5m"])) as (_, url):
        await _post_schedule(url, traffic)
        models = (await get_json(f"{url}/api/v1/models"))["models"]
        total = (await get_json(f"{url}/api/v1/models?window=total"))["models"]
    labelled = sum(r.feedback for r in requests)
    assert [m["predictor"] for m in models] == ["default", "shadow"]
    for model in models:
        assert model["responses"] == 30
        assert model["label_coverage"] == labelled / 30
        assert model["current"]["window"] == "5m"
        assert model["current"]["known"] == labelled
        assert {c["class"] for c in model["current"]["classes"]} <= {
            "setosa",
            "versicolor",
            "virginica",
        }
        assert [a["average"] for a in model["current"]["averages"]] == [
            "macro",
            "micro",
            "weighted",
        ]
    assert all(m["current"]["window"] == "total" for m in total)


async def test_history_series_for_the_page() -> None:
    async with running(settings(windows=["total", "1m"], tick_interval_s=0.05)) as (_, url):
        await _post_schedule(url, _traffic(20))
        await asyncio.sleep(0.3)
        history = await get_json(f"{url}/api/v1/history?window=total")
    assert history["window"] == "total"
    assert history["windows"] == ["total", "1m"]
    series = {m["predictor"]: m["points"] for m in history["models"]}
    assert set(series) == {"default", "shadow"}
    # A point sampled before a model's first outcome is null (a gap in the chart).
    values = {p: [v for _, v in points if v is not None] for p, points in series.items()}
    assert all(len(v) >= 2 for v in values.values())
    assert all(0.0 <= x <= 1.0 for v in values.values() for x in v)


async def test_health_readiness_page_and_static_files() -> None:
    async with running(settings()) as (service, url):
        assert (await get_json(f"{url}/healthz")) == {"status": "ok"}
        ready = await get_json(f"{url}/readyz")
        assert ready == {
            "ready": True,
            "checks": {"http": True},
            "reasons": {},
            "history": {"state": "disabled", "reason": "history.enabled is off"},
        }
        status, page = await get_text(f"{url}/")
        assert status == 200
        assert "/static/page.js" in page
        status, script = await get_text(f"{url}/static/page.js")
        assert status == 200
        assert "/api/v1/history" in script
        status, _ = await get_text(f"{url}/static/../settings.py")
        assert status == 404
        status, _ = await get_text(f"{url}/static/missing.js")
        assert status == 404
        service.request_stop()
