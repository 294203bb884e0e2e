"""The README's usage examples work on what they say they work on (``make demo``)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from feedback_stream._lists import split_commas
from feedback_stream.demo import runner
from tests._processor import running, settings

README = Path(__file__).resolve().parent.parent / "README.md"
DEMO_URL = "http://127.0.0.1:8080"


def _curl_lines() -> list[str]:
    return [
        line.split("#")[0].strip()
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"curl -s '{DEMO_URL}/")
    ]


def test_the_readme_names_the_demo_windows() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"`make\s+demo` keeps `([^`]+)`", text)
    assert match, "the README says which windows the demo keeps"
    assert match.group(1) == runner._DEMO_WINDOWS


@pytest.mark.timeout(60)
async def test_the_readme_api_examples_answer_on_the_demo_windows() -> None:
    lines = _curl_lines()
    assert len(lines) >= 2
    windows = split_commas(runner._DEMO_WINDOWS)
    async with running(settings(windows=windows)) as (_, url):
        for line in lines:
            command = line.replace("curl -s", "curl -sf", 1).replace(DEMO_URL, url)
            completed = await asyncio.to_thread(
                subprocess.run, ["bash", "-c", command], capture_output=True, text=True
            )
            assert completed.returncode == 0, (line, completed.stdout, completed.stderr)
