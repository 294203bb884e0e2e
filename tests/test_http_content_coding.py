"""Content codings of ingest bodies, over a real server: undone, or a counted JSON refusal.

Every ingest endpoint (binary and structured mode, a batch, Seldon's
feedback API, the separate ingest listener) takes gzip, deflate (zlib or
raw), identity, stacked codings and any case; a coding we do not support
(a content coding, or a transfer coding other than chunked),
corrupt or truncated compressed data and a body inflating past the body cap
each answer JSON with the reason (``Accept-Encoding`` for an unsupported
coding) and move ``feedback_stream_invalid_events_total{reason}``, without
a traceback in the log.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from feedback_stream.http.content_coding import MAX_CODINGS, BodyRefusal, decode_content
from tests._hostile import assert_read_side_healthy, send_raw
from tests._processor import get_json, parse_metrics, running, sample_sum, settings

_LIMIT = 1 << 20
_RESPONSE = b'{"data":{"names":["a","b"],"ndarray":[[0.2,0.8]]}}'
_FEEDBACK = b'{"truth":{"data":{"ndarray":[[1]]}}}'
_FEEDBACK_PATH = "/api/v1.0/feedback"
_ids = itertools.count()


def _raw_deflate(data: bytes) -> bytes:
    stream = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return stream.compress(data) + stream.flush()


def _bad_crc(data: bytes) -> bytes:
    whole = gzip.compress(data)
    return whole[:-8] + bytes(b ^ 0xFF for b in whole[-8:-4]) + whole[-4:]


def _request(endpoint: str) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, plain body) of one new event for ``endpoint``."""
    event_id = f"cc-{next(_ids)}"
    response = "io.seldon.serving.inference.response"
    structured = {
        "specversion": "1.0",
        "id": event_id,
        "source": "s",
        "type": response,
        "requestid": f"p-{event_id}",
        "modelid": "classifier",
        "datacontenttype": "application/json",
        "data": json.loads(_RESPONSE),
    }
    if endpoint == "binary":
        headers = {
            "Ce-Specversion": "1.0",
            "Ce-Id": event_id,
            "Ce-Source": "s",
            "Ce-Type": response,
            "Ce-Requestid": f"p-{event_id}",
            "Ce-Modelid": "classifier",
            "Content-Type": "application/json",
        }
        return "/", headers, _RESPONSE
    if endpoint == "structured":
        headers = {"Content-Type": "application/cloudevents+json"}
        return "/events", headers, json.dumps(structured).encode()
    if endpoint == "batch":
        headers = {"Content-Type": "application/cloudevents-batch+json"}
        return "/", headers, json.dumps([structured]).encode()
    assert endpoint == "feedback"
    return _FEEDBACK_PATH, {"Seldon-Puid": f"p-{event_id}"}, _FEEDBACK


_ENDPOINTS = ("binary", "structured", "batch", "feedback")

_Encode = Callable[[bytes], bytes]
_READABLE: list[tuple[list[str], _Encode]] = [
    (["gzip"], gzip.compress),
    (["GZip"], gzip.compress),
    (["x-gzip"], gzip.compress),
    (["deflate"], zlib.compress),
    (["DEFLATE"], _raw_deflate),
    (["identity"], lambda b: b),
    ([""], lambda b: b),
    (["deflate, gzip"], lambda b: gzip.compress(zlib.compress(b))),
    (["gzip", "deflate"], lambda b: zlib.compress(gzip.compress(b))),  # two header lines
    ([], gzip.compress),  # unlabelled, as KServe's agent logs gzip bodies
    (["gzip"], lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:])),  # two members
]


async def _post(
    http: aiohttp.ClientSession, url: str, endpoint: str, codings: list[str], encode: _Encode
) -> aiohttp.ClientResponse:
    path, headers, body = _request(endpoint)
    sent = CIMultiDict(headers)
    for coding in codings:
        sent.add("Content-Encoding", coding)
    async with http.post(url + path, data=encode(body), headers=sent) as reply:
        await reply.read()
        return reply


async def test_every_supported_coding_is_undone_on_every_endpoint() -> None:
    async with running(settings()) as (_, url), aiohttp.ClientSession() as http:
        for endpoint, (codings, encode) in itertools.product(_ENDPOINTS, _READABLE):
            reply = await _post(http, url, endpoint, codings, encode)
            assert reply.status in (200, 202), (endpoint, codings, await reply.text())
        samples = parse_metrics(await assert_read_side_healthy(url))
    accepted = sample_sum(samples, "feedback_stream_events_total", status="accepted")
    assert accepted == len(_ENDPOINTS) * len(_READABLE)
    assert sample_sum(samples, "feedback_stream_invalid_events_total") == 0


_BOMB = bytes(_LIMIT + 1)
_UNREADABLE: list[tuple[str, list[str], _Encode, int, str, str]] = [
    # (case, Content-Encoding lines, encode, status, code, words of the reason)
    ("br", ["br"], lambda b: b, 400, "unsupported_content_encoding", "br is not supported"),
    ("zstd", ["zstd"], lambda b: b, 400, "unsupported_content_encoding", "zstd is not"),
    ("compress", ["compress"], lambda b: b, 400, "unsupported_content_encoding", "compress"),
    ("stacked", ["gzip, br"], gzip.compress, 400, "unsupported_content_encoding", "br is not"),
    ("case", ["BR"], lambda b: b, 400, "unsupported_content_encoding", "br is not"),
    (
        "too many",
        ["gzip"] * (MAX_CODINGS + 1),
        lambda b: b,
        400,
        "unsupported_content_encoding",
        f"{MAX_CODINGS + 1} stacked",
    ),
    (
        "truncated gzip",
        ["gzip"],
        lambda b: gzip.compress(b)[:-10],
        400,
        "content_encoding_error",
        "truncated gzip",
    ),
    (
        "truncated unlabelled gzip",
        [],
        lambda b: gzip.compress(b)[:-10],
        400,
        "content_encoding_error",
        "truncated gzip",
    ),
    (
        "truncated deflate",
        ["deflate"],
        lambda b: zlib.compress(b)[:-6],
        400,
        "content_encoding_error",
        "truncated deflate",
    ),
    (
        "truncated inner",
        ["gzip, gzip"],
        lambda b: gzip.compress(gzip.compress(b)[:-10]),
        400,
        "content_encoding_error",
        "truncated gzip",
    ),
    ("bad crc", ["gzip"], _bad_crc, 400, "content_encoding_error", "corrupt gzip"),
    ("plain as gzip", ["gzip"], lambda b: b, 400, "content_encoding_error", "corrupt gzip"),
    (
        "trailing data",
        ["deflate"],
        lambda b: zlib.compress(b) + b"junk",
        400,
        "content_encoding_error",
        "after the end of its deflate",
    ),
    (
        "zip bomb",
        ["gzip"],
        lambda b: gzip.compress(_BOMB),
        413,
        "request_entity_too_large",
        "inflates past",
    ),
    (
        "stacked zip bomb",
        ["gzip", "gzip"],
        lambda b: gzip.compress(gzip.compress(_BOMB)),
        413,
        "request_entity_too_large",
        "inflates past",
    ),
    (
        "unlabelled zip bomb",
        [],
        lambda b: gzip.compress(_BOMB),
        413,
        "request_entity_too_large",
        "inflates past",
    ),
    ("over the cap as sent", [], lambda b: _BOMB, 413, "request_entity_too_large", "size"),
]


