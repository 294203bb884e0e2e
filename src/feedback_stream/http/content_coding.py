"""Request bodies' content codings, undone at the HTTP edge, bounded by the body cap.

The listeners serve with aiohttp's own decompression off: it answers a coding
it cannot read (``br``, ``zstd``) with a plain-text ``400``, passes codings it
does not know (``compress``, stacked ``gzip, br``) through as if they were
plain, and does not notice a truncated gzip stream. Ingest undoes the codings
here instead, so every body is either plain bytes for the decoder or a
:class:`BodyRefusal` the handler answers as JSON and counts:

* ``gzip`` (also ``x-gzip``; concatenated members are read in turn),
  ``deflate`` (zlib-wrapped as RFC 9110 says, or raw as some clients send
  it) and ``identity``, in any case, listed in one header or several;
  stacked codings are undone last-applied first, at most
  :data:`MAX_CODINGS` of them;
* a body starting with the gzip magic bytes is inflated whatever the headers
  say, as the decoder would (KServe's agent logs gzip bodies unlabelled);
* any other coding: ``unsupported_content_encoding`` (``400``);
* corrupt or truncated compressed data, or data after the end of the
  compressed stream: ``content_encoding_error`` (``400``);
* a body that inflates past the body cap (``http_max_body``), a zip bomb:
  ``request_entity_too_large`` (``413``), as a body over the cap as sent;
* a ``Transfer-Encoding`` other than ``chunked`` (aiohttp reads the chunks
  and passes a ``gzip, chunked`` body on still compressed):
  ``unsupported_transfer_encoding`` (``400``).

Pure functions, no I/O; a large body's inflation costs CPU, so the handlers
call :func:`decode_content` in a worker thread when :func:`is_plain` says
there is work to do.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

from feedback_stream.payload import GZIP_MAGIC

__all__ = [
    "MAX_CODINGS",
    "SUPPORTED",
    "BodyRefusal",
    "decode_content",
    "is_plain",
    "transfer_refusal",
]

SUPPORTED: Final = "gzip, deflate"
"""The codings ingest undoes, as an ``Accept-Encoding`` value (RFC 9110 §12.5.3)."""

MAX_CODINGS: Final = 4
"""The most codings one body may stack: each is a full pass over up to the body cap."""

_GZIP: Final = frozenset({"gzip", "x-gzip"})
_DEFLATE: Final = "deflate"
_IDENTITY: Final = frozenset({"", "identity"})


@dataclass(frozen=True, slots=True)
class BodyRefusal:
    """Why a request body cannot be read: a bounded ``code``, a ``reason``, the status."""

    code: str
    reason: str
    status: int = 400


class _Refused(Exception):
    def __init__(self, refusal: BodyRefusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def _codings(header: str) -> list[str]:
    """The codings a ``Content-Encoding`` value lists, in the order applied, lower case."""
    return [c for c in (part.strip().lower() for part in header.split(",")) if c not in _IDENTITY]


def is_plain(header: str, body: bytes) -> bool:
    """Whether the body is to be read as it is: no coding named and no gzip magic."""
    return not _codings(header) and not body.startswith(GZIP_MAGIC)


def transfer_refusal(header: str) -> BodyRefusal | None:
    """Why a ``Transfer-Encoding`` value cannot be read (only ``chunked`` is), else ``None``."""
    codings = [c for c in _codings(header) if c != "chunked"]
    if not codings:
        return None
    return BodyRefusal(
        "unsupported_transfer_encoding",
        f"Transfer-Encoding {', '.join(codings)} is not supported; send chunked or Content-Length",
    )


def decode_content(header: str, body: bytes, limit: int) -> bytes | BodyRefusal:
    """The body with the codings of ``header`` (its ``Content-Encoding``) undone.

    Args:
        header: the ``Content-Encoding`` values, joined by ``,`` (empty: none).
        body: the body as received.
        limit: the most bytes any stage may inflate to (the body cap).

    Returns:
        The plain body, or why it cannot be read (code, reason, HTTP status).
    """
    codings = _codings(header)
    unknown = sorted({c for c in codings if c not in _GZIP and c != _DEFLATE})
    if unknown:
        return BodyRefusal(
            "unsupported_content_encoding",
            f"Content-Encoding {', '.join(unknown)} is not supported; send {SUPPORTED} or identity",
        )
    if len(codings) > MAX_CODINGS:
        return BodyRefusal(
            "unsupported_content_encoding",
            f"{len(codings)} stacked content codings; at most {MAX_CODINGS} are undone",
        )
    try:
        for coding in reversed(codings):
            body = _inflate(body, coding, limit)
        passes = len(codings)
        while body.startswith(GZIP_MAGIC):  # unlabelled gzip, as the decoder would read it
            if passes == MAX_CODINGS:
                return BodyRefusal(
                    "unsupported_content_encoding",
                    f"the body is still gzip after {MAX_CODINGS} inflations",
                )
            body = _inflate(body, "gzip", limit)
            passes += 1
    except _Refused as refused:
        return refused.refusal
    return body


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    if not data:
        return data  # nothing sent: the decoder words what is missing
    out = bytearray()
    rest = data
    while rest:
        stream = zlib.decompressobj(_wbits(rest, coding))
        try:
            out += stream.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise _Refused(
                BodyRefusal("content_encoding_error", f"the body is corrupt {coding} data ({exc})")
            ) from None
        if len(out) > limit:
            raise _Refused(
                BodyRefusal(
                    "request_entity_too_large",
                    f"the body inflates past the {limit}-byte limit (http_max_body)",
                    413,
                )
            )
        if not stream.eof:
            raise _Refused(
                BodyRefusal(
                    "content_encoding_error",
                    f"the body is truncated {coding} data: the compressed stream ends early",
                )
            )
        rest = stream.unused_data
        if rest and coding not in _GZIP:
            raise _Refused(
                BodyRefusal(
                    "content_encoding_error",
                    f"the body has {len(rest)} bytes after the end of its {coding} stream",
                )
            )
    return bytes(out)


def _wbits(data: bytes, coding: str) -> int:
    """zlib's ``wbits`` for ``data``: gzip, zlib-wrapped deflate, or raw deflate."""
    if coding in _GZIP:
        return 16 + zlib.MAX_WBITS
    # RFC 1950 header: method 8, window <= 32 KiB, header checksum a multiple of 31.
    zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7
    if zlib_header and ((data[0] << 8) | data[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS
