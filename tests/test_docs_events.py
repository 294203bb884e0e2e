"""docs/events.md, executed: every example runs as shown and prints what the page shows.

The page's fenced blocks carry a tag in their info string: ```` ```sh
example=NAME ```` is a command (or ```` ```json example=kafka ```` a record,
```` ```python example=kafka-produce ```` a script), ```` ```text
output=NAME ```` what the commands of that name print, in order. Commands
run in bash, against a processor started with the page's own ``run``
command line; the only edits are the addresses (``localhost:8080``, the
broker, the topic) and the path of the executable.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from feedback_stream.cli import build_parser
from feedback_stream.settings import settings_from_args
from tests._processor import create_topic, get_text, running, unique, wait_until

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"
BIN = Path(sys.executable).parent
PAGE_URL = "http://localhost:8080"

HTTP_EXAMPLES = (
    "http-binary",
    "http-structured",
    "http-batch",
    "kserve",
    "feedback-api",
    "refused",
)
ALL_EXAMPLES = {*HTTP_EXAMPLES, "kafka", "kafka-replay", "kafka-produce", "kafka-producer-run"}

_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    language: str
    tags: dict[str, str]
    text: str


def blocks() -> list[Block]:
    out = []
    for match in _FENCE.finditer(DOC.read_text(encoding="utf-8")):
        tags = dict(part.split("=", 1) for part in match.group(2).split() if "=" in part)
        out.append(Block(match.group(1), tags, match.group(3)))
    return out


def examples(name: str) -> list[Block]:
    return [b for b in blocks() if b.tags.get("example") == name]


def output(name: str) -> str:
    return "".join(b.text for b in blocks() if b.tags.get("output") == name)


def _run_shell(command: str, url: str, cwd: Path) -> str:
    command = command.replace(PAGE_URL, url).replace(".venv/bin/", f"{BIN}/")
    completed = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode in (0, 1), completed.stderr  # grep finding nothing: 1
    return completed.stdout


def _run_command() -> list[str]:
    (line,) = [
        b.text.strip() for b in blocks() if b.language == "sh" and "feedback-stream run" in b.text
    ]
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/feedback-stream"
    return argv[1:]


def test_every_tagged_block_is_executed_here() -> None:
    names = {b.tags.get("example") for b in blocks()} - {None}
    assert names == ALL_EXAMPLES
    for name in (*HTTP_EXAMPLES, "kafka-replay"):
        assert output(name), f"example {name} shows no output to check"


@pytest.mark.timeout(120)
async def test_http_examples_print_what_the_page_shows(tmp_path: Path) -> None:
    args = build_parser().parse_args([*_run_command(), "--http-host", "127.0.0.1"])
    config = settings_from_args(args, http_port=0)
    assert config.windows == ["total"]
    async with running(config) as (_, url):
        for name in HTTP_EXAMPLES:
            printed = ""
            for block in examples(name):
                printed += await asyncio.to_thread(_run_shell, block.text, url, tmp_path)
            assert printed == output(name), name


def _records(path: Path) -> Path:
    lines = [line for b in examples("kafka") for line in b.text.splitlines() if line.strip()]
    assert len(lines) == 6
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kafka_records_replay_as_the_page_shows(tmp_path: Path) -> None:
    _records(tmp_path / "records.jsonl")
    (command,) = examples("kafka-replay")
    assert _run_shell(command.text, PAGE_URL, tmp_path) == output("kafka-replay")


@pytest.mark.kafka
@pytest.mark.timeout(120)
async def test_kafka_records_produced_by_the_page_script_are_counted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _records(tmp_path / "records.jsonl")
    (script,) = examples("kafka-produce")
    (tmp_path / "produce.py").write_text(script.text)
    (run,) = examples("kafka-producer-run")
    argv = shlex.split(run.text)
    assert argv[:2] == [".venv/bin/python", "produce.py"]
    assert argv[3:] == ["localhost:9092", "seldon"]
    topic = unique("seldon")
    await create_topic(kafka_bootstrap, topic)
    produced = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *argv[1:3], kafka_bootstrap, topic],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    args = build_parser().parse_args(
        [
            *_run_command(),
            "--http-host",
            "127.0.0.1",
            "--kafka-bootstrap-servers",
            kafka_bootstrap,
            "--kafka-topics",
            topic,
            "--kafka-group-id",
            unique("docs"),
        ]
    )
    async with running(settings_from_args(args, http_port=0)) as (_, url):

        async def counted() -> bool:
            _, text = await get_text(f"{url}/metrics")
            return (
                'feedback_stream_window_known{deployment="iris-kafka",model="classifier",'
                'namespace="seldon",predictor="default",window="total"} 3.0'
                in text
                and 'feedback_stream_window_correct{deployment="iris-kafka",model="classifier",'
                'namespace="seldon",predictor="default",window="total"} 2.0'
                in text
            )

        await wait_until(counted, 60, "the page's Kafka records counted")
