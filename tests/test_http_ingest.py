"""HTTP CloudEvents ingest over real HTTP: as Seldon's executor and a Knative broker send.

The "captured" requests are byte-exact HTTP/1.1 requests in the form Go's
``net/http`` client writes them for the executor's CloudEvents logger
(sorted ``Ce-*`` headers, ``User-Agent: Go-http-client/1.1``,
``Accept-Encoding: gzip``), and as a Knative broker's dispatcher forwards
them (extra ``Ce-Knativearrivaltime``, ``Traceparent``, ``Prefer: reply``).
They go over a plain socket, so nothing in between normalises them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from feedback_stream.events import ModelKey
from tests._processor import get_json, get_text, parse_metrics, running, sample_sum, settings

PUID = "8a4d3b1e-2f6c-4e0a-9b57-1c2d3e4f5a6b"
DEFAULT = ModelKey("seldon", "iris-perf", "default", "classifier")
SHADOW = ModelKey("seldon", "iris-perf", "shadow", "classifier")

_REQUEST_BODY = b'{"data":{"names":["f0","f1","f2","f3"],"ndarray":[[5.1,3.5,1.4,0.2]]}}'
_RESPONSE_BODY = (
    b'{"data":{"names":["t:0","t:1","t:2"],"ndarray":[[0.8796,0.1204,0.00001]]},'
    b'"meta":{"requestPath":{"classifier":"iris_perf:0.1"}}}'
)
_FEEDBACK_BODY = (
    b'{"request":{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}},'
    b'"response":{"data":{"names":["t:0","t:1","t:2"],"ndarray":[[0.8796,0.1204,0.00001]]}},'
    b'"reward":1,"truth":{"data":{"names":["t:0","t:1","t:2"],"ndarray":[[1,0,0]]}}}'
)


def _executor_request(ce_type: str, event_id: str, endpoint: str, body: bytes) -> bytes:
    """One POST as the executor's Go CloudEvents client writes it (headers sorted by Go)."""
    head = (
        "POST / HTTP/1.1\r\n"
        "Host: feedback-stream.seldon.svc.cluster.local:8080\r\n"
        "User-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Ce-Endpoint: {endpoint}\r\n"
        f"Ce-Id: {event_id}\r\n"
        "Ce-Inferenceservicename: iris-perf\r\n"
        "Ce-Modelid: classifier\r\n"
        "Ce-Namespace: seldon\r\n"
        f"Ce-Requestid: {PUID}\r\n"
        "Ce-Source: http://:8000/\r\n"
        "Ce-Specversion: 1.0\r\n"
        "Ce-Time: 2026-11-20T10:15:00.123456789Z\r\n"
        f"Ce-Type: {ce_type}\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: gzip\r\n"
        "\r\n"
    )
    return head.encode() + body


def _knative_request(ce_type: str, event_id: str, endpoint: str, body: bytes) -> bytes:
    """The same event forwarded by a Knative broker to a trigger's subscriber."""
    head = (
        "POST /events HTTP/1.1\r\n"
        "Host: feedback-stream.seldon.svc.cluster.local\r\n"
        "User-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Ce-Endpoint: " + endpoint + "\r\n"
        "Ce-Id: " + event_id + "\r\n"
        "Ce-Inferenceservicename: iris-perf\r\n"
        "Ce-Knativearrivaltime: 2026-11-20T10:15:00.2Z\r\n"
        "Ce-Modelid: classifier\r\n"
        "Ce-Namespace: seldon\r\n"
        f"Ce-Requestid: {PUID}\r\n"
        "Ce-Source: http://:8000/\r\n"
        "Ce-Specversion: 1.0\r\n"
        f"Ce-Type: {ce_type}\r\n"
        "Content-Type: application/json\r\n"
        "Kn-Namespace: seldon\r\n"
        "Prefer: reply\r\n"
        "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
        "Accept-Encoding: gzip\r\n"
        "\r\n"
    )
    return head.encode() + body


