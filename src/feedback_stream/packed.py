"""The packed form of a pending join entry: one ``bytes`` object per puid.

Most puids the join holds are pending: their request and response have
been read and their feedback has not. As Python objects such an entry
costs an entry object, a response object, a tuple per request, a float per
time and an int per identity hash, about 450 bytes. Packed, it is one
``bytes`` object of 33 bytes of header and the fields below, 96 bytes in
all for one request and one response (pymalloc rounds to 16 bytes):

====================  ===========  =============================================
part                  layout       fields
====================  ===========  =============================================
head                  ``<dBB``     deadline (s), request count, response count
each request          ``<Hd``      model key id, event time (s)
each response         ``<dQHHH``   event time (s), identity hash (its rank),
                                   model key id, classes id, names id
                                   (:data:`NO_ID` for none)
seen identities       ``<Q`` each  the 64-bit identity hashes, for dedupe
====================  ===========  =============================================

Model keys and label tuples (a response's classes and names) are written
as ids into a :class:`Interned` table of the store: a decoder shares those
objects across events, so the table stays small. The table has a bound;
past it, values get no id and their entries stay unpacked.

Only the pending shape is packed (no feedback, no pair, no alias, no
scores, responses never labelled); anything else is the join's full entry.
The packed form never leaves the process: snapshots and the changelog
write the entry's plain data (:meth:`feedback_stream.join.JoinStore.dump_entry`).
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = [
    "MAX_PARTS",
    "NO_ID",
    "Interned",
    "PackedRequest",
    "PackedResponse",
    "counts",
    "deadline",
    "has_response",
    "pack",
    "seen",
    "unpack",
    "with_request",
    "with_response",
]

NO_ID = 0xFFFF
"""The id of no value (a response without names)."""

MAX_PARTS = 0xFF
"""At most this many requests, and as many responses, in a packed entry."""

_HEAD = struct.Struct("<dBB")
_REQUEST = struct.Struct("<Hd")
_RESPONSE = struct.Struct("<dQHHH")

PackedRequest = tuple[int, float]
"""(model key id, event time)."""

PackedResponse = tuple[float, int, int, int, int]
"""(event time, identity hash, model key id, classes id, names id or :data:`NO_ID`)."""

_V = TypeVar("_V", bound=Hashable)


class Interned(Generic[_V]):
    """Values by small id and ids by value, for at most ``limit`` values.

    Args:
        limit: how many values get an id; :data:`NO_ID` bounds it.
    """

    __slots__ = ("_ids", "_last", "_last_id", "_limit", "values")

    def __init__(self, limit: int = NO_ID) -> None:
        self._limit = min(limit, NO_ID)
        self._ids: dict[_V, int] = {}
        self.values: list[_V] = []
        self._last: _V | None = None
        self._last_id = NO_ID

    def id(self, value: _V) -> int:
        """The id of ``value``, given one if the table has room; :data:`NO_ID` when full.

        The value asked last is answered by identity, without hashing it: a
        decoder hands out the same key object for a run of records.
        """
        if value is self._last:
            return self._last_id
        found = self._ids.get(value)
        if found is not None:
            self._last, self._last_id = value, found
            return found
        values = self.values
        if len(values) >= self._limit:
            return NO_ID
        new = len(values)
        values.append(value)
        self._ids[value] = new
        self._last, self._last_id = value, new
        return new

    def __len__(self) -> int:
        return len(self.values)


def pack(
    deadline: float,
    requests: list[PackedRequest],
    responses: list[PackedResponse],
    seen: bytes,
) -> bytes:
    """One packed entry (module docstring); at most :data:`MAX_PARTS` of each part.

    Raises:
        struct.error: an id or a count out of range.
    """
    parts = [_HEAD.pack(deadline, len(requests), len(responses))]
    for key, time in requests:
        parts.append(_REQUEST.pack(key, time))
    for time, rank, key, classes, names in responses:
        parts.append(_RESPONSE.pack(time, rank, key, classes, names))
    parts.append(seen)
    return b"".join(parts)


def unpack(packed: bytes) -> tuple[float, list[PackedRequest], list[PackedResponse], bytes]:
    """(deadline, requests, responses, seen identities) of a packed entry."""
    deadline_s, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    at = _HEAD.size
    requests: list[PackedRequest] = []
    for _ in range(n_requests):
        key, time = _REQUEST.unpack_from(packed, at)
        requests.append((key, time))
        at += _REQUEST.size
    responses: list[PackedResponse] = []
    for _ in range(n_responses):
        r_time, rank, r_key, classes, names = _RESPONSE.unpack_from(packed, at)
        responses.append((r_time, rank, r_key, classes, names))
        at += _RESPONSE.size
    return deadline_s, requests, responses, packed[at:]


def deadline(packed: bytes) -> float:
    """The deadline of a packed entry (seconds)."""
    value: float = _HEAD.unpack_from(packed, 0)[0]
    return value


def counts(packed: bytes) -> tuple[int, int]:
    """(requests, responses) held by a packed entry."""
    _, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    return n_requests, n_responses


def seen(packed: bytes, ident: bytes) -> bool:
    """Whether the 8-byte identity hash ``ident`` is among a packed entry's seen ones."""
    _, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    start = _HEAD.size + n_requests * _REQUEST.size + n_responses * _RESPONSE.size
    at = packed.find(ident, start)
    while at != -1:
        if (at - start) % 8 == 0:
            return True
        at = packed.find(ident, at + 1)
    return False


def has_response(packed: bytes, key: int) -> bool:
    """Whether a packed entry holds a response of model key id ``key``."""
    _, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    at = _HEAD.size + n_requests * _REQUEST.size
    for _ in range(n_responses):
        if _RESPONSE.unpack_from(packed, at)[2] == key:
            return True
        at += _RESPONSE.size
    return False


def with_request(packed: bytes, deadline: float, request: PackedRequest, ident: bytes) -> bytes:
    """``packed`` with one more request and identity, and deadline ``deadline``.

    Raises:
        struct.error: the entry already holds :data:`MAX_PARTS` requests.
    """
    _, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    end = _HEAD.size + n_requests * _REQUEST.size
    return b"".join(
        (
            _HEAD.pack(deadline, n_requests + 1, n_responses),
            packed[_HEAD.size : end],
            _REQUEST.pack(*request),
            packed[end:],
            ident,
        )
    )


def with_response(packed: bytes, deadline: float, response: PackedResponse, ident: bytes) -> bytes:
    """``packed`` with one more response and identity, and deadline ``deadline``.

    Raises:
        struct.error: the entry already holds :data:`MAX_PARTS` responses.
    """
    _, n_requests, n_responses = _HEAD.unpack_from(packed, 0)
    end = _HEAD.size + n_requests * _REQUEST.size + n_responses * _RESPONSE.size
    return b"".join(
        (
            _HEAD.pack(deadline, n_requests, n_responses + 1),
            packed[_HEAD.size : end],
            _RESPONSE.pack(*response),
            packed[end:],
            ident,
        )
    )
