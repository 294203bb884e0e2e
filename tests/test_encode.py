"""The wire renderers: header spelling per encoding, payload shapes, Kafka's partitioner."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from feedback_stream.encode import (
    CLOUDEVENTS_JSON,
    JSON,
    CloudEvent,
    http_binary_headers,
    kafka_binary_headers,
    kafka_partition,
    kafka_structured_value,
    murmur2,
    one_hot_truth,
    rfc3339,
    seldon_direct_headers,
    seldon_ndarray,
    seldon_tensor,
    tf_predictions,
    uuid_from_int,
    v2_outputs,
)
from tests._stream_reader import DIRECT_HEADERS

ATTRS = {
    "specversion": "1.0",
    "id": "e1",
    "type": "io.seldon.serving.inference.response",
    "source": "http:localhost:8000",
    "requestid": "p1",
    "modelid": "classifier",
    "inferenceservicename": "iris",
    "namespace": "seldon",
    "endpoint": "default",
    "protocol": "seldon",
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Kafka's own test vectors (Utils.murmur2, as signed Java ints).
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected & 0xFFFFFFFF


def test_kafka_partition_matches_aiokafka_default_partitioner() -> None:
    for i in range(200):
        key = str(uuid.UUID(int=i * 7919 + 13)).encode()
        expected = (aiokafka_murmur2(key) & 0x7FFFFFFF) % 12
        assert kafka_partition(key, 12) == expected


def test_http_binary_headers_use_go_sdk_spelling() -> None:
    headers = http_binary_headers(ATTRS, JSON)
    assert headers["Ce-Requestid"] == "p1"
    assert headers["Ce-Inferenceservicename"] == "iris"
    assert headers["Ce-Specversion"] == "1.0"
    assert headers["Content-Type"] == JSON


def test_kafka_binary_headers_prefix_every_attribute() -> None:
    headers = kafka_binary_headers(ATTRS, JSON)
    assert set(headers) == {"ce_" + name for name in ATTRS} | {"content-type"}


def test_structured_value_holds_attributes_and_data() -> None:
    value = kafka_structured_value(ATTRS, JSON, {"x": 1})
    assert value["data"] == {"x": 1}
    assert value["datacontenttype"] == JSON
    assert value["requestid"] == "p1"
    assert CLOUDEVENTS_JSON == "application/cloudevents+json"


def test_direct_headers_are_the_executors_eight() -> None:
    headers = seldon_direct_headers(ATTRS, JSON)
    assert set(headers) == DIRECT_HEADERS


def test_direct_headers_leave_out_missing_attributes() -> None:
    attrs = {k: v for k, v in ATTRS.items() if k not in ("modelid", "endpoint")}
    assert "modelid" not in seldon_direct_headers(attrs, JSON)


def test_rfc3339_has_nanoseconds_and_utc() -> None:
    assert rfc3339(1_594_456_910_378) == "2020-07-11T08:41:50.378000000Z"


def test_uuid_from_int_is_a_valid_version_4_uuid() -> None:
    for bits in (0, 1, (1 << 128) - 1, 0x1234567890ABCDEF1234567890ABCDEF):
        parsed = uuid.UUID(uuid_from_int(bits))
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_payload_shapes() -> None:
    assert seldon_ndarray([[0.1, 0.9]], ["a", "b"]) == {
        "data": {"names": ["a", "b"], "ndarray": [[0.1, 0.9]]},
        "meta": {},
    }
    assert seldon_tensor([[1, 2], [3, 4]])["data"]["tensor"] == {
        "shape": [2, 2],
        "values": [1, 2, 3, 4],
    }
    assert seldon_tensor([2, 0])["data"]["tensor"] == {"shape": [2], "values": [2, 0]}
    assert tf_predictions([1, 0]) == {"predictions": [1, 0]}
    out = v2_outputs("m", "r", [[0.2, 0.8]])["outputs"][0]
    assert out == {"name": "predict_proba", "shape": [1, 2], "datatype": "FP64", "data": [0.2, 0.8]}
    labels = v2_outputs("m", "r", [1, 2])["outputs"][0]
    assert labels["shape"] == [2]
    assert labels["datatype"] == "INT64"
    assert one_hot_truth([2], 3, ["t:0", "t:1", "t:2"]) == {
        "data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0, 0, 1]]}
    }


def test_cloud_event_renders_for_kafka() -> None:
    event = CloudEvent(headers=http_binary_headers(ATTRS, JSON), body=b"{}")
    assert event.attributes() == ATTRS
    assert event.content_type == JSON
    assert ("ce_requestid", b"p1") in event.kafka_headers()
    assert ("content-type", JSON.encode()) in event.kafka_headers()
    assert event.kafka_message().key is None
    assert event.kafka_message(keyed=True).key == b"p1"
    assert event.kafka_message().value == b"{}"
