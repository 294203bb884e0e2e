"""What a payload says beyond its classes: compression, rewards, ids, embedded predictions.

The decoder (:mod:`feedback_stream.decode`) reads the classes of a payload;
this module holds the smaller readings loggers and clients need around
them, each as Seldon Core or KServe really sends it:

* :func:`inflate`: a gzip body recognised by its magic bytes whatever the
  headers say (KServe's agent logs MLServer's compressed responses as
  ``application/json`` with no ``Content-Encoding``);
* :func:`read_reward`: a reward as Seldon accepts it (a number, a boolean,
  or a numeric string such as ``"1"``, which protobuf's JSON parser takes);
* :func:`holds_no_classes`: a Seldon message whose payload is ``jsonData``,
  ``strData`` or ``binData`` (a prediction without classes);
* :func:`v2_response_names`: the ``model_name`` and ``id`` of an Open
  Inference Protocol (V2) response body;
* :func:`embedded_prediction`: the ``response`` a Seldon client's feedback
  carries, and the puid its ``meta.puid`` names.

Pure functions, no I/O; errors are :class:`ValueError` with the reason,
which the decoder turns into a counted, bounded error code.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Final

__all__ = [
    "GZIP_MAGIC",
    "MAX_INFLATED_BYTES",
    "embedded_prediction",
    "holds_no_classes",
    "inflate",
    "read_reward",
    "v2_response_names",
]

GZIP_MAGIC: Final = b"\x1f\x8b"
"""The first two bytes of every gzip member (RFC 1952 §2.3.1); never valid JSON."""

MAX_INFLATED_BYTES: Final = 64 << 20
"""The most a compressed payload may inflate to (64 MiB): a bound against gzip bombs."""

_NO_CLASSES: Final = ("jsonData", "strData", "binData")


def inflate(data: bytes, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """``data`` decompressed when it starts with the gzip magic bytes, else as given.

    Concatenated gzip members are read in turn, as ``gzip.decompress`` does.

    Raises:
        ValueError: the data is gzip but corrupt, truncated, or inflates past ``limit``.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    out = bytearray()
    rest = data
    while rest.startswith(GZIP_MAGIC):
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += stream.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"gzip payload is corrupt ({exc})") from None
        if len(out) > limit:
            raise ValueError(f"gzip payload inflates past {limit} bytes")
        if not stream.eof:
            raise ValueError("gzip payload is truncated")
        rest = stream.unused_data
    return bytes(out)


def read_reward(value: Any) -> float | None:
    """A feedback's ``reward`` as a finite float; ``None`` when absent.

    Seldon's executor and Python wrapper parse feedback with protobuf's JSON
    reader into a ``float`` field, which takes numbers and numeric strings
    (``"1"``, ``" 0.5"``, ``"1e0"``); booleans count as 1 and 0, as the
    seed's feedback sent them.

    Raises:
        ValueError: anything else, or a value that is not finite (NaN, infinity).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        reward = float(value)
    elif isinstance(value, str):
        try:
            reward = float(value)
        except ValueError:
            raise ValueError(
                f"feedback.reward must be a number, a boolean or a numeric string, "
                f"got the string {value[:40]!r}"
            ) from None
    else:
        kind = "a list" if isinstance(value, list) else "an object"
        raise ValueError(f"feedback.reward must be a number or a boolean, got {kind}")
    if not math.isfinite(reward):
        raise ValueError(f"feedback.reward must be finite, got {value!r}")
    return reward


def holds_no_classes(message: Any) -> bool:
    """Whether a Seldon message's payload is ``jsonData``, ``strData`` or ``binData``."""
    if not isinstance(message, dict):
        return False
    data = message.get("data")
    if isinstance(data, dict) and any(name in data for name in _NO_CLASSES):
        return True
    return data is None and any(name in message for name in _NO_CLASSES)


def v2_response_names(payload: Any) -> tuple[str | None, str | None]:
    """The ``model_name`` and ``id`` of a V2 inference response body (``None`` where absent).

    Only a body with ``outputs`` (the Open Inference Protocol response) is
    read; empty strings count as absent.
    """
    if not isinstance(payload, dict) or "outputs" not in payload:
        return None, None
    name = payload.get("model_name")
    ident = payload.get("id")
    return (
        name if isinstance(name, str) and name else None,
        ident if isinstance(ident, str) and ident else None,
    )


def embedded_prediction(payload: dict[str, Any]) -> tuple[Any, str | None]:
    """The prediction a feedback carries (its ``response``) and the puid it names.

    Seldon's client ``feedback(prediction_request, prediction_response,
    reward, truth)`` posts the response it was given, whose ``meta.puid``
    is the puid of the original request. Returns ``(None, None)`` when the
    feedback carries no response; the puid is ``None`` when the response
    names none.
    """
    response = payload.get("response")
    if not isinstance(response, dict) or not response:
        return None, None
    meta = response.get("meta")
    puid = meta.get("puid") if isinstance(meta, dict) else None
    has_payload = any(name in response for name in ("data", "outputs", "predictions", *_NO_CLASSES))
    return (response if has_payload else None), (puid if isinstance(puid, str) and puid else None)
