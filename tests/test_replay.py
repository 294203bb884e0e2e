"""Replay of captured records: the seed's scenario, and invalid lines."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from feedback_stream.engine import Engine
from feedback_stream.replay import LineError, ReplayAborted, parse_record, replay

HEADERS = {
    "content-type": "application/json",
    "modelid": "irisclassifier-default",
    "inferenceservicename": "sklearn",
    "namespace": "seldon",
    "endpoint": "default",
    "protocol": "seldon",
}
RESPONSE = {
    "data": {
        "names": ["t:0", "t:1", "t:2"],
        "ndarray": [[0.0006985194531162841, 0.003668039039435755, 0.9956334415074478]],
    },
    "meta": {},
}
META = {"tags": {"user": "Seldon Admin", "date": "11/07/2020"}}


def seed_records(wrong_truth: str) -> list[bytes]:
    """The seed notebook's run, as Seldon's executor logs it straight to Kafka.

    100 predictions, all answered ``t:2``; feedback for the first 63 puids:
    46 with reward true and an empty truth, 17 with reward false and the
    one-hot truth ``wrong_truth``.
    """
    records: list[dict[str, Any]] = []
    start = 1594456910000

    def add(kind: str, puid: str, time_ms: int, value: Any) -> None:
        headers = {**HEADERS, "type": f"io.seldon.serving.{kind}", "requestid": puid}
        records.append(
            {
                "topic": "seldon",
                "partition": len(records) % 3,
                "offset": len(records),
                "timestamp": time_ms,
                "key": None,
                "headers": headers,
                "value": value,
            }
        )

    puids = [str(uuid.UUID(int=i + 1)) for i in range(100)]
    for i, puid in enumerate(puids):
        add("inference.request", puid, start + 20 * i, {"data": {"ndarray": [[1, 2, 3, 4]]}})
        add("inference.response", puid, start + 20 * i + 6, RESPONSE)
    hot = {"t:0": [1, 0, 0], "t:1": [0, 1, 0], "t:2": [0, 0, 1]}[wrong_truth]
    for idx, puid in enumerate(puids[:63]):
        feedback: dict[str, Any] = {"reward": idx < 46}
        if idx < 46:
            feedback["truth"] = {"meta": META}
        else:
            feedback["truth"] = {
                "data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [hot]},
                "meta": META,
            }
        add("feedback", puid, start + 10_000 + 15 * idx, feedback)
    return [orjson.dumps(r) for r in records]


def _only_model(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["models"]) == 1
    model: dict[str, Any] = report["models"][0]
    return model


def test_seed_scenario_exactly_as_sent() -> None:
    engine = Engine(("total",))
    result = replay(seed_records("t:2"), engine)
    assert result.errors == []
    report = engine.report(result.clock)
    model = _only_model(report)
    total = model["windows"]["total"]
    assert total["reward"] == {"count": 63, "sum": 46.0, "mean": 46 / 63}
    assert (total["outcomes"], total["known"], total["correct"]) == (63, 63, 63)
    assert total["accuracy"] == 1.0
    assert total["labels"] == ["t:2"]
    assert total["confusion_matrix"] == [[63]]
    assert model["counters"]["conflicts"] == 17
    assert model["counters"]["responses"] == 100
    assert model["counters"]["labelled_responses"] == 63
    events = report["events"]
    assert (events["request"], events["response"], events["feedback"]) == (100, 100, 63)
    assert events["pending"] == 100


def test_seed_scenario_with_the_wrong_truths_made_wrong() -> None:
    engine = Engine(("total",))
    result = replay(seed_records("t:0"), engine)
    model = _only_model(engine.report(result.clock))
    total = model["windows"]["total"]
    assert total["accuracy"] == 46 / 63
    assert total["correct"] == 46
    assert total["reward"]["mean"] == 46 / 63
    assert total["labels"] == ["t:0", "t:2"]
    assert total["confusion_matrix"] == [[0, 17], [0, 46]]
    assert total["per_class"]["t:2"]["precision"] == 46 / 63
    assert model["counters"]["conflicts"] == 0


def test_seed_responses_without_feedback_expire_after_the_ttl() -> None:
    lines = seed_records("t:2")
    late = orjson.loads(lines[-1])
    late["timestamp"] += 2 * 3600 * 1000
    late["headers"]["requestid"] = "someone-else"
    engine = Engine(("total",), ttl=3600)
    replay([*lines, orjson.dumps(late)], engine)
    events = engine.report()["events"]
    assert events["expired"] == {"request": 37, "response": 37, "feedback": 0}
    assert events["pending"] == 1


def test_invalid_lines_are_counted_and_reported_with_line_numbers() -> None:
    good = seed_records("t:2")[:2]
    lines = [
        good[0],
        b"",
        b"{broken",
        b'{"topic": "t", "partition": 0, "offset": 1, "timestamp": 5, "headers": {}, "value": {}}',
        b'{"topic": "t", "partition": "0", "offset": 1, "timestamp": 5, "headers": {}, "value": 1}',
        good[1],
    ]
    seen: list[LineError] = []
    engine = Engine()
    result = replay(lines, engine, on_error=seen.append)
    assert [(e.line, e.code) for e in seen] == [
        (3, "bad_record"),
        (4, "missing_type"),
        (5, "bad_record"),
    ]
    assert "partition" in seen[2].reason
    assert result.records == 5
    report = engine.report()
    assert report["events"]["invalid"] == 3
    assert report["events"]["invalid_reasons"] == {"bad_record": 2, "missing_type": 1}


def test_strict_mode_stops_at_the_first_invalid_line() -> None:
    with pytest.raises(ReplayAborted, match="line 2"):
        replay([seed_records("t:2")[0], b"[]"], Engine(), strict=True)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"[]", "JSON object"),
        (b'{"partition": 0}', "topic"),
        (b'{"topic": "t", "partition": 0, "offset": 0, "timestamp": "x"}', "timestamp"),
        (
            b'{"topic": "t", "partition": 0, "offset": 0, "timestamp": 1, "headers": {"a": 1}}',
            "headers",
        ),
        (b'{"topic": "t", "partition": 0, "offset": 0, "timestamp": 1, "headers": {}}', "value"),
    ],
)
def test_parse_record_says_what_is_wrong(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_record(line)


def test_seed_truth_sent_as_a_bare_index_matches_the_named_prediction() -> None:
    lines = []
    for line in seed_records("t:2"):
        record = orjson.loads(line)
        truth = record["value"].get("truth", {}) if isinstance(record["value"], dict) else {}
        if "data" in truth:
            truth["data"] = {"ndarray": [[2]]}
        lines.append(orjson.dumps(record))
    engine = Engine(("total",))
    replay(lines, engine)
    total = _only_model(engine.report())["windows"]["total"]
    assert total["accuracy"] == 1.0
    assert total["labels"] == ["t:2"]
