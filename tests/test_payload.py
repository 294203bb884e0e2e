"""What payloads say beyond classes, as Seldon and KServe send them, through the decoder."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedback_stream.decode import DecodeError, decode_http, decode_kafka_record
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.outcomes import UNCLASSIFIED
from feedback_stream.payload import inflate, read_reward

POSITION = SourcePosition("seldon", 0, 1)
_SELDON_FEEDBACK = {"type": "io.seldon.serving.feedback", "requestid": "p"}


def _feedback(value: Any, headers: dict[str, str] | None = None) -> Event | DecodeError:
    return decode_kafka_record(headers or _SELDON_FEEDBACK, value, 1000, POSITION)


@pytest.mark.parametrize(
    ("reward", "expected"),
    [("1", 1.0), ("0", 0.0), (" 0.5", 0.5), ("1e0", 1.0), (True, 1.0), (False, 0.0), (2, 2.0)],
)
def test_rewards_seldon_accepts_are_read(reward: Any, expected: float) -> None:
    event = _feedback({"reward": reward})
    assert isinstance(event, Event)
    assert event.reward == expected


@pytest.mark.parametrize("reward", ["yes", "", "NaN", "Infinity", [1], {"v": 1}])
def test_other_rewards_are_bad_reward_with_the_reason(reward: Any) -> None:
    error = _feedback({"reward": reward})
    assert isinstance(error, DecodeError)
    assert error.code == "bad_reward"
    assert "reward" in error.reason


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_numeric_string_reads_as_its_number(value: float) -> None:
    assert read_reward(repr(value)) == value


def test_gzip_is_recognised_by_magic_bytes_whatever_the_headers_say() -> None:
    body = gzip.compress(b'{"predictions": [1]}')
    headers = {
        "Ce-Type": "org.kubeflow.serving.inference.response",
        "Ce-Id": "g1",
        "Content-Type": "application/json",
    }
    event = decode_http(headers, body, 1.0, POSITION)
    assert isinstance(event, Event)
    assert event.classes == ("1",)
    kafka = decode_kafka_record(
        {"ce_type": "org.kubeflow.serving.inference.response", "ce_id": "g1"}, body, 1, POSITION
    )
    assert isinstance(kafka, Event)
    assert kafka.classes == ("1",)


def test_corrupt_or_oversized_gzip_is_a_counted_error() -> None:
    headers = {"Ce-Type": "org.kubeflow.serving.inference.response", "Ce-Id": "g2"}
    truncated = gzip.compress(b'{"predictions": [1]}')[:-6]
    error = decode_http(headers, truncated, 1.0, POSITION)
    assert isinstance(error, DecodeError)
    assert (error.code, "gzip" in error.reason) == ("bad_json", True)
    with pytest.raises(ValueError, match="inflates past"):
        inflate(gzip.compress(b" " * 5000), limit=1000)
    assert inflate(gzip.compress(b"a") + gzip.compress(b"b")) == b"ab"


def test_kubeflow_feedback_type_is_feedback() -> None:
    event = _feedback(
        {"reward": 1},
        {"ce_type": "org.kubeflow.serving.feedback", "ce_id": "f", "ce_requestid": "p"},
    )
    assert isinstance(event, Event)
    assert (event.kind, event.puid) == (EventKind.FEEDBACK, "p")


def test_identity_is_source_and_id_with_the_type() -> None:
    def identity(source: str | None) -> tuple[str, ...]:
        headers = {"ce_type": "org.kubeflow.serving.inference.response", "ce_id": "same"}
        if source is not None:
            headers["ce_source"] = source
        event = decode_kafka_record(headers, {"predictions": [1]}, 1, POSITION)
        assert isinstance(event, Event)
        return event.identity

    assert identity("http://a/") != identity("http://b/")
    assert identity(None) == ("org.kubeflow.serving.inference.response", "same")
    structured = decode_http(
        {"Content-Type": "application/cloudevents+json"},
        orjson.dumps(
            {
                "specversion": "1.0",
                "type": "org.kubeflow.serving.inference.response",
                "id": "same",
                "source": "http://a/",
                "data": {"predictions": [1]},
            }
        ),
        1.0,
        POSITION,
    )
    assert isinstance(structured, Event)
    assert structured.identity == identity("http://a/")


@pytest.mark.parametrize(
    "payload",
    [
        {"jsonData": {"label": "positive"}},
        {"strData": "positive"},
        {"binData": "AAEC"},
        {"data": {"names": [], "strData": "x"}},
    ],
)
def test_responses_without_classes_are_one_row_of_unknown_class(payload: dict[str, Any]) -> None:
    event = decode_kafka_record(
        {"type": "io.seldon.serving.inference.response", "requestid": "p"}, payload, 1, POSITION
    )
    assert isinstance(event, Event)
    assert event.classes == (UNCLASSIFIED,)


def test_v2_response_names_its_model_and_is_also_known_by_its_body_id() -> None:
    headers = {
        "ce_type": "org.kubeflow.serving.inference.response",
        "ce_id": "logger-id",
        "ce_component": "predictor",
        "ce_inferenceservicename": "iris",
    }
    body = {"model_name": "iris-lr", "id": "client-id", "outputs": [{"shape": [1], "data": [2]}]}
    event = decode_kafka_record(headers, body, 1, POSITION)
    assert isinstance(event, Event)
    assert (event.puid, event.alias, event.key.model) == ("logger-id", "client-id", "iris-lr")
    named = decode_kafka_record({**headers, "ce_modelid": "given"}, body, 1, POSITION)
    assert isinstance(named, Event)
    assert named.key.model == "given"  # an attribute naming the model wins


def test_client_feedback_carries_its_prediction_and_names_the_original_puid() -> None:
    payload = {
        "request": {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}},
        "response": {
            "data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.9, 0.05, 0.05]]},
            "meta": {"puid": "original"},
        },
        "reward": 1,
    }
    event = _feedback(payload, {**_SELDON_FEEDBACK, "requestid": "fresh"})
    assert isinstance(event, Event)
    assert event.puid == "original"
    assert event.embedded == ("t:0",)
    assert event.embedded_names == ("t:0", "t:1", "t:2")
    bare = _feedback({"reward": 1, "response": {"meta": {}}})
    assert isinstance(bare, Event)
    assert (bare.puid, bare.embedded) == ("p", None)


def test_v2_feedback_key_joins_by_the_body_id_in_either_order() -> None:
    from feedback_stream.engine import Engine

    response = (
        {"ce_type": "org.kubeflow.serving.inference.response", "ce_id": "log-1"},
        {"model_name": "m", "id": "seen-by-client", "outputs": [{"shape": [1], "data": [1]}]},
    )
    feedback = (
        {**_SELDON_FEEDBACK, "requestid": "seen-by-client"},
        {"truth": {"predictions": [1]}},
    )
    for records in ((response, feedback), (feedback, response)):
        engine = Engine(("total",))
        for offset, (headers, value) in enumerate(records):
            engine.process_record(headers, value, 1000 + offset, SourcePosition("t", 0, offset))
        (model,) = engine.report()["models"]
        assert (model["model"], model["windows"]["total"]["correct"]) == ("m", 1)
        assert engine.pending == 1


def test_model_key_of_embedded_response_is_the_feedbacks() -> None:
    payload = {"response": {"data": {"ndarray": [[1]]}}, "truth": {"data": {"ndarray": [[1]]}}}
    headers = {**_SELDON_FEEDBACK, "modelid": "clf", "endpoint": "default"}
    event = _feedback(payload, headers)
    assert isinstance(event, Event)
    assert event.key == ModelKey("", "", "default", "clf")
