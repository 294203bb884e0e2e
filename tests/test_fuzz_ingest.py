"""Fuzzing HTTP ingest and Kafka decoding: no 5xx, /metrics valid, refusals counted, memory bounded.

Hypothesis writes requests byte by byte (malformed JSON, deep nesting,
NaN/Infinity, wrong types, batches, header values that are not UTF-8 or are
any unicode, missing and repeated attributes, binary garbage) to a processor
running in a thread of its own, and Kafka records (headers as raw bytes,
values as garbage or near-valid JSON) to the service's Kafka batch handler.
After each run: no answer was a 5xx, every 4xx was counted by reason,
``promtool check metrics`` accepts the page, and the tracked models,
classes and pending puids are within the (small) caps the processor runs
with. Flood tests put 50,000 classes on one model and 100,000 models
through HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest

from feedback_stream.caps import OTHER_CLASS, OVERFLOW_KEY
from feedback_stream.service import Service
from tests._hostile import promtool_check
from tests._processor import parse_metrics, sample_sum
from tests._processor import settings as service_settings

pytestmark = pytest.mark.timeout(600)

CAPS = {"max_models": 8, "max_classes": 6, "max_pending": 300}
TYPES = [
    "io.seldon.serving.inference.request",
    "io.seldon.serving.inference.response",
    "io.seldon.serving.feedback",
    "org.kubeflow.serving.inference.response",
]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _ServiceThread:
    """A processor on its own event loop in a thread, so sync hypothesis tests can post."""

    def __init__(self, **values: Any) -> None:
        self.service = Service(service_settings(**values))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> _ServiceThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, function: Any, *args: Any) -> Any:
        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def post(self, raw: bytes) -> int:
        """Send raw bytes as one request; the status, or 0 if the server closed without one."""
        with socket.create_connection(("127.0.0.1", self.service.http_port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except TimeoutError:
                # The server waits for more (a body longer than sent): end the request.
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    data += chunk
        if not data.startswith(b"HTTP/1."):  # the parser's refusals answer as HTTP/1.0
            return 0
        return int(data.split(b" ", 2)[1])

    def get(self, path: str) -> tuple[int, bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", self.service.http_port), timeout=60) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(1 << 20):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head.lower():
            body = _unchunk(body)
        return int(head.split(b" ", 2)[1]), body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


# -- strategies ---------------------------------------------------------------

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_classes = st.sampled_from([f"c{i}" for i in range(40)])
_payload = st.one_of(
    _json,
    st.builds(lambda c: {"predictions": [c]}, _classes),
    st.builds(
        lambda c: {"data": {"names": ["a", "b"], "ndarray": [c]}}, st.lists(_json_leaf, max_size=3)
    ),
    st.builds(lambda c, r: {"truth": {"predictions": [c]}, "reward": r}, _classes, _json_leaf),
    st.builds(lambda d: _deep(d), st.integers(200, 1100)),
)
_header_value = st.one_of(
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=20),
    st.sampled_from([b"", b"\xff\xfe", b"caf\xc3\xa9", b"x\xed\xa0\x80y"]),
)


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return {"predictions": value}


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode()
    except (RecursionError, ValueError):
        return b"[" * 2000


def _safe_header(value: bytes) -> bytes:
    # Line breaks would end the header block: the HTTP parser's own refusals are
    # fuzzed separately, below.
    return value.replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def _binary_request(draw: st.DrawFn) -> bytes:
    attributes = {
        b"Ce-Type": st.sampled_from([t.encode() for t in TYPES]) | _header_value,
        b"Ce-Id": st.text(max_size=8).map(str.encode) | _header_value,
        b"Ce-Requestid": st.sampled_from([f"p{i}".encode() for i in range(500)]) | _header_value,
        b"Ce-Modelid": st.sampled_from([f"m{i}".encode() for i in range(30)]) | _header_value,
        b"Ce-Endpoint": st.sampled_from([b"default", b"shadow", b""]) | _header_value,
        b"Ce-Specversion": st.just(b"1.0") | _header_value,
        b"Content-Type": st.sampled_from(
            [
                b"application/json",
                b"application/protobuf",
                b"text/plain",
                b"application/json; x=\xff",
            ]
        ),
    }
    lines = []
    for name, values in attributes.items():
        for _ in range(draw(st.integers(0, 2))):  # missing, present, repeated
            lines.append(name + b": " + _safe_header(draw(values)))
    body = draw(st.one_of(_payload.map(_dumps), st.binary(max_size=64)))
    return _request(b"\r\n".join(lines), body)


@st.composite
def _structured_request(draw: st.DrawFn) -> bytes:
    def event() -> dict[str, Any]:
        base: dict[str, Any] = {
            "specversion": draw(st.just("1.0") | _json_leaf),
            "type": draw(st.sampled_from(TYPES) | _json_leaf),
            "id": draw(st.text(max_size=6) | _json_leaf),
            "requestid": draw(st.sampled_from([f"p{i}" for i in range(500)]) | _json_leaf),
            "modelid": draw(st.sampled_from([f"m{i}" for i in range(30)]) | st.text(max_size=6)),
            "data": draw(_payload),
        }
        for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=2)):
            base.pop(name, None)
        return base

    batch = draw(st.booleans())
    body: Any = [event() for _ in range(draw(st.integers(0, 6)))] if batch else event()
    kind = (
        b"application/cloudevents-batch+json"
        if batch
        else draw(st.sampled_from([b"application/cloudevents+json", b"application/json"]))
    )
    raw = draw(st.one_of(st.just(_dumps(body)), st.binary(max_size=40)))
    return _request(b"Content-Type: " + kind, raw)


def _request(headers: bytes, body: bytes) -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
    return head + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


_broken_http = st.one_of(
    st.binary(min_size=1, max_size=80).map(lambda b: b"POST / HTTP/1.1\r\n" + b + b"\r\n\r\n"),
    # Only line ends are no request at all: HTTP/1.1 servers skip empty lines before a
    # request line (RFC 9112, 2.2), so such input is answered by nothing, rightly.
    st.binary(min_size=1, max_size=80)
    .filter(lambda b: b.strip(b"\r\n"))
    .map(lambda b: b + b"\r\n\r\n"),
    st.just(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
    st.just(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
)


# -- the HTTP fuzz -------------------------------------------------------------


def test_fuzzed_http_gets_no_5xx_valid_metrics_counted_refusals_bounded_memory() -> None:
    statuses: list[int] = []
    with _ServiceThread(**CAPS) as processor:

        @FUZZ
        @given(st.one_of(_binary_request(), _structured_request(), _broken_http))
        def post(raw: bytes) -> None:
            status = processor.post(raw)
            assert 0 < status < 500, raw[:300]
            statuses.append(status)

        post()
        status, body = processor.get("/metrics")
        assert status == 200
        text = body.decode("utf-8")
        result = promtool_check(text)
        assert result.returncode == 0, result.stdout + result.stderr
        samples = parse_metrics(text)
        refused = sample_sum(samples, "feedback_stream_refused_requests_total")
        assert refused == sum(1 for s in statuses if 400 <= s < 500)
        assert refused > 0
        for path in ("/api/v1/models", "/api/v1/metrics", "/api/v1/history", "/healthz"):
            status, body = processor.get(path)
            assert status == 200, (path, body[:200])
            orjson.loads(body)
        processor.call(_assert_bounded, processor.service)


def _assert_bounded(service: Service) -> None:
    engine = service.engine
    assert len(engine.model_keys()) <= CAPS["max_models"] + 1
    assert engine.pending <= CAPS["max_pending"]
    for key in engine.model_keys():
        for spec in engine.specs:
            labels = engine.metrics(key, spec.name, matrix=False).labels
            assert len(set(labels) - {OTHER_CLASS}) <= CAPS["max_classes"]


# -- the Kafka decoding fuzz -------------------------------------------------------

_header_name = st.sampled_from(
    ["ce_type", "ce_id", "ce_requestid", "ce_modelid", "ce_endpoint", "content-type", "type",
     "requestid", "modelid", "Ce_Type", "x-request-id", "traceparent"]
)  # fmt: skip


@st.composite
def _kafka_record(draw: st.DrawFn) -> ConsumerRecord[bytes, bytes]:
    headers = draw(
        st.lists(
            st.tuples(
                _header_name,
                st.one_of(
                    st.sampled_from([t.encode() for t in TYPES]),
                    st.sampled_from([f"p{i}".encode() for i in range(500)]),
                    st.sampled_from([f"m{i}".encode() for i in range(30)]),
                    st.just(b"application/cloudevents+json"),
                    _header_value,
                ),
            ),
            max_size=8,
        )
    )
    value = draw(st.one_of(_payload.map(_dumps), st.binary(max_size=64)))
    offset = draw(st.integers(0, 2**40))
    return ConsumerRecord("t", 0, offset, 1_700_000_000_000, 0, None, value, None, 0, 0, headers)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_kafka_record(), min_size=1, max_size=20))
def test_fuzzed_kafka_records_are_decoded_or_counted_never_raised(
    records: list[ConsumerRecord[bytes, bytes]],
) -> None:
    service = Service(service_settings(**CAPS))
    asyncio.run(service.apply(records))
    events = service.engine.events()
    handled = (
        sum(events.accepted.values())
        + sum(events.duplicate.values())
        + sum(events.invalid.values())
    )
    assert handled >= len(records)
    text = generate_latest(service.registry).decode("utf-8")
    parse_metrics(text)
    _assert_bounded(service)


def test_fuzzed_kafka_metrics_pass_promtool() -> None:
    service = Service(service_settings(**CAPS))
    records = [
        ConsumerRecord(
            "t", 0, i, 1_700_000_000_000, 0, None, b'{"predictions": ["\\u00e9"]}', None, 0, 0,
            [("ce_type", TYPES[1].encode()), ("ce_requestid", f"p{i}".encode()),
             ("ce_modelid", "modèle\u2603".encode()), ("ce_endpoint", b"\xff")],
        )
        for i in range(20)
    ]  # fmt: skip
    asyncio.run(service.apply(records))
    text = generate_latest(service.registry).decode("utf-8")
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sample_sum(parse_metrics(text), "feedback_stream_invalid_events_total") == 20


# -- floods ---------------------------------------------------------------------


def _structured(puid: str, model: str, kind: str, data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{puid}",
        "source": "s",
        "type": kind,
        "requestid": puid,
        "modelid": model,
        "data": data,
    }


def _batch(events: list[dict[str, Any]]) -> bytes:
    return _request(b"Content-Type: application/cloudevents-batch+json", orjson.dumps(events))


def test_fifty_thousand_classes_on_one_model_stay_within_the_cap() -> None:
    with _ServiceThread() as processor:
        response, feedback = TYPES[1], TYPES[2]
        for start in range(0, 50_000, 5_000):
            events = []
            for i in range(start, start + 5_000):
                events.append(_structured(f"p{i}", "m", response, {"predictions": [f"c{i}"]}))
                truth = {"truth": {"predictions": [f"c{(i * 7) % 50_000}"]}}
                events.append(_structured(f"p{i}", "m", feedback, truth))
            assert processor.post(_batch(events)) == 202
        status, body = processor.get("/metrics")
        assert status == 200
        result = promtool_check(body.decode())
        assert result.returncode == 0, result.stdout + result.stderr
        status, body = processor.get("/api/v1/metrics")
        assert status == 200
        document = orjson.loads(body)
        (model,) = document["models"]
        total = model["windows"]["total"]
        assert total["outcomes"] == 50_000
        assert len(total["labels"]) == 50 + 1  # max_classes, plus __other__
        assert processor.service.engine.caps.folded_classes > 0


def test_a_hundred_thousand_models_stay_within_the_cap() -> None:
    with _ServiceThread() as processor:
        response = TYPES[1]
        for start in range(0, 100_000, 10_000):
            events = [
                _structured(f"p{i}", f"model-{i}", response, {"predictions": [i % 50]})
                for i in range(start, start + 10_000)
            ]
            assert processor.post(_batch(events)) == 202
        keys = processor.call(processor.service.engine.model_keys)
        assert len(keys) == 1000 + 1
        assert OVERFLOW_KEY in keys
        status, body = processor.get("/api/v1/models")
        assert status == 200
        assert len(orjson.loads(body)["models"]) == 1001
        status, body = processor.get("/metrics")
        assert status == 200
        samples = parse_metrics(body.decode())
        overflow = sample_sum(samples, "feedback_stream_responses_total", model="__overflow__")
        assert overflow == 99_000
