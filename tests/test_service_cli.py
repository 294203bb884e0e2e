"""``feedback-stream run`` as a process: configured by flags and environment, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
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
    text = stderr.decode()
    assert "--ttl-s / FEEDBACK_STREAM_TTL_S" in text
    assert "--windows / FEEDBACK_STREAM_WINDOWS: '7x' is not a window" in text
    assert "ttl_s:" not in text


@pytest.mark.parametrize(
    ("argv", "env", "names", "message"),
    [
        (["--log-level", "LOUD"], {}, "--log-level / FEEDBACK_STREAM_LOG_LEVEL", "not a log level"),
        ([], {"FEEDBACK_STREAM_LOG_LEVEL": "LOUD"}, "--log-level", "not a log level"),
        (["--ttl-s", "0"], {}, "--ttl-s / FEEDBACK_STREAM_TTL_S", "must be positive"),
        (["--windows", "5x"], {}, "--windows / FEEDBACK_STREAM_WINDOWS", "'5x' is not a window"),
        (["--window", "5m", "--window", "5m"], {}, "--windows", "window 5m is given twice"),
        (["--es-hosts", "not-a-url"], {}, "--es-hosts / FEEDBACK_STREAM_ES__HOSTS", "not a URL"),
        (["--route", "bad"], {}, "--route / FEEDBACK_STREAM_ROUTE", "'puid' or 'partition'"),
        (
            [],
            {"FEEDBACK_STREAM_TICK_INTERVAL_S": "fast"},
            "--tick-interval-s / FEEDBACK_STREAM_TICK_INTERVAL_S",
            "valid number",
        ),
        (["--history-since", "yesterday"], {}, "--history-since / FEEDBACK_STREAM_HISTORY__", ""),
        (
            ["--kafka-topic-pattern", "["],
            {},
            "--kafka-topic-pattern / FEEDBACK_STREAM_KAFKA_TOPIC_PATTERN",
            "not a regular expression",
        ),
        (["--ingest-token-file", "/nonexistent"], {}, "--ingest-token-file", "cannot read"),
        (
            [],
            {"FEEDBACK_STREAM_KAFKA_SASL_PASSWORD_FILE": "/nonexistent"},
            "FEEDBACK_STREAM_KAFKA_SASL_PASSWORD_FILE",
            "cannot read the secret file",
        ),
    ],
)
def test_configuration_errors_are_usage_errors_before_anything_starts(
    argv: list[str], env: dict[str, str], names: str, message: str
) -> None:
    port = free_port()
    completed = subprocess.run(
        [str(EXECUTABLE), "run", "--http-host", "127.0.0.1", "--port", str(port), *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.splitlines()
    assert lines[0] == "usage: feedback-stream run [options]"
    assert lines[1].startswith(f"feedback-stream run: error: {names}"), lines
    assert message in lines[1]
    assert "Traceback" not in completed.stderr
    assert "HTTP on" not in completed.stderr  # nothing started


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
        "--es-startup-wait-s",
        "2",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=50)
    assert process.returncode == 1
    assert b"Traceback" not in stderr
    assert b"127.0.0.1" in stderr
    # It waited for the cluster (backoff) before giving up, and said so.
    assert b"waiting for it" in stderr


@pytest.mark.parametrize("extra", [[], ["--dlq-topic", "dead"], ["--repartition-topic", "keyed"]])
def test_an_unreachable_broker_fails_start_without_leaking_clients(extra: list[str]) -> None:
    nobody = free_port()  # nothing listens there
    completed = subprocess.run(
        [
            str(EXECUTABLE),
            "run",
            "--http-host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--kafka-bootstrap-servers",
            f"127.0.0.1:{nobody}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1, completed.stderr
    assert "Unable to bootstrap" in completed.stderr
    assert "Unclosed" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_port_in_use_names_the_setting_to_change() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            [str(EXECUTABLE), "run", "--http-host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert completed.returncode == 1, completed.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in completed.stderr
    assert "set --http-port / FEEDBACK_STREAM_HTTP_PORT" in completed.stderr
    assert "Traceback" not in completed.stderr