async def _send_raw(url: str, raw: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), body
    finally:
        writer.close()
        await writer.wait_closed()


_SELDON = "io.seldon.serving."


async def test_captured_executor_requests_are_joined() -> None:
    captures = [
        _executor_request(_SELDON + "inference.request", "a1", "default", _REQUEST_BODY),
        _executor_request(_SELDON + "inference.response", "a2", "default", _RESPONSE_BODY),
        _executor_request(_SELDON + "inference.response", "a3", "shadow", _RESPONSE_BODY),
        _executor_request(_SELDON + "feedback", "a4", "default", _FEEDBACK_BODY),
    ]
    async with running(settings()) as (_, url):
        for raw in captures:
            status, body = await _send_raw(url, raw)
            assert (status, body) == (202, b"")
        document = await get_json(f"{url}/api/v1/metrics?window=total")
        by_predictor = {m["predictor"]: m for m in document["models"]}
        default = by_predictor["default"]["windows"]["total"]
        assert (default["outcomes"], default["correct"]) == (1, 1)
        assert default["per_class"]["t:0"]["support"] == 1
        # The feedback named the default predictor: the shadow's response waits unlabelled.
        assert by_predictor["shadow"]["windows"]["total"]["outcomes"] == 0
        assert document["events"]["response"] == 2


async def test_knative_broker_delivery_on_events_path() -> None:
    captures = [
        _knative_request(_SELDON + "inference.response", "k1", "shadow", _RESPONSE_BODY),
        _knative_request(_SELDON + "feedback", "k2", "shadow", _FEEDBACK_BODY),
    ]
    async with running(settings()) as (_, url):
        for raw in captures:
            status, _ = await _send_raw(url, raw)
            assert status == 202
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        assert sample_sum(samples, "feedback_stream_outcomes_total", predictor="shadow") == 1


def _structured(ce_type: str, event_id: str, endpoint: str, data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": ce_type,
        "source": "http://:8000/",
        "datacontenttype": "application/json",
        "requestid": PUID,
        "modelid": "classifier",
        "inferenceservicename": "iris-perf",
        "namespace": "seldon",
        "endpoint": endpoint,
        "data": data,
    }


async def test_structured_and_batch_modes() -> None:
    response = _structured(
        _SELDON + "inference.response", "s1", "default", orjson.loads(_RESPONSE_BODY)
    )
    feedback = _structured(
        _SELDON + "feedback",
        "s2",
        "default",
        {"reward": 0, "truth": {"data": {"ndarray": [[0, 1, 0]]}}},
    )
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/",
            data=orjson.dumps(response),
            headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
        ) as reply:
            assert reply.status == 202
        async with http.post(
            f"{url}/events",
            data=orjson.dumps([feedback]),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        ) as reply:
            assert reply.status == 202
        document = await get_json(f"{url}/api/v1/metrics?window=total")
        (model,) = document["models"]
        total = model["windows"]["total"]
        # Truth [0, 1, 0] is class index 1; the response predicted t:0 (no names in truth).
        assert (total["outcomes"], total["correct"]) == (1, 0)


async def test_a_redelivered_event_counts_once() -> None:
    captures = [
        _executor_request(_SELDON + "inference.response", "d1", "default", _RESPONSE_BODY),
        _executor_request(_SELDON + "feedback", "d2", "default", _FEEDBACK_BODY),
    ]
    async with running(settings()) as (_, url):
        for raw in [*captures, *captures]:
            status, _ = await _send_raw(url, raw)
            assert status == 202
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        assert sample_sum(samples, "feedback_stream_outcomes_total") == 1
        assert sample_sum(samples, "feedback_stream_events_total", status="duplicate") == 2
        assert sample_sum(samples, "feedback_stream_events_total", status="accepted") == 2


_BINARY = {
    "Ce-Id": "x1",
    "Ce-Type": _SELDON + "inference.response",
    "Ce-Source": "http://:8000/",
    "Ce-Specversion": "1.0",
    "Ce-Requestid": PUID,
    "Ce-Modelid": "classifier",
    "Ce-Inferenceservicename": "iris-perf",
    "Ce-Namespace": "seldon",
    "Ce-Endpoint": "default",
    "Content-Type": "application/json",
}


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in _BINARY.items() if k != name}


