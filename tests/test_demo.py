"""``make demo`` and ``feedback-stream demo --kafka``: both predictors on /metrics, fast."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from feedback_stream.demo.runner import DemoOptions, run_demo
from feedback_stream.demo.traffic import DemoConfig
from tests._processor import free_port, parse_metrics, settings, unique

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = ("total", "1m", "100")


def _both_predictors_have_data(text: str) -> bool:
    samples = parse_metrics(text)
    filled = {
        (dict(labels)["predictor"], dict(labels)["window"])
        for (name, labels), value in samples.items()
        if name == "feedback_stream_window_known" and value > 0
    }
    return all((p, w) in filled for p in ("default", "shadow") for w in WINDOWS)


async def _scrape(url: str) -> str:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as reply:
            return await reply.text() if reply.status == 200 else ""
    except aiohttp.ClientError:
        return ""


@pytest.mark.timeout(90)
async def test_make_demo_shows_both_predictors_within_30s() -> None:
    port = free_port()
    env = {**os.environ, "FEEDBACK_STREAM_HTTP_PORT": str(port)}
    env.pop("FEEDBACK_STREAM_WINDOWS", None)
    # -o: the venv is already installed for this test run; don't let make reinstall it.
    process = await asyncio.create_subprocess_exec(
        *["make", "--no-print-directory", "-o", ".venv/.installed", "demo"],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        text = ""
        while time.monotonic() - started < 30:
            assert process.returncode is None, "make demo exited early"
            text = await _scrape(f"http://127.0.0.1:{port}/metrics")
            if _both_predictors_have_data(text):
                break
            await asyncio.sleep(0.5)
        assert _both_predictors_have_data(text), "no data for both predictors within 30 s"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, to the whole foreground group
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    log = output.decode()
    assert f"http://127.0.0.1:{port}/" in log
    assert f"http://127.0.0.1:{port}/metrics" in log
    assert "/api/v1/metrics" in log
    assert "Traceback" not in log


@pytest.mark.kafka
@pytest.mark.timeout(120)
async def test_demo_through_a_real_broker(kafka_bootstrap: str) -> None:
    port = free_port()
    config = settings(http_port=port, windows=list(WINDOWS))
    options = DemoOptions(
        DemoConfig(request_interval_s=0.05, feedback_delay_s=0.2, feedback_delay_jitter_s=0.2),
        kafka=kafka_bootstrap,
        topic=unique("demo"),
        duration_s=60,
    )
    out = io.StringIO()
    demo = asyncio.create_task(run_demo(config, options, out))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        text = ""
        while time.monotonic() < deadline and not _both_predictors_have_data(text):
            assert not demo.done(), out.getvalue()
            await asyncio.sleep(0.5)
            text = await _scrape(f"{url}/metrics")
        assert _both_predictors_have_data(text)
        assert "feedback_stream_consumer_lag" in text
    finally:
        if not demo.done():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C stops the demo cleanly
        assert await asyncio.wait_for(demo, timeout=30) == 0
    assert f"Kafka {kafka_bootstrap}" in out.getvalue()


def test_demo_help_lists_its_knobs() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "feedback-stream"), "demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--kafka", "--feedback-share", "--feedback-delay", "--port", "--windows"):
        assert flag in result.stdout


@pytest.mark.kafka
@pytest.mark.timeout(60)
async def test_traffic_only_feeds_a_processor_running_elsewhere(kafka_bootstrap: str) -> None:
    """``demo --kafka B --traffic-only``: Seldon-format records, unkeyed, for another processor."""
    topic = unique("demo-traffic")
    options = DemoOptions(
        DemoConfig(request_interval_s=0.02, feedback_delay_s=0.1, feedback_delay_jitter_s=0.1),
        kafka=kafka_bootstrap,
        topic=topic,
        duration_s=2.0,
        traffic_only=True,
    )
    out = io.StringIO()
    assert await run_demo(settings(), options, out) == 0
    assert "no processor here" in out.getvalue()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    records = [r for rs in batch.values() for r in rs]
    assert len(records) > 20
    types = {dict(r.headers)["ce_type"] for r in records}
    assert b"io.seldon.serving.inference.response" in types
    assert b"io.seldon.serving.feedback" in types
    assert all(r.key is None for r in records)
