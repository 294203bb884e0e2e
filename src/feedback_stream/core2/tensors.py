"""Open Inference Protocol tensors, from protobuf messages to plain values.

A tensor's values travel in one of two layouts (KServe's
``grpc_predict_v2.proto``, Apache-2.0):

* **typed contents**: ``InferTensorContents``, one repeated field per
  family of datatypes (``bool_contents``, ``int_contents`` for INT8/16/32,
  ``int64_contents``, ``uint_contents`` for UINT8/16/32, ``uint64_contents``,
  ``fp32_contents``, ``fp64_contents``, ``bytes_contents``);
* **raw contents**: ``raw_output_contents[i]`` (``raw_input_contents`` for a
  request) holds tensor *i* as flattened, row-major, little-endian bytes,
  with no padding. FP16 and BF16 exist only in this layout. A BYTES tensor's
  raw bytes are its elements one after the other, each preceded by its
  length as a 4-byte little-endian unsigned integer.

:func:`first_output` turns the first output tensor of a
``ModelInferResponse`` into the V2 JSON shape (``{"name", "datatype",
"shape", "data"}``), so that it is read by the very rules V2 JSON is:
BYTES elements become text (class names), BOOL elements booleans, every
number a Python ``int`` or ``float``.

Errors raise :class:`TensorError` with a reason a person can act on.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

from feedback_stream.core2.grpc_predict_v2_pb2 import InferTensorContents, ModelInferResponse

__all__ = ["CONTENTS_FIELD", "RAW_FORMAT", "TensorError", "first_output", "raw_values"]


class TensorError(ValueError):
    """A tensor whose values cannot be read; ``code`` labels it for metrics."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


RAW_FORMAT: Final[dict[str, str]] = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
"""``struct`` code of one element of each fixed-size datatype (little-endian)."""

_BF16: Final = "BF16"
_BYTES: Final = "BYTES"

CONTENTS_FIELD: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field that holds each datatype's values."""

_LENGTH: Final = struct.Struct("<I")


def _element_count(shape: list[int], what: str) -> int:
    if any(d < 0 for d in shape):
        raise TensorError("bad_payload", f"{what}.shape {shape} has a negative dimension")
    return math.prod(shape) if shape else 1


def raw_values(datatype: str, raw: bytes, shape: list[int], what: str) -> list[Any]:
    """The elements of a raw (little-endian) tensor, flattened.

    Raises:
        TensorError: unknown datatype, or a byte count that ``shape`` does not explain.
    """
    count = _element_count(shape, what)
    if datatype == _BYTES:
        return _raw_bytes(raw, count, what)
    if datatype == _BF16:
        _check_size(raw, count, 2, datatype, what)
        # bfloat16 is the upper half of a float32: widen and read as one.
        widened = b"".join(b"\x00\x00" + raw[i : i + 2] for i in range(0, len(raw), 2))
        return list(struct.unpack(f"<{count}f", widened))
    code = RAW_FORMAT.get(datatype)
    if code is None:
        raise TensorError("bad_payload", f"{what}.datatype {datatype!r} is not an OIP datatype")
    _check_size(raw, count, struct.calcsize(code), datatype, what)
    return list(struct.unpack(f"<{count}{code}", raw))


def _check_size(raw: bytes, count: int, size: int, datatype: str, what: str) -> None:
    if len(raw) != count * size:
        raise TensorError(
            "bad_payload",
            f"{what}: {count} {datatype} elements need {count * size} raw bytes, got {len(raw)}",
        )


def _raw_bytes(raw: bytes, count: int, what: str) -> list[Any]:
    values: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError("bad_payload", f"{what}: raw BYTES element {len(values)} is cut off")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError(
                "bad_payload", f"{what}: raw BYTES element {len(values)} needs {length} bytes"
            )
        values.append(_text(raw[offset : offset + length], what))
        offset += length
    if len(values) != count:
        raise TensorError(
            "bad_payload", f"{what}: shape needs {count} BYTES elements, raw holds {len(values)}"
        )
    return values


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise TensorError(
            "not_classifiable", f"{what}: a BYTES element is not UTF-8 text, so not a class name"
        ) from None


def _contents_values(datatype: str, contents: InferTensorContents, what: str) -> list[Any]:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        if datatype in ("FP16", _BF16):
            raise TensorError(
                "bad_payload", f"{what}: {datatype} values travel only as raw contents"
            )
        raise TensorError("bad_payload", f"{what}.datatype {datatype!r} is not an OIP datatype")
    values = getattr(contents, field)
    if datatype == _BYTES:
        return [_text(bytes(v), what) for v in values]
    return list(values)


def first_output(response: ModelInferResponse) -> dict[str, Any]:
    """The first output of ``response`` as V2 JSON: ``name``, ``datatype``, ``shape``, ``data``.

    Raises:
        TensorError: no output, or values that do not match the datatype and shape.
    """
    if not response.outputs:
        raise TensorError("bad_payload", "the response has no outputs")
    tensor = response.outputs[0]
    what = f"outputs[0] ({tensor.name or 'unnamed'})"
    datatype = tensor.datatype.upper()
    shape = list(tensor.shape)
    if response.raw_output_contents:
        values = raw_values(datatype, response.raw_output_contents[0], shape, what)
    else:
        values = _contents_values(datatype, tensor.contents, what)
    return {"name": tensor.name, "datatype": datatype, "shape": shape, "data": values}