BAD_INPUT = [
    pytest.param(_without("Ce-Type"), _RESPONSE_BODY, "missing_type", id="no-type"),
    pytest.param(
        {**_BINARY, "Ce-Type": "com.example.unrelated"}, _RESPONSE_BODY, "unknown_type", id="type"
    ),
    pytest.param(_without("Ce-Requestid"), _RESPONSE_BODY, "missing_puid", id="no-puid"),
    pytest.param(_BINARY, b'{"data": {"ndarray": [[0.1,', "bad_json", id="bad-json"),
    pytest.param(_BINARY, b"", "empty_value", id="empty"),
    pytest.param(
        {**_BINARY, "Content-Type": "application/protobuf"},
        b"\x0a\x03\x08\x01",
        "unsupported_content_type",
        id="protobuf",
    ),
    pytest.param(
        _BINARY, b'{"data": {"ndarray": [[[1, 2], [3, 4]]]}}', "not_classifiable", id="nested"
    ),
    pytest.param(
        {**_BINARY, "Ce-Type": _SELDON + "feedback"},
        b'{"reward": "lots"}',
        "bad_reward",
        id="reward",
    ),
    pytest.param(
        {"Content-Type": "application/cloudevents+json"},
        b'{"specversion": "1.0", "id": "x"',
        "bad_json",
        id="structured-json",
    ),
    pytest.param(
        {"Content-Type": "application/cloudevents+json"},
        b'{"specversion": "1.0", "id": "x", "source": "s"}',
        "bad_envelope",
        id="structured-envelope",
    ),
    pytest.param(
        {"Content-Type": "application/cloudevents-batch+json"}, b'{"a": 1}', "bad_batch", id="batch"
    ),
]


@pytest.mark.parametrize(("headers", "body", "code"), BAD_INPUT)
async def test_bad_input_gets_400_naming_the_problem(
    headers: dict[str, str], body: bytes, code: str
) -> None:
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/", data=body, headers=headers) as reply:
            assert reply.status == 400
            assert reply.content_type == "application/json"
            problem = await reply.json()
        assert problem["error"] == code
        assert problem["reason"]
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
        if code != "bad_batch":
            assert sample_sum(samples, "feedback_stream_invalid_events_total", reason=code) == 1


async def test_a_batch_with_a_refused_event_applies_none_and_names_it() -> None:
    good = _structured(_SELDON + "inference.response", "b1", "default", {"predictions": [1]})
    bad = {**good, "id": "b2", "requestid": ""}
    bad.pop("requestid")
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/",
            data=orjson.dumps([good, bad]),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        ) as reply:
            assert reply.status == 400
            problem = await reply.json()
        assert problem["events"] == [
            {"index": 1, "error": "missing_puid", "reason": problem["events"][0]["reason"]}
        ]
        assert problem["applied"] == 0
        document = await get_json(f"{url}/api/v1/metrics")
        # Validated whole: the good element was not applied either.
        assert document["events"]["response"] == 0
        assert document["events"]["invalid_reasons"] == {"missing_puid": 1}


async def test_oversized_bodies_and_wrong_methods_answer_json() -> None:
    config = settings(http_max_body=2048)
    async with running(config) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/", data=b"x" * 4096, headers=_BINARY) as reply:
            assert reply.status == 413
            assert (await reply.json())["error"]
        async with http.get(f"{url}/events") as reply:
            assert reply.status == 405
            assert (await reply.json())["error"]


async def test_ingest_can_be_switched_off() -> None:
    async with (
        running(settings(http_ingest=False)) as (_, url),
        aiohttp.ClientSession() as http,
        http.post(f"{url}/", data=_RESPONSE_BODY, headers=_BINARY) as reply,
    ):
        assert reply.status == 405
