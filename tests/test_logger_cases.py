"""Inputs captured from real Seldon Core and KServe loggers, each with the result a user expects.

Every case folder under ``fixtures/cases`` holds the input and ``expected.txt``;
each test here feeds the input the way it reached the product (replay lines,
or the logger's HTTP request byte for byte) and checks that result.
"""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import orjson

from feedback_stream.engine import Engine
from feedback_stream.replay import replay
from tests._captured import CASES, headers_of, load, raw_request, send_raw
from tests._oracle import order_free
from tests._processor import get_json, running, settings


def _lines(case: str) -> list[bytes]:
    return [line for line in (CASES / case / "input.jsonl").read_bytes().splitlines() if line]


def _report(lines: list[bytes]) -> dict[str, Any]:
    engine = Engine(("total",))
    result = replay(lines, engine)
    assert result.errors == []
    return engine.report()


def _model(report: dict[str, Any], **labels: str) -> dict[str, Any]:
    found = [m for m in report["models"] if all(m[k] == v for k, v in labels.items())]
    assert len(found) == 1, (labels, [(m["deployment"], m["model"]) for m in report["models"]])
    model: dict[str, Any] = found[0]
    return model


def test_seldon_duplicate_response_same_report_in_every_read_order() -> None:
    lines = _lines("seldon-duplicate-response")
    reports = [order_free(_report(list(order))) for order in itertools.permutations(lines)]
    assert all(report == reports[0] for report in reports[1:])
    model = _model(reports[0], model="irisclassifier-default")
    total = model["windows"]["total"]
    # The earlier response (partition 2, class 0) wins: the truth 0 makes it correct.
    assert (total["outcomes"], total["correct"]) == (1, 1)
    assert model["counters"]["responses"] == 1
    assert model["counters"]["labelled_responses"] == 1
    assert reports[0]["events"]["response"] == 2


def test_kserve_fanout_shared_id_both_services_get_their_outcome() -> None:
    report = _report(_lines("kserve-fanout-shared-id"))
    a = _model(report, deployment="fraud-a")["windows"]["total"]
    b = _model(report, deployment="fraud-b")["windows"]["total"]
    assert (a["outcomes"], a["correct"]) == (1, 1)
    assert (b["outcomes"], b["correct"]) == (1, 0)
    assert report["events"]["duplicate"] == 0


async def test_kserve_fanout_shared_id_over_http() -> None:
    requests = orjson.loads((CASES / "kserve-fanout-shared-id" / "requests.json").read_bytes())
    async with running(settings()) as (_, url):
        async with aiohttp.ClientSession() as session:
            for request in requests:
                # As send_http.py sends it: compact JSON with the case's headers.
                body = orjson.dumps(request["json"])
                async with session.post(url + "/", data=body, headers=request["headers"]) as reply:
                    assert (reply.status, await reply.read()) == (202, b"")
        report = await get_json(f"{url}/api/v1/metrics?window=total")
    a = _model(report, deployment="fraud-a")["windows"]["total"]
    b = _model(report, deployment="fraud-b")["windows"]["total"]
    assert (a["outcomes"], a["correct"], b["outcomes"], b["correct"]) == (1, 1, 1, 0)


def test_seldon_jsondata_reward_gives_accuracy_and_reward_mean() -> None:
    report = _report(_lines("seldon-jsondata-reward"))
    total = _model(report, deployment="sentiment", model="textmodel")["windows"]["total"]
    assert total["accuracy"] == 0.5
    assert total["reward"]["mean"] == 0.5
    assert total["labels"] == []  # the classes are unknown: no confusion matrix
    assert report["events"]["invalid"] == 0


async def test_seldon_string_reward_is_accepted_as_the_executor_sent_it() -> None:
    capture = load("seldon-string-reward", "captured-request.json")
    headers = headers_of(capture)
    response = {
        "raw_headers": [
            (name, value)
            for name, value in capture["raw_headers"]
            if name not in ("Ce-Type", "Ce-Id")
        ]
        + [("Ce-Type", "io.seldon.serving.inference.response"), ("Ce-Id", "resp-1")],
        "body_text": '{"data":{"names":["t:0","t:1","t:2"],"ndarray":[[0.1,0.8,0.1]]},"meta":{}}',
    }
    async with running(settings()) as (_, url):
        assert await send_raw(url, raw_request(response)) == (202, b"")
        assert await send_raw(url, raw_request(capture)) == (202, b"")
        report = await get_json(f"{url}/api/v1/metrics?window=total")
    total = _model(report, model=headers["Ce-Modelid"])["windows"]["total"]
    assert (total["outcomes"], total["correct"], total["reward"]["mean"]) == (1, 1, 1.0)


async def test_kserve_gzip_unlabelled_response_is_read_by_its_magic_bytes() -> None:
    captures = [load("kserve-gzip-unlabelled", name) for name in ("01.json", "02.json")]
    async with running(settings()) as (_, url):
        for capture in captures:
            assert await send_raw(url, raw_request(capture)) == (202, b"")
        report = await get_json(f"{url}/api/v1/metrics?window=total")
    model = _model(report, namespace="kserve-probe", deployment="iris-v2-gzip")
    # The agent names only the component; the V2 body names the served model.
    assert model["model"] == "iris-v2"
    assert model["counters"]["labelled_responses"] == 1
    assert model["windows"]["total"]["outcomes"] == 40
    assert report["events"]["invalid"] == 0
