"""Request-logger documents into events: every shape the logger writes (no I/O)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from feedback_stream.decode import DecodeError, decode_http
from feedback_stream.es import (
    HISTORY_IDENTITY_TAG,
    DocumentEvents,
    document_events,
    history_identity,
    parse_es_time,
)
from feedback_stream.events import EventKind, ModelKey, SourcePosition
from feedback_stream.outcomes import UNCLASSIFIED
from tests._request_logger import build_index_name, upserts

FIXTURES = json.loads(
    (Path(__file__).parent / "fixtures" / "es_request_logger_documents.json").read_text()
)
SEED_KEY = ModelKey("seldon", "sklearn", "default", "irisclassifier-default")


def convert(name: str, **kwargs: Any) -> DocumentEvents:
    hit = FIXTURES[name]
    return document_events(hit, SourcePosition(hit["_index"], 0, 7), **kwargs)


def test_seed_document_gives_request_response_and_feedback() -> None:
    doc = convert("seed")
    assert doc.errors == ()
    assert doc.puid == "b470c0a1-e207-43d4-90d4-db64b879d068"
    assert doc.key == SEED_KEY
    assert doc.item is None
    request, response, feedback = doc.events
    assert [e.kind for e in doc.events] == [
        EventKind.REQUEST,
        EventKind.RESPONSE,
        EventKind.FEEDBACK,
    ]
    assert all(e.key == SEED_KEY and e.puid == doc.puid for e in doc.events)
    assert response.classes == ("t:2",)
    assert feedback.classes == ("t:2",)
    assert feedback.reward == 0.0
    assert request.classes is None
    assert request.time == pytest.approx(1594456910.378621945, abs=1e-6)
    assert response.time == pytest.approx(1594456910.384083245, abs=1e-6)
    assert feedback.time == pytest.approx(1594458044.310299646, abs=1e-6)
    assert feedback.position == SourcePosition("inference-log-seldon-seldon-sklearn-default", 0, 7)


def test_identity_is_tagged_and_stable_per_kind_puid_and_key() -> None:
    doc = convert("seed")
    for event in doc.events:
        assert event.identity == history_identity(event.kind, doc.puid, SEED_KEY)
        assert event.identity[0] == HISTORY_IDENTITY_TAG
    assert len({e.identity for e in doc.events}) == 3


def test_reward_true_without_truth_is_a_reward_only_feedback() -> None:
    doc = convert("seed_correct_feedback")
    feedback = doc.events[-1]
    assert feedback.kind is EventKind.FEEDBACK
    assert feedback.classes is None
    assert feedback.reward == 1.0


def test_prediction_without_feedback_gives_request_and_response() -> None:
    doc = convert("no_feedback")
    assert [e.kind for e in doc.events] == [EventKind.REQUEST, EventKind.RESPONSE]
    assert doc.events[1].classes == ("t:0",)
    assert doc.feedback_time is None


def test_batch_item_document_carries_the_whole_batch_and_its_item_index() -> None:
    doc = convert("batch_item_1")
    assert doc.puid == "7c1f-batch-puid"
    assert doc.item == 1
    response = doc.events[1]
    assert response.classes == ("setosa", "virginica")
    assert response.identity == history_identity(
        EventKind.RESPONSE, "7c1f-batch-puid", ModelKey("prod", "iris", "default", "classifier")
    )


def test_batch_feedback_lives_in_the_puid_document() -> None:
    doc = convert("batch_feedback")
    assert doc.item is None
    (feedback,) = doc.events
    assert feedback.classes == ("setosa", "versicolor")
    assert feedback.reward == 0.5


def test_kserve_document_takes_the_component_as_model() -> None:
    doc = convert("kserve_tf")
    assert doc.key == ModelKey("kserve-test", "sklearn-iris", "default", "predictor")
    assert doc.events[1].classes == ("1", "1")
    assert convert("kserve_tf", kserve_component="transformer").key.model == "transformer"


def test_v2_response_is_read_from_its_outputs() -> None:
    doc = convert("v2")
    assert doc.errors == ()
    assert doc.events[1].classes == ("1",)


def test_text_payload_is_a_response_whose_class_is_unknown() -> None:
    doc = convert("str_data")
    assert doc.errors == ()
    (response,) = doc.events
    assert response.puid == "3e9d-text"
    assert response.classes == (UNCLASSIFIED,)


def test_missing_ce_time_falls_back_to_the_timestamp() -> None:
    doc = convert("no_ce_time")
    (response,) = doc.events
    assert response.time == pytest.approx(1767614400.123456, abs=1e-6)


def test_a_document_the_logger_did_not_write_is_one_error() -> None:
    doc = convert("not_a_logger_document")
    assert doc.events == ()
    assert [e.code for e in doc.errors] == ["bad_record"]


def test_without_request_id_the_document_id_gives_puid_and_item() -> None:
    hit = json.loads(json.dumps(FIXTURES["batch_item_1"]))
    del hit["_source"]["RequestId"]
    doc = document_events(hit, SourcePosition("x", 0, 0))
    assert (doc.puid, doc.item) == ("7c1f-batch-puid", 1)


def test_basis_time_picks_feedback_or_request() -> None:
    doc = convert("seed")
    assert doc.basis_time("feedback") == doc.feedback_time
    assert doc.basis_time("request") == doc.request_time
    unlabelled = convert("no_feedback")
    assert unlabelled.basis_time("feedback") == unlabelled.request_time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-07-11T08:41:50.378621945Z", 1594456910.378621945),
        ("2020-07-11T08:41:50Z", 1594456910.0),
        ("2020-07-11T08:41:50.5Z", 1594456910.5),
        ("2020-07-11 08:41:50.5Z", 1594456910.5),
        ("2020-13-11T08:41:50.5Z", None),
        ("2020-07-11T08:41:50.5+01:00", 1594453310.5),
        ("2020-07-11T08:41:50.378621", 1594456910.378621),
        (1594456910378, 1594456910.378),
        ("1594456910378", 1594456910.378),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_es_time(value: object, expected: float | None) -> None:
    parsed = parse_es_time(value)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected, abs=1e-6)


def test_history_event_equals_the_live_event_but_for_identity_and_position() -> None:
    """What the logger stores of an HTTP CloudEvent decodes to the live decoder's event."""
    headers = {
        "Ce-Id": "c0ffee",
        "Ce-Type": "io.seldon.serving.inference.response",
        "Ce-Source": "http:localhost:8000",
        "Ce-Time": "2026-01-01T00:00:00.250000000Z",
        "Ce-Requestid": "puid-1",
        "Ce-Modelid": "classifier",
        "Ce-Inferenceservicename": "iris",
        "Ce-Namespace": "seldon",
        "Ce-Endpoint": "default",
        "Content-Type": "application/json",
    }
    body = {"data": {"names": ["a", "b", "c"], "ndarray": [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]}}
    position = SourcePosition("http", 0, 1)
    live = decode_http(headers, json.dumps(body), 1767225600.25, position)
    assert not isinstance(live, DecodeError)
    stored = upserts(headers, body)
    assert [doc_id for _, doc_id, _ in stored] == ["puid-1-item-0", "puid-1-item-1"]
    index = build_index_name(headers)
    assert index == "inference-log-seldon-seldon-iris-default"
    for _, doc_id, source in stored:
        doc = document_events({"_index": index, "_id": doc_id, "_source": source}, position)
        (event,) = doc.events
        assert (event.kind, event.puid, event.key, event.classes) == (
            live.kind,
            live.puid,
            live.key,
            live.classes,
        )
        assert event.time == pytest.approx(live.time, abs=1e-6)
