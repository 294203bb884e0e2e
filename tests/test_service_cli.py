"""``feedback-stream run`` as a process: configured by flags and environment, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests._processor import free_port, get_json, get_text, running, settings, unique, wait_until

EXECUTABLE = Path(sys.executable).parent / "feedback-stream"


@pytest.mark.timeout(60)
async def test_run_serves_http_only_and_exits_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {
        **os.environ,
        "FEEDBACK_STREAM_HTTP_HOST": "127.0.0.1",
        "FEEDBACK_STREAM_WINDOWS": "total,30s",
    }
    process = await asyncio.create_subprocess_exec(
        str(EXECUTABLE), "run", "--port", str(port), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:

        async def ready() -> bool:
            try:
                return (await get_text(f"http://127.0.0.1:{port}/readyz"))[0] == 200
            except OSError:
                return False

        await wait_until(ready, 30, "readyz")
        history = await get_json(f"http://127.0.0.1:{port}/api/v1/history")
        assert history["windows"] == ["total", "30s"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


async def test_invalid_settings_exit_2_naming_the_field() -> None:
    process = await asyncio.create_subprocess_exec(
        str(EXECUTABLE),
        "run",
        "--windows",
        "total,7x",
        env={**os.environ, "FEEDBACK_STREAM_TTL_S": "-1"},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"ttl_s" in stderr


@pytest.mark.kafka
@pytest.mark.timeout(60)
async def test_not_ready_until_partitions_are_assigned(kafka_bootstrap: str) -> None:
    config = settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_pattern=unique("no-such-topic") + ".*",
        kafka_group_id=unique("unready"),
    )
    async with running(config) as (_, url):
        status, body = await get_text(f"{url}/readyz")
        assert status == 503
        assert '"kafka_assigned":false' in body
        status, _ = await get_text(f"{url}/healthz")
        assert status == 200


@pytest.mark.timeout(60)
async def test_a_required_history_that_cannot_be_read_exits_1() -> None:
    process = await asyncio.create_subprocess_exec(
        str(EXECUTABLE),
        "run",
        "--port",
        str(free_port()),
        "--history-enabled",
        "--es-hosts",
        f"http://127.0.0.1:{free_port()}",
        "--es-max-retries",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode == 1
    assert b"Traceback" not in stderr
    assert b"127.0.0.1" in stderr