async def test_a_body_that_cannot_be_read_is_a_counted_json_refusal_on_every_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(settings(http_max_body=_LIMIT)) as (_, url), aiohttp.ClientSession() as h:
        for endpoint, case in itertools.product(_ENDPOINTS, _UNREADABLE):
            name, codings, encode, status, code, words = case
            reply = await _post(h, url, endpoint, codings, encode)
            assert reply.status == status, (endpoint, name)
            assert reply.content_type == "application/json", (endpoint, name)
            document = json.loads(await reply.text())
            assert document["error"] == code, (endpoint, name, document)
            assert words in document["reason"], (endpoint, name, document)
            if code == "unsupported_content_encoding":
                assert reply.headers["Accept-Encoding"] == "gzip, deflate"
        samples = parse_metrics(await assert_read_side_healthy(url))
        assert (await get_json(f"{url}/api/v1/models"))["models"] == []
    for code in {case[4] for case in _UNREADABLE}:
        sent = len(_ENDPOINTS) * sum(case[4] == code for case in _UNREADABLE)
        assert sample_sum(samples, "feedback_stream_invalid_events_total", reason=code) == sent
        assert sample_sum(samples, "feedback_stream_refused_requests_total", reason=code) == sent
    assert sample_sum(samples, "feedback_stream_events_total", status="accepted") == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_the_separate_ingest_listener_undoes_and_refuses_codings_too() -> None:
    config = settings(ingest_port=0, ingest_host="127.0.0.1")
    async with running(config) as (service, url), aiohttp.ClientSession() as http:
        ingest = f"http://127.0.0.1:{service.ingest_port}"
        reply = await _post(http, ingest, "binary", ["gzip"], gzip.compress)
        assert reply.status == 202
        reply = await _post(http, ingest, "binary", ["br"], lambda b: b)
        assert reply.status == 400
        reply = await _post(http, ingest, "feedback", ["gzip"], lambda b: gzip.compress(b)[:-4])
        assert reply.status == 400
        samples = parse_metrics(await assert_read_side_healthy(url))
    assert sample_sum(samples, "feedback_stream_events_total", status="accepted") == 1
    invalid = "feedback_stream_invalid_events_total"
    assert sample_sum(samples, invalid, reason="unsupported_content_encoding") == 1
    assert sample_sum(samples, invalid, reason="content_encoding_error") == 1


async def test_a_transfer_coding_other_than_chunked_is_a_counted_json_refusal() -> None:
    body = gzip.compress(_FEEDBACK)
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    async with running(settings()) as (_, url):
        for path in ("/", _FEEDBACK_PATH):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
            )
            status, answer = await send_raw(url, head.encode() + chunked)
            assert status == 400
            document = json.loads(answer)
            assert document["error"] == "unsupported_transfer_encoding"
            assert "gzip is not supported" in document["reason"]
        samples = parse_metrics(await assert_read_side_healthy(url))
    reason = "unsupported_transfer_encoding"
    assert sample_sum(samples, "feedback_stream_invalid_events_total", reason=reason) == 2
    assert sample_sum(samples, "feedback_stream_refused_requests_total", reason=reason) == 2


_CODERS: dict[str, _Encode] = {"gzip": gzip.compress, "deflate": zlib.compress}


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=2048),
    codings=st.lists(st.sampled_from(["gzip", "deflate"]), min_size=1, max_size=MAX_CODINGS),
    cut=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_codings_round_trip_and_any_truncation_is_refused(
    body: bytes, codings: list[str], cut: float
) -> None:
    """zlib's own compressors are the oracle; no prefix of a stream reads as data."""
    encoded = body
    for coding in codings:
        encoded = _CODERS[coding](encoded)
    header = ", ".join(codings)
    assume(not body.startswith(b"\x1f\x8b"))  # gzip inside is inflated too: tested above
    assert decode_content(header, encoded, _LIMIT) == body
    too_large: Any = decode_content(header, encoded, len(body) - 1)
    assert isinstance(too_large, BodyRefusal)
    assert (too_large.code, too_large.status) == ("request_entity_too_large", 413)
    prefix = encoded[: max(1, int(len(encoded) * cut))]
    refused: Any = decode_content(header, prefix, _LIMIT)
    assert isinstance(refused, BodyRefusal), (header, len(prefix), len(encoded))
    assert refused.code == "content_encoding_error"
