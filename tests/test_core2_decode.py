"""Seldon Core 2 records, built with the generated protobuf classes, through the decoder."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_stream.core2 import (
    Core2Decoder,
    Experiments,
    ModelError,
    TopicKind,
    parse_topic,
    request_id_of,
    routed_model,
    topic_pattern,
)
from feedback_stream.core2.grpc_predict_v2_pb2 import InferTensorContents, ModelInferResponse
from feedback_stream.core2.tensors import CONTENTS_FIELD, RAW_FORMAT
from feedback_stream.decode import DecodeError
from feedback_stream.events import Event, EventKind, ModelKey, SourcePosition
from feedback_stream.settings import Settings as ServiceSettings

POSITION = SourcePosition("seldon.prod.model.iris.outputs", 0, 7)
OUTPUTS = "seldon.prod.model.iris.outputs"
ID = "cq2v7e0s3b1d8n4tq2a0"
HEADERS = [("x-request-id", ID.encode())]
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "feedback_stream" / "core2"


def _response(
    datatype: str, values: list[Any], shape: list[int], layout: str
) -> ModelInferResponse:
    tensor = ModelInferResponse.InferOutputTensor(name="predict", datatype=datatype, shape=shape)
    response = ModelInferResponse(model_name="iris", model_version="1", outputs=[tensor])
    if layout == "raw":
        if datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
        elif datatype == "BF16":
            raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            raw = struct.pack(f"<{len(values)}{RAW_FORMAT[datatype]}", *values)
        response.raw_output_contents.append(raw)
    else:
        contents = InferTensorContents(**{CONTENTS_FIELD[datatype]: values})
        response.outputs[0].contents.CopyFrom(contents)
    return response


def _decode(value: Any, headers: Any = HEADERS, topic: str = OUTPUTS, **kwargs: Any) -> Any:
    decoder = Core2Decoder(**kwargs)
    return decoder.decode(topic, headers, kwargs.get("key"), value, 1_000, POSITION)


def _event(value: Any, headers: Any = HEADERS, topic: str = OUTPUTS, **kwargs: Any) -> Event:
    item = _decode(value, headers, topic, **kwargs)
    assert isinstance(item, Event), item
    return item


# One column of classes per datatype: what a model returning labels writes.
LABELS: dict[str, tuple[list[Any], tuple[str, ...]]] = {
    "BOOL": ([True, False, True], ("1", "0", "1")),
    "UINT8": ([2, 0, 255], ("2", "0", "255")),
    "UINT16": ([2, 0, 65535], ("2", "0", "65535")),
    "UINT32": ([2, 0, 4294967295], ("2", "0", "4294967295")),
    "UINT64": ([2, 0, 2**64 - 1], ("2", "0", str(2**64 - 1))),
    "INT8": ([2, -1, 127], ("2", "-1", "127")),
    "INT16": ([2, -1, 32767], ("2", "-1", "32767")),
    "INT32": ([2, -1, 2**31 - 1], ("2", "-1", str(2**31 - 1))),
    "INT64": ([2, -1, 2**63 - 1], ("2", "-1", str(2**63 - 1))),
    "FP16": ([2.0, 0.0, 1.0], ("2", "0", "1")),
    "BF16": ([2.0, 0.0, 1.0], ("2", "0", "1")),
    "FP32": ([2.0, 0.0, 1.0], ("2", "0", "1")),
    "FP64": ([2.0, 0.0, 1.0], ("2", "0", "1")),
    "BYTES": ([b"setosa", b"virginica", b"versicolor"], ("setosa", "virginica", "versicolor")),
}


RAW_ONLY = ("FP16", "BF16")
"""16-bit floats exist only as raw contents (their typed contents are refused, below)."""


def _layouts(datatypes: list[str]) -> list[tuple[str, str]]:
    return [
        (datatype, layout)
        for datatype in datatypes
        for layout in ("contents", "raw")
        if layout == "raw" or datatype not in RAW_ONLY
    ]


@pytest.mark.parametrize(("datatype", "layout"), _layouts(sorted(LABELS)))
def test_every_datatype_in_both_layouts_gives_one_class_per_row(datatype: str, layout: str) -> None:
    values, classes = LABELS[datatype]
    response = _response(datatype, values, [3], layout)
    for shape_rows in ([3], [3, 1]):
        response.outputs[0].ClearField("shape")
        response.outputs[0].shape.extend(shape_rows)
        event = _event(response.SerializeToString())
        assert event.kind is EventKind.RESPONSE
        assert event.classes == classes
        assert event.puid == ID
        assert event.key == ModelKey("prod", "", "", "iris")
        assert event.time == 1.0


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_16_bit_floats_in_typed_contents_are_refused_with_the_reason(datatype: str) -> None:
    tensor = ModelInferResponse.InferOutputTensor(name="p", datatype=datatype, shape=[1])
    error = _decode(ModelInferResponse(outputs=[tensor]).SerializeToString())
    assert isinstance(error, DecodeError)
    assert error.code == "bad_payload"
    assert "only as raw contents" in error.reason


@pytest.mark.parametrize(("datatype", "layout"), _layouts(["FP16", "BF16", "FP32", "FP64"]))
def test_score_rows_give_the_index_of_their_maximum(datatype: str, layout: str) -> None:
    scores = [0.125, 0.75, 0.125, 0.5, 0.25, 0.25]
    event = _event(_response(datatype, scores, [2, 3], layout).SerializeToString())
    assert event.classes == ("1", "0")


@pytest.mark.parametrize(
    "datatype", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"]
)
def test_v2_json_of_every_datatype_reads_as_its_protobuf(datatype: str) -> None:
    values, classes = LABELS[datatype]
    body = {
        "model_name": "iris",
        "outputs": [{"name": "p", "datatype": datatype, "shape": [3], "data": values}],
    }
    assert _event(orjson.dumps(body)).classes == classes
    assert _event(body).classes == classes  # a replay file's parsed value
    proto = _response(datatype, values, [3], "raw").SerializeToString()
    assert _event(proto).classes == classes


def test_json_bytes_outputs_are_class_names_and_nested_data_is_flattened() -> None:
    body = {
        "outputs": [
            {"name": "p", "datatype": "BYTES", "shape": [2, 1], "data": [["setosa"], ["virginica"]]}
        ]
    }
    assert _event(orjson.dumps(body)).classes == ("setosa", "virginica")


def test_only_the_first_output_is_read() -> None:
    response = _response("INT64", [1, 2], [2], "raw")
    response.outputs.append(ModelInferResponse.InferOutputTensor(name="p", datatype="FP32"))
    response.raw_output_contents.append(struct.pack("<4f", 0.1, 0.9, 0.8, 0.2))
    assert _event(response.SerializeToString()).classes == ("1", "2")


@pytest.mark.parametrize(
    ("infer_type", "encoding"),
    [
        ("proto/InferModelResponse", "proto"),
        # An output record keeps its input's header: "request" says nothing of the value.
        ("proto/InferModelRequest", "proto"),
        ("json/inferModelResponse", "json"),
        ("json/inferModelRequest", "json"),
        (None, "proto"),
        (None, "json"),
    ],
)
def test_the_infer_type_header_or_the_value_says_the_encoding(
    infer_type: str | None, encoding: str
) -> None:
    if encoding == "json":
        value = orjson.dumps(
            {"outputs": [{"name": "p", "datatype": "INT64", "shape": [1], "data": [2]}]}
        )
    else:
        value = _response("INT64", [2], [1], "contents").SerializeToString()
    headers = HEADERS + ([("seldon-infer-type", infer_type.encode())] if infer_type else [])
    assert _event(value, headers).classes == ("2",)


def test_an_unknown_infer_type_is_refused() -> None:
    headers = [*HEADERS, ("seldon-infer-type", b"avro/InferModelResponse")]
    error = _decode(b"\x0a\x04iris", headers)
    assert isinstance(error, DecodeError)
    assert error.code == "unsupported_content_type"


def test_a_schema_registry_framed_value_is_read_past_its_frame() -> None:
    payload = _response("INT32", [1, 0], [2], "contents").SerializeToString()
    framed = b"\x00" + struct.pack(">I", 42) + b"\x00" + payload
    assert _event(framed).classes == ("1", "0")
    error = _decode(b"\x00" + struct.pack(">I", 42) + b"\x02\x02" + payload)
    assert isinstance(error, DecodeError)
    assert error.code == "unsupported_content_type"


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        (b"\xff\xff\xff", "bad_payload", "not an inference.ModelInferResponse"),
        (ModelInferResponse(model_name="iris").SerializeToString(), "bad_payload", "no outputs"),
        (
            ModelInferResponse(
                outputs=[ModelInferResponse.InferOutputTensor(datatype="INT32", shape=[3])],
                raw_output_contents=[b"\x01\x00\x00\x00"],
            ).SerializeToString(),
            "bad_payload",
            "3 INT32 elements need 12 raw bytes, got 4",
        ),
        (
            ModelInferResponse(
                outputs=[ModelInferResponse.InferOutputTensor(datatype="BYTES", shape=[1])],
                raw_output_contents=[b"\x09\x00\x00\x00abc"],
            ).SerializeToString(),
            "bad_payload",
            "needs 9 bytes",
        ),
        (
            _response("BYTES", [b"\xff\xfe"], [1], "contents").SerializeToString(),
            "not_classifiable",
            "not UTF-8",
        ),
        (
            ModelInferResponse(
                outputs=[ModelInferResponse.InferOutputTensor(datatype="COMPLEX64", shape=[1])]
            ).SerializeToString(),
            "bad_payload",
            "not an OIP datatype",
        ),
        (
            _response("INT64", [1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], "raw").SerializeToString(),
            "not_classifiable",
            "rank 2",
        ),
        (b'{"outputs": [', "bad_json", "not valid JSON"),
    ],
)
def test_unreadable_responses_are_decode_errors_with_reasons(
    value: bytes, code: str, words: str
) -> None:
    error = _decode(value)
    assert isinstance(error, DecodeError)
    assert error.code == code
    assert words in error.reason
    assert error.position == POSITION


def test_the_request_id_comes_from_x_request_id_else_from_the_record_key() -> None:
    value = _response("INT64", [1], [1], "raw").SerializeToString()
    decoder = Core2Decoder()
    by_header = decoder.decode(OUTPUTS, HEADERS, b"0.irisp.other", value, 0, POSITION)
    assert isinstance(by_header, Event)
    assert by_header.puid == ID
    # Core 2 keys a request's records <partition>.<pipeline or model>.<request id>.
    by_key = decoder.decode(OUTPUTS, [], f"3.irisp.{ID}".encode(), value, 0, POSITION)
    assert isinstance(by_key, Event)
    assert by_key.puid == ID
    plain_key = decoder.decode(OUTPUTS, [], ID, value, 0, POSITION)
    assert isinstance(plain_key, Event)
    assert plain_key.puid == ID
    missing = decoder.decode(OUTPUTS, [], None, value, 0, POSITION)
    assert isinstance(missing, DecodeError)
    assert missing.code == "missing_puid"
    assert request_id_of(f"12.p.{ID}") == ID


def test_labels_come_from_the_topic_the_pipeline_header_and_the_route_header() -> None:
    value = _response("INT64", [1], [1], "raw").SerializeToString()
    headers = [*HEADERS, ("pipeline", b"iris-pipe")]
    assert _event(value, headers).key == ModelKey("prod", "iris-pipe", "", "iris")
    # A model inferred on its own: the gateway names the model as the "pipeline".
    assert _event(value, [*HEADERS, ("pipeline", b"iris")]).key == ModelKey("prod", "", "", "iris")
    # An experiment routed the default model's call to a candidate: the newest route names it.
    routed = [*headers, ("x-seldon-route", b":pre_1:"), ("X-Seldon-Route", b":iris2_3:")]
    assert _event(value, routed).key == ModelKey("prod", "iris-pipe", "", "iris2")
    pipeline = _event(value, HEADERS, "seldon.prod.pipeline.iris-pipe.outputs")
    assert pipeline.key == ModelKey("prod", "iris-pipe", "", "")


def test_declared_experiments_make_their_members_predictors_of_one_deployment() -> None:
    value = _response("INT64", [1], [1], "raw").SerializeToString()
    experiments = Experiments.parse(["iris-exp=iris:iris2", "pipes=p1:p2"])
    routed = [*HEADERS, ("x-seldon-route", b":iris2_1:")]
    assert _event(value, routed, experiments=experiments).key == ModelKey(
        "prod", "iris-exp", "iris2", "iris2"
    )
    assert _event(value, HEADERS, experiments=experiments).key == ModelKey(
        "prod", "iris-exp", "default", "iris"
    )
    mirrored = [*HEADERS, ("pipeline", b"p2")]
    shadow = _event(value, mirrored, "seldon.prod.model.m2.outputs", experiments=experiments)
    assert shadow.key == ModelKey("prod", "pipes", "p2", "m2")
    default = _event(
        value,
        [*HEADERS, ("pipeline", b"p1")],
        "seldon.prod.model.m1.outputs",
        experiments=experiments,
    )
    assert default.key == ModelKey("prod", "pipes", "default", "m1")
    assert default.puid == shadow.puid


@pytest.mark.parametrize("text", ["iris", "iris=", "iris=a", "=a:b", "iris=a:a", "iris=a:"])
def test_malformed_experiments_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="experiment"):
        Experiments.parse([text])


def test_a_model_in_two_experiments_is_refused() -> None:
    with pytest.raises(ValueError, match="member of experiments"):
        Experiments.parse(["a=m:n", "b=n:o"])


def test_routes_skip_pipelines_and_versions() -> None:
    assert routed_model([":iris_1:"]) == "iris"
    assert routed_model([":p.pipeline:"]) is None
    assert routed_model([":a_1::b_12:", ":p.pipeline:"]) == "b"
    assert routed_model([]) is None


def test_inputs_are_requests_whose_payload_is_not_read() -> None:
    event = _event(b"\x0a\x04iris", HEADERS, "seldon.prod.model.iris.inputs")
    assert event.kind is EventKind.REQUEST
    assert event.key == ModelKey("prod", "", "", "iris")
    assert event.classes is None


def test_the_errors_topic_gives_a_model_error_under_the_model_it_names() -> None:
    headers = [*HEADERS, ("seldon-pipeline-errors", b"iris"), ("pipeline", b"iris-pipe")]
    item = _decode(b"rpc error: code = Unavailable", headers, "seldon.prod.errors.errors")
    assert isinstance(item, ModelError)
    assert item.key == ModelKey("prod", "iris-pipe", "", "iris")
    assert item.request_id == ID
    assert item.reason.startswith("rpc error")
    # Core 2's pre-releases (before 2.0) wrote the header empty.
    older = _decode(b"boom", [("seldon-pipeline-errors", b"")], "seldon.prod.errors.errors")
    assert isinstance(older, ModelError)
    assert older.key == ModelKey("prod", "", "", "")


def test_the_feedback_topic_reads_seldon_feedback_by_x_request_id_or_key() -> None:
    body = orjson.dumps({"reward": 1, "truth": {"data": {"ndarray": [["setosa"]]}}})
    event = _event(body, HEADERS, "feedback-stream.feedback")
    assert event.kind is EventKind.FEEDBACK
    assert (event.puid, event.classes, event.reward) == (ID, ("setosa",), 1.0)
    assert event.key == ModelKey()
    keyed = Core2Decoder().decode("feedback-stream.feedback", [], ID.encode(), body, 0, POSITION)
    assert isinstance(keyed, Event)
    assert keyed.puid == ID
    named = _event(body, [*HEADERS, ("seldon-model", b"iris2")], "feedback-stream.feedback")
    assert named.key == ModelKey(model="iris2")
    nameless = Core2Decoder().decode("feedback-stream.feedback", [], None, body, 0, POSITION)
    assert isinstance(nameless, DecodeError)
    assert nameless.code == "missing_puid"
    renamed = _decode(body, HEADERS, "my-feedback", feedback_topic="my-feedback")
    assert isinstance(renamed, Event)
    assert renamed.kind is EventKind.FEEDBACK


def test_other_topics_and_bad_headers_are_decode_errors() -> None:
    error = _decode(b"{}", HEADERS, "logs")
    assert isinstance(error, DecodeError)
    assert error.code == "unknown_topic"
    bad = _decode(b"{}", [("x-request-id", b"\xff")])
    assert isinstance(bad, DecodeError)
    assert bad.code == "bad_header"


@pytest.mark.parametrize(
    ("topic", "prefix", "expected"),
    [
        ("seldon.prod.model.iris.outputs", "seldon", (TopicKind.MODEL_OUTPUTS, "prod", "iris")),
        ("seldon.prod.model.iris.inputs", "seldon", (TopicKind.MODEL_INPUTS, "prod", "iris")),
        ("seldon.prod.pipeline.p.outputs", "seldon", (TopicKind.PIPELINE_OUTPUTS, "prod", "p")),
        ("seldon.prod.pipeline.p.inputs", "seldon", (TopicKind.PIPELINE_INPUTS, "prod", "p")),
        ("seldon.prod.errors.errors", "seldon", (TopicKind.ERRORS, "prod", "")),
        ("my.org.prod.model.iris.outputs", "my.org", (TopicKind.MODEL_OUTPUTS, "prod", "iris")),
        ("seldon.prod.model.iris.outputs", "myorg", None),
        ("seldon.prod.model.iris.results", "seldon", None),
        ("seldon.prod.model..outputs", "seldon", None),
        ("seldon.prod.model.iris.outputs.x", "seldon", None),
    ],
)
def test_topic_names(topic: str, prefix: str, expected: tuple[Any, ...] | None) -> None:
    parsed = parse_topic(topic, prefix)
    got = None if parsed is None else (parsed.kind, parsed.namespace, parsed.name)
    assert got == expected


def test_the_pattern_picks_a_namespace_s_model_outputs_errors_and_feedback() -> None:
    pattern = re.compile(topic_pattern("seldon", "prod"))
    picked = [
        "seldon.prod.model.iris.outputs",
        "seldon.prod.errors.errors",
        "feedback-stream.feedback",
    ]
    left = [
        "seldon.prod.model.iris.inputs",
        "seldon.dev.model.iris.outputs",
        "seldon.prod.pipeline.p.outputs",
        "seldonXprod.model.iris.outputs",
        "other.prod.model.iris.outputs",
    ]
    assert all(pattern.match(t) for t in picked)
    assert not any(pattern.match(t) for t in left)
    with_inputs = re.compile(topic_pattern("seldon", "", inputs=True))
    assert with_inputs.match("seldon.dev.model.iris.inputs")


def test_the_seldon_core_2_source_sets_the_topic_pattern() -> None:
    preset = ServiceSettings(
        source="seldon-core-2", seldon_namespace="prod", seldon_topic_prefix="my"
    )
    assert preset.kafka_topic_pattern == topic_pattern("my", "prod")
    pattern = ServiceSettings(source="seldon-core-2", kafka_topic_pattern="^x$")
    assert pattern.kafka_topic_pattern == "^x$"
    assert ServiceSettings().kafka_topic_pattern == ""
    with pytest.raises(ValueError, match="NAME=DEFAULT"):
        ServiceSettings(seldon_experiments="broken")
    with pytest.raises(ValueError, match="repartition_topic"):
        ServiceSettings(source="seldon-core-2", repartition_topic="rekeyed")


def test_the_checked_in_protobuf_module_is_what_protoc_makes_of_the_proto(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PACKAGE / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "grpc_predict_v2.proto",
        ],
        check=True,
    )
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (PACKAGE / name).read_bytes(), name


INTEGER_BOUNDS = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}


@st.composite
def _tensors(draw: st.DrawFn) -> tuple[str, list[Any], list[int]]:
    datatype = draw(st.sampled_from([*INTEGER_BOUNDS, "FP32", "FP64", "BOOL", "BYTES"]))
    rows = draw(st.integers(1, 6))
    width = draw(st.sampled_from([1, 2, 3, 5]))
    size = rows * width
    if datatype in INTEGER_BOUNDS:
        low, high = INTEGER_BOUNDS[datatype]
        values: list[Any] = draw(st.lists(st.integers(low, high), min_size=size, max_size=size))
    elif datatype == "FP32":
        # Values a float32 holds exactly, so JSON and the raw bytes say the same number.
        values = [
            float(v) / 8
            for v in draw(st.lists(st.integers(-800, 800), min_size=size, max_size=size))
        ]
    elif datatype == "FP64":
        finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
        values = draw(st.lists(finite, min_size=size, max_size=size))
    elif datatype == "BOOL":
        values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    else:
        text = st.text(st.characters(codec="utf-8"), max_size=8)
        values = draw(st.lists(text, min_size=size, max_size=size))
    return datatype, values, [rows, width] if width > 1 or draw(st.booleans()) else [rows]


@given(_tensors(), st.sampled_from(["contents", "raw"]))
@settings(max_examples=300, deadline=None)
def test_protobuf_tensors_read_exactly_as_their_v2_json(
    tensor: tuple[str, list[Any], list[int]], layout: str
) -> None:
    datatype, values, shape = tensor
    wire = [v.encode() for v in values] if datatype == "BYTES" else values
    proto = _decode(_response(datatype, wire, shape, layout).SerializeToString())
    body = {"outputs": [{"name": "p", "datatype": datatype, "shape": shape, "data": values}]}
    json = _decode(orjson.dumps(body))
    if isinstance(json, Event):
        assert isinstance(proto, Event), proto
        assert proto.classes == json.classes
    else:
        assert isinstance(proto, DecodeError)
        assert isinstance(json, DecodeError)
        assert proto.code == json.code
