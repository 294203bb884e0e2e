"""Decoding: one fixture per encoding, the payload rules of EVENTS.md §2, every error class."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.decode import (
    DecodeError,
    decode_attributes,
    decode_http,
    decode_kafka_record,
    parse_ce_time,
)
from feedback_stream.engine import Engine
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition

FIXTURES = Path(__file__).parent / "fixtures" / "events"
POSITION = SourcePosition("seldon", 0, 7)
PUID = "b470c0a1-e207-43d4-90d4-db64b879d068"


def _decode_fixture(fixture: dict[str, Any]) -> Event | DecodeError:
    if fixture["encoding"] == "http":
        return decode_http(fixture["headers"], fixture["body"].encode(), fixture["time"], POSITION)
    record = fixture["record"]
    position = SourcePosition(record["topic"], record["partition"], record["offset"])
    return decode_kafka_record(record["headers"], record["value"], record["timestamp"], position)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_decodes_to_expected_event(path: Path) -> None:
    fixture = json.loads(path.read_text())
    event = _decode_fixture(fixture)
    assert isinstance(event, Event), event
    expect = fixture["expect"]
    assert event.kind is EventKind(expect["kind"])
    assert event.puid == expect["puid"]
    assert event.key == ModelKey(*expect["key"])
    assert event.classes == (None if expect["classes"] is None else tuple(expect["classes"]))
    assert event.reward == expect["reward"]


def test_kafka_time_is_the_record_timestamp_not_ce_time() -> None:
    fixture = json.loads((FIXTURES / "kafka_seldon_direct_response.json").read_text())
    event = _decode_fixture(fixture)
    assert isinstance(event, Event)
    assert event.time == fixture["record"]["timestamp"] / 1000


def test_kafka_record_with_bytes_headers_and_value_as_aiokafka_gives_them() -> None:
    headers = [
        ("type", b"io.seldon.serving.inference.response"),
        ("content-type", b"application/json"),
        ("requestid", b"p1"),
        ("modelid", b"m"),
    ]
    value = orjson.dumps({"data": {"ndarray": [[0.1, 0.9]]}})
    event = decode_kafka_record(headers, value, 1000, POSITION)
    assert isinstance(event, Event)
    assert event.classes == ("1",)
    assert event.identity == ("@", "seldon", "0", "7")


def test_identity_is_type_and_id_so_kserve_request_and_response_differ() -> None:
    req = _decode_fixture(json.loads((FIXTURES / "http_binary_kserve_request.json").read_text()))
    resp = _decode_fixture(json.loads((FIXTURES / "http_binary_kserve_response.json").read_text()))
    assert isinstance(req, Event)
    assert isinstance(resp, Event)
    assert req.puid == resp.puid
    assert req.identity != resp.identity


def test_x_request_id_is_the_key_when_no_attribute_names_one() -> None:
    headers = {
        "Ce-Type": "io.seldon.serving.feedback",
        "Ce-Id": "1",
        "X-Request-Id": "abc",
        "Content-Type": "application/json",
    }
    event = decode_http(headers, b'{"reward": 1}', 5.0, POSITION)
    assert isinstance(event, Event)
    assert event.puid == "abc"


def _response(value: Any, content_type: str = "application/json") -> Event | DecodeError:
    headers = {
        "type": "io.seldon.serving.inference.response",
        "content-type": content_type,
        "requestid": PUID,
        "modelid": "m",
    }
    return decode_kafka_record(headers, value, 1000, POSITION)


def _feedback(value: Any) -> Event | DecodeError:
    headers = {"type": "io.seldon.serving.feedback", "requestid": PUID}
    return decode_kafka_record(headers, value, 1000, POSITION)


@pytest.mark.parametrize(
    ("payload", "classes"),
    [
        ({"data": {"ndarray": [[0.1, 0.5, 0.4]]}}, ("1",)),
        ({"data": {"ndarray": [[0.5, 0.5, 0.1]]}}, ("0",)),  # first index on ties
        ({"data": {"names": ["a", "b"], "ndarray": [[0.2, 0.8], [0.9, 0.1]]}}, ("b", "a")),
        ({"data": {"names": [], "ndarray": [[1], [2.0], [True]]}}, ("1", "2", "1")),
        ({"data": {"ndarray": [1, 0, 2.5, "cat", False]}}, ("1", "0", "2.5", "cat", "0")),
        ({"data": {"tensor": {"shape": [3], "values": [1, 0, 1]}}}, ("1", "0", "1")),
        ({"data": {"tensor": {"shape": [1, 2], "values": [0.3, 0.7]}}}, ("1",)),
        ({"data": {"tensor": {"shape": [2, 1], "values": [4, 5]}}}, ("4", "5")),
        ({"predictions": [1, 0, 2]}, ("1", "0", "2")),
        ({"predictions": [[0.1, 0.9]]}, ("1",)),
        ({"instances": [[3]]}, ("3",)),
        (
            {"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0, 1, 1, 0]}]},
            ("1", "0"),
        ),
        (
            {
                "outputs": [
                    {"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [[0, 1], [1, 0]]}
                ]
            },
            ("1", "0"),
        ),
        (
            {"outputs": [{"name": "l", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}]},
            ("x", "y"),
        ),
    ],
)
def test_payload_rows_give_classes(payload: dict[str, Any], classes: tuple[str, ...]) -> None:
    event = _response(payload)
    assert isinstance(event, Event), event
    assert event.classes == classes


def test_value_as_json_text_or_bytes_is_parsed() -> None:
    for value in ('{"predictions": [1]}', b'{"predictions": [1]}'):
        event = _response(value)
        assert isinstance(event, Event)
        assert event.classes == ("1",)


@pytest.mark.parametrize(
    ("payload", "truth", "reward"),
    [
        ({"reward": 1, "truth": {"meta": {"tags": {}}}}, None, 1.0),
        ({"reward": True, "truth": {}}, None, 1.0),
        ({"reward": False}, None, 0.0),
        ({"reward": 0.25}, None, 0.25),
        ({"truth": {"data": {"ndarray": [[0, 0, 1]]}}}, ("2",), None),
        (
            {"truth": {"data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0, 0, 1]]}}},
            ("t:2",),
            None,
        ),
        ({"truth": {"data": {"ndarray": [[1]]}}, "reward": 0}, ("1",), 0.0),
        ({"request": {"data": {"ndarray": [[1, 2]]}}, "truth": None}, None, None),
    ],
)
def test_feedback_truth_and_reward(
    payload: dict[str, Any], truth: tuple[str, ...] | None, reward: float | None
) -> None:
    event = _feedback(payload)
    assert isinstance(event, Event), event
    assert event.classes == truth
    assert event.reward == reward


MALFORMED: list[tuple[dict[str, str], Any, str, str]] = [
    ({"type": "io.seldon.serving.feedback"}, {"reward": 1}, "missing_puid", "requestid"),
    ({"requestid": "p"}, {"reward": 1}, "missing_type", "type"),
    ({"type": "com.example.other", "requestid": "p"}, {}, "unknown_type", "com.example.other"),
    ({"type": "io.seldon.serving.feedback", "requestid": "p"}, "{not json", "bad_json", "JSON"),
    ({"type": "io.seldon.serving.feedback", "requestid": "p"}, None, "empty_value", "empty"),
    (
        {
            "type": "io.seldon.serving.inference.response",
            "requestid": "p",
            "content-type": "application/protobuf",
        },
        "\x08\x01",
        "unsupported_content_type",
        "gRPC",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"data": {"ndarray": [["a", "b"]]}},
        "non_numeric",
        "ndarray[0][0]",
    ),
    (
        {"type": "io.seldon.serving.feedback", "requestid": "p"},
        {"truth": {"data": {"strData": "hello"}}},
        "not_classifiable",
        "strData",
    ),
    (
        {"type": "io.seldon.serving.feedback", "requestid": "p"},
        {"truth": {"jsonData": {"a": 1}}},
        "not_classifiable",
        "jsonData",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"data": {"names": ["a"], "ndarray": [[0.1, 0.9]]}},
        "bad_payload",
        "names",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3]}}},
        "bad_payload",
        "shape",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"data": {"ndarray": []}},
        "bad_payload",
        "no rows",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"data": {"ndarray": [[[1, 2], [3, 4]]]}},
        "not_classifiable",
        "nested",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        {"meta": {}},
        "bad_payload",
        "predictions",
    ),
    (
        {"type": "io.seldon.serving.inference.response", "requestid": "p"},
        [1, 2],
        "bad_payload",
        "JSON object",
    ),
    (
        {"type": "io.seldon.serving.feedback", "requestid": "p"},
        {"reward": "yes"},
        "bad_reward",
        "reward",
    ),
    (
        {"type": "io.seldon.serving.feedback", "requestid": "p"},
        {"truth": [1]},
        "bad_payload",
        "truth",
    ),
    (
        {"content-type": "application/cloudevents+json"},
        {"type": "io.seldon.serving.feedback"},
        "bad_envelope",
        "specversion",
    ),
    (
        {"content-type": "application/cloudevents-batch+json"},
        [],
        "unsupported_content_type",
        "batch",
    ),
]


@pytest.mark.parametrize(("headers", "value", "code", "fragment"), MALFORMED)
def test_malformed_input_gives_a_coded_error_with_a_reason(
    headers: dict[str, str], value: Any, code: str, fragment: str
) -> None:
    error = decode_kafka_record(headers, value, 1000, POSITION)
    assert isinstance(error, DecodeError)
    assert error.code == code
    assert fragment in error.reason
    assert error.position == POSITION
    assert code in str(error)


def test_undecodable_header_bytes_are_an_error_not_an_exception() -> None:
    error = decode_kafka_record([("type", b"\xff\xfe")], b"{}", 0, POSITION)
    assert isinstance(error, DecodeError)
    assert error.code == "bad_header"


def test_http_structured_with_base64_data() -> None:
    import base64

    envelope = {
        "specversion": "1.0",
        "id": "1",
        "type": "io.seldon.serving.inference.response",
        "requestid": "p",
        "data_base64": base64.b64encode(b'{"predictions": [2]}').decode(),
    }
    event = decode_http(
        {"content-type": "application/cloudevents+json"}, orjson.dumps(envelope), 1.0, POSITION
    )
    assert isinstance(event, Event)
    assert event.classes == ("2",)


def test_decode_attributes_for_history_documents() -> None:
    attrs = {
        "type": "io.seldon.serving.feedback",
        "requestid": "p",
        "modelid": "m",
        "endpoint": "e",
    }
    event = decode_attributes(attrs, {"reward": 0}, 12.5, POSITION)
    assert isinstance(event, Event)
    assert event.key == ModelKey("", "", "e", "m")
    assert event.time == 12.5


def test_request_payload_is_never_read() -> None:
    headers = {"type": "io.seldon.serving.inference.request", "requestid": "p"}
    event = decode_kafka_record(headers, "not json at all", 1000, POSITION)
    assert isinstance(event, Event)
    assert event.kind is EventKind.REQUEST


def test_parse_ce_time_with_nanoseconds() -> None:
    assert parse_ce_time("2020-07-11T08:41:50.378621945Z") == pytest.approx(
        1594456910.378621945, abs=1e-6
    )
    assert parse_ce_time("2020-07-11T08:41:50Z") == 1594456910.0
    assert parse_ce_time("2020-07-11T10:41:50+02:00") == 1594456910.0
    assert parse_ce_time("yesterday") is None
    assert parse_ce_time("") is None


def test_every_malformed_class_is_counted_by_the_engine_under_its_code() -> None:
    engine = Engine()
    for offset, (headers, value, _, _) in enumerate(MALFORMED):
        error = engine.process_record(headers, value, 1000, SourcePosition("t", 0, offset))
        assert error is not None
    expected = Counter(code for _, _, code, _ in MALFORMED)
    assert engine.events().invalid == expected
    assert engine.report()["events"]["invalid"] == len(MALFORMED)


def test_names_are_kept_when_they_name_the_classes() -> None:
    scored = _response({"data": {"names": ["t:0", "t:1"], "ndarray": [[0.2, 0.8]]}})
    assert isinstance(scored, Event)
    assert scored.names == ("t:0", "t:1")
    column = _response({"data": {"names": ["proba"], "ndarray": [[0.19]]}})
    assert isinstance(column, Event)
    assert column.names is None
    truth = _feedback({"truth": {"data": {"ndarray": [[0, 1]]}}})
    assert isinstance(truth, Event)
    assert (truth.classes, truth.names) == (("1",), None)


def test_x_request_id_header_keys_a_kafka_binary_event_without_requestid() -> None:
    headers = {"ce_type": "io.seldon.serving.feedback", "ce_id": "1", "x-request-id": "abc"}
    event = decode_kafka_record(headers, b'{"reward": 0}', 1000, POSITION)
    assert isinstance(event, Event)
    assert event.puid == "abc"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "data",
                    "names",
                    "ndarray",
                    "tensor",
                    "shape",
                    "values",
                    "predictions",
                    "outputs",
                    "truth",
                    "reward",
                    "strData",
                    "meta",
                    "specversion",
                    "type",
                    "requestid",
                    "datatype",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_HEADER_NAMES = st.sampled_from(
    ["type", "ce_type", "ce_id", "requestid", "ce_requestid", "content-type", "modelid", "endpoint"]
)
_HEADER_VALUES = st.sampled_from(
    [
        "io.seldon.serving.inference.response",
        "io.seldon.serving.feedback",
        "org.kubeflow.serving.inference.response",
        "application/json",
        "application/cloudevents+json",
        "application/protobuf",
        "p",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=6),
    value=_JSON | st.binary(max_size=20),
)
def test_no_input_makes_decoding_raise(headers: dict[str, str], value: Any) -> None:
    result = decode_kafka_record(headers, value, 1000, POSITION)
    assert isinstance(result, Event | DecodeError)
    if isinstance(result, DecodeError):
        assert result.reason
    http = decode_http(
        headers, orjson.dumps(value) if not isinstance(value, bytes) else value, 1.0, POSITION
    )
    assert isinstance(http, Event | DecodeError)
