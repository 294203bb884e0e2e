"""Hostile HTTP input, one smallest case per fault: no 5xx, valid /metrics, every refusal counted.

Each test sends the least input that used to break something (an
undecodable header byte, a deep batch element, a structured event posted as
plain JSON, a request the HTTP parser refuses) and checks that the read
side stays up and that the refusal is counted with its reason and logged as
one WARNING line without a traceback.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from feedback_stream.decode import DecodeError, decode_attributes, decode_http
from feedback_stream.events import SourcePosition
from feedback_stream.service import Service
from tests._hostile import assert_read_side_healthy, send_raw
from tests._processor import get_json, get_text, parse_metrics, running, sample_sum, settings

CASES = Path(__file__).parent / "fixtures" / "cases"
POSITION = SourcePosition("http", 0, 1)
_RESPONSE = "io.seldon.serving.inference.response"
_RESPONSE_BODY = b'{"data":{"names":["a","b"],"ndarray":[[0.2,0.8]]}}'


def _binary_request(model: bytes, extra: bytes = b"", body: bytes = _RESPONSE_BODY) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\n"
        b"Ce-Id: h1\r\nCe-Specversion: 1.0\r\nCe-Source: s\r\n"
        b"Ce-Type: " + _RESPONSE.encode() + b"\r\n"
        b"Ce-Requestid: p-1\r\nCe-Namespace: ns\r\nCe-Inferenceservicename: dep\r\n"
        b"Ce-Endpoint: default\r\nCe-Modelid: " + model + b"\r\n" + extra + b"Content-Type: "
        b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _refused(samples: dict[Any, float], reason: str) -> float:
    return sample_sum(samples, "feedback_stream_refused_requests_total", reason=reason)


async def test_an_undecodable_header_byte_is_refused_and_the_read_side_stays_valid() -> None:
    async with running(settings()) as (_, url):
        status, body = await send_raw(url, _binary_request(b"cl\xffassifier"))
        assert status == 400
        assert json.loads(body)["error"] == "bad_header"
        text = await assert_read_side_healthy(url)
        samples = parse_metrics(text)
        assert sample_sum(samples, "feedback_stream_invalid_events_total", reason="bad_header") == 1
        assert _refused(samples, "bad_header") == 1
        # A header the event is not read from may carry anything: the event is accepted.
        status, _ = await send_raw(url, _binary_request(b"classifier", b"User-Agent: \xfe\xff\r\n"))
        assert status == 202
        document = await get_json(f"{url}/api/v1/models")
        assert [m["model"] for m in document["models"]] == ["classifier"]
        await assert_read_side_healthy(url)


def test_lone_surrogates_are_refused_by_every_decoder() -> None:
    headers = {"ce-type": _RESPONSE, "ce-requestid": "p", "ce-modelid": "m\udcff"}
    error = decode_http(headers, _RESPONSE_BODY, 0.0, POSITION)
    assert isinstance(error, DecodeError)
    assert error.code == "bad_header"
    attrs = {"type": _RESPONSE, "requestid": "p\ud800", "modelid": "m"}
    error = decode_attributes(attrs, _RESPONSE_BODY, 0.0, POSITION)
    assert isinstance(error, DecodeError)
    assert error.code == "bad_header"
    # Non-ASCII text that is valid UTF-8 is fine.
    event = decode_http({**headers, "ce-modelid": "modèle"}, _RESPONSE_BODY, 0.0, POSITION)
    assert not isinstance(event, DecodeError)
    assert event.key.model == "modèle"


def _structured(event_id: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "s",
        "type": _RESPONSE,
        "requestid": f"p-{event_id}",
        "modelid": "m",
        **extra,
        "data": data,
    }


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_a_deep_batch_element_refuses_the_whole_batch_and_applies_nothing() -> None:
    good = _structured("g", {"predictions": [1]})
    deep = _structured("d", {"predictions": _deep(300)})
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/",
            data=json.dumps([good, deep]),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        ) as reply:
            assert reply.status == 400
            problem = await reply.json()
        assert problem["applied"] == 0
        assert [e["index"] for e in problem["events"]] == [1]
        document = await get_json(f"{url}/api/v1/metrics")
        assert document["events"]["response"] == 0
        # The same depth in a single event gets the same answer, and an unread deep
        # extension attribute does not stop an event.
        async with http.post(
            f"{url}/",
            data=json.dumps(deep),
            headers={"Content-Type": "application/cloudevents+json"},
        ) as reply:
            assert reply.status == 400
            assert (await reply.json())["error"] == problem["events"][0]["error"]
        ok = _structured("o", {"predictions": [1]}, extension=_deep(300))
        async with http.post(
            f"{url}/",
            data=json.dumps([ok]),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        ) as reply:
            assert reply.status == 202
        await assert_read_side_healthy(url)


async def test_a_batch_of_non_objects_names_each_element() -> None:
    async with (
        running(settings()) as (_, url),
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/",
            data=b'[1, "x", null]',
            headers={"Content-Type": "application/cloudevents-batch+json"},
        ) as reply,
    ):
        assert reply.status == 400
        problem = await reply.json()
    assert [(e["index"], e["error"]) for e in problem["events"]] == [
        (0, "bad_envelope"),
        (1, "bad_envelope"),
        (2, "bad_envelope"),
    ]


async def test_structured_event_sent_as_plain_json_is_accepted() -> None:
    """Case structured-plain-json: accepted as structured; its model has one response."""
    case = CASES / "structured-plain-json"
    (request,) = json.loads((case / "requests.json").read_text())
    assert "structured-i/default/classifier has 1 response" in (case / "expected.txt").read_text()
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/", data=orjson.dumps(request["json"]), headers=request["headers"]
        ) as reply:
            assert reply.status == 202, await reply.text()
        (model,) = (await get_json(f"{url}/api/v1/models"))["models"]
    assert (model["deployment"], model["predictor"], model["model"]) == (
        "structured-i",
        "default",
        "classifier",
    )
    assert model["responses"] == 1


async def test_refused_requests_are_counted_by_reason_and_logged_as_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = settings(http_max_body=2048)
    caplog.set_level(logging.DEBUG)
    async with running(config) as (_, url), aiohttp.ClientSession() as http:
        # The HTTP parser refuses a header line without a colon.
        status, _ = await send_raw(url, b"POST / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        assert status == 400
        async with http.post(f"{url}/", data=b"x" * 4096) as reply:
            assert reply.status == 413
        async with http.post(
            f"{url}/", data=b"{}", headers={"Content-Type": "application/cloudevents-batch+json"}
        ) as reply:
            assert reply.status == 400
        async with http.post(
            f"{url}/", data=b"[", headers={"Content-Type": "application/cloudevents-batch+json"}
        ) as reply:
            assert reply.status == 400
        samples = parse_metrics((await get_text(f"{url}/metrics"))[1])
    assert _refused(samples, "bad_http_message") == 1
    assert _refused(samples, "request_entity_too_large") == 1
    assert _refused(samples, "bad_batch") == 1
    assert _refused(samples, "bad_json") == 1
    refusals = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refusals) == 4
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refusals)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class _ThreadRecorder(Service):
    """A service that notes which thread decoded each HTTP event."""

    threads: list[str]

    def decode(self, headers: Any, body: Any, arrival: float) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().decode(headers, body, arrival)


async def test_a_large_body_is_decoded_off_the_event_loop() -> None:
    service = _ThreadRecorder(settings())
    service.threads = []
    events = [_structured(f"e{i}", {"predictions": [i % 3]}) for i in range(2000)]
    body = orjson.dumps(events)
    assert len(body) > 64 * 1024
    await service.start()
    try:
        url = f"http://127.0.0.1:{service.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{url}/", data=body, headers={"Content-Type": "application/cloudevents-batch+json"}
            ) as reply:
                assert reply.status == 202
            async with http.post(
                f"{url}/",
                data=orjson.dumps(events[0] | {"id": "small", "requestid": "s"}),
                headers={"Content-Type": "application/cloudevents+json"},
            ) as reply:
                assert reply.status == 202
        document = await get_json(f"{url}/api/v1/metrics")
    finally:
        await service.stop()
    assert document["events"]["response"] == 2001
    main = threading.main_thread().name
    assert len(service.threads) == 2001
    assert main not in service.threads[:2000]  # the batch: in a worker thread
    assert service.threads[2000] == main  # a small body: decoded in place


async def test_a_client_gone_mid_body_is_a_counted_refusal_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    from urllib.parse import urlsplit

    async with running(settings()) as (_, url):
        address = urlsplit(url)
        assert address.hostname is not None
        assert address.port is not None
        _, writer = await asyncio.open_connection(address.hostname, address.port)
        whole = _binary_request(b"classifier")
        writer.write(whole[: len(whole) - 10])  # headers and part of the body, then gone
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        async def counted() -> float:
            _, text = await get_text(f"{url}/metrics")
            return _refused(parse_metrics(text), "client_disconnected")

        for _ in range(100):
            if await counted() == 1:
                break
            await asyncio.sleep(0.05)
        assert await counted() == 1
        # A browser's icon request is not a refusal.
        async with aiohttp.ClientSession() as session, session.get(f"{url}/favicon.ico") as icon:
            assert icon.status == 204
        samples = parse_metrics(await assert_read_side_healthy(url))
        assert sample_sum(samples, "feedback_stream_refused_requests_total") == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_its_content_encoding_cannot_decode_is_a_counted_400(
    encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(settings()) as (_, url):
        extra = b"Content-Encoding: " + encoding.encode() + b"\r\n"
        status, body = await send_raw(url, _binary_request(b"classifier", extra, b"not compressed"))
        assert status == 400
        document = json.loads(body)
        assert document["error"] == "content_encoding_error"
        assert encoding in document["reason"]
        samples = parse_metrics(await assert_read_side_healthy(url))
        assert _refused(samples, "content_encoding_error") == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
