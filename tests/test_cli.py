"""``feedback-stream replay`` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from feedback_stream.cli import build_parser, main
from feedback_stream.demo.traffic import DemoConfig, IrisTraffic, replay_record
from tests.test_replay import seed_records


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_bytes(b"\n".join(seed_records("t:0")) + b"\n")
    return path


def test_replay_json_reports_every_window_as_named(
    seed_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", str(seed_file), "--window", "total", "--window", "5s", "--window", "10"])
    assert code == 0
    document = orjson.loads(capsys.readouterr().out)
    model = document["models"][0]
    assert list(model["windows"]) == ["total", "5s", "10"]
    assert model["windows"]["total"]["accuracy"] == 46 / 63
    assert model["windows"]["10"]["outcomes"] == 10
    assert model["windows"]["5s"]["outcomes"] == 63
    assert (model["namespace"], model["deployment"], model["predictor"], model["model"]) == (
        "seldon",
        "sklearn",
        "default",
        "irisclassifier-default",
    )
    assert document["events"]["feedback"] == 63


def test_replay_request_time_and_ttl(seed_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["replay", str(seed_file), "--time", "request", "--window", "9s", "--ttl", "5s"]) == 0
    )
    document = orjson.loads(capsys.readouterr().out)
    # Feedback comes 10 s after the first prediction: with a 5 s TTL the early ones expired.
    assert document["events"]["expired"]["response"] > 0
    assert document["models"][0]["windows"]["9s"]["outcomes"] < 63


def test_replay_table(seed_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(seed_file), "--output", "table", "--window", "total"]) == 0
    out = capsys.readouterr().out
    assert "seldon/sklearn/default/irisclassifier-default" in out
    assert "0.7302" in out
    assert "events: request=100" in out


def test_invalid_lines_go_to_stderr_and_strict_makes_them_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(seed_records("t:2")[0] + b"\nnot json\n")
    assert main(["replay", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{path}:line 2: bad_record" in captured.err
    assert orjson.loads(captured.out)["events"]["invalid"] == 1
    assert main(["replay", str(path), "--strict"]) == 1
    assert "--strict" in capsys.readouterr().err


def test_missing_input_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["replay", "x", "--window", "5x"], ["replay", "x", "--ttl", "soon"], []]
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_console_script_reads_stdin(seed_file: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "feedback_stream.cli", "replay", "-", "--output", "json"],
        input=seed_file.read_bytes(),
        capture_output=True,
        check=True,
    )
    assert orjson.loads(completed.stdout)["events"]["response"] == 100


def test_replay_and_run_spell_windows_and_ttl_alike(
    seed_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", str(seed_file), "--windows", "total,5s", "--window", "10", "--ttl-s", "60"]
    assert main(argv) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert list(document["models"][0]["windows"]) == ["total", "5s", "10"]
    run = build_parser().parse_args(["run", "--window", "total", "--window", "5m", "--ttl", "1h"])
    from feedback_stream.settings import settings_from_args

    settings = settings_from_args(run)
    assert settings.windows == ["total", "5m"]
    assert settings.ttl_s == 3600.0


def test_replay_help_describes_its_input_with_an_example_it_accepts(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "feedback_stream.cli", "replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = completed.stdout
    for field in ("topic", "partition", "offset", "timestamp", "headers", "value"):
        assert field in text
    # The example record, as shown (indented JSON lines after the heading).
    lines = text.split("input: one consumed Kafka record per line, as a JSON object:\n")[1]
    example = "".join(line.strip() for line in lines.split("\n\n")[0].splitlines())
    path = tmp_path / "one.jsonl"
    path.write_text(example + "\n")
    replayed = subprocess.run(
        [sys.executable, "-m", "feedback_stream.cli", "replay", str(path), "--strict"],
        capture_output=True,
        check=True,
    )
    assert orjson.loads(replayed.stdout)["events"]["response"] == 1


@pytest.fixture
def demo_file(tmp_path: Path) -> Path:
    traffic = IrisTraffic(DemoConfig(n_requests=200, seed=0))
    lines = [
        orjson.dumps(replay_record(event, start_ms=1_700_000_000_000, offset=n))
        for n, event in enumerate(sorted(traffic.schedule(), key=lambda e: e.at))
    ]
    path = tmp_path / "demo.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_compares_default_and_shadow(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(demo_file), "--window", "total", "--window", "50"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    (comparison,) = document["comparisons"]
    assert comparison["baseline"]["predictor"] == "default"
    assert comparison["candidate"]["predictor"] == "shadow"
    total = comparison["windows"]["total"]
    assert total["pairs"] == 200
    table = total["table"]
    accuracies = {m["predictor"]: m["windows"]["total"]["accuracy"] for m in document["models"]}
    # The paired accuracies are the models' own: every labelled request is paired.
    assert total["baseline_accuracy"] == accuracies["default"]
    assert total["candidate_accuracy"] == accuracies["shadow"]
    assert table["both_right"] + table["baseline_only"] == round(200 * accuracies["default"])
    assert total["decision"] == "worse"
    assert comparison["windows"]["50"]["pairs"] == 50

    assert (
        main(["replay", str(demo_file), "--output", "table", "--compare", "shadow->default"]) == 0
    )
    out = capsys.readouterr().out
    assert "candidate default/classifier vs baseline shadow/classifier" in out
    assert "better" in out


def test_replay_refuses_a_malformed_comparison(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(demo_file), "--compare", "default"]) == 2
    assert "baseline->candidate" in capsys.readouterr().err
