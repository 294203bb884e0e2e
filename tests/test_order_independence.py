"""The same records in any read order give the same report (docs/semantics.md, read order).

Seldon's executor writes unkeyed records, so one puid's events sit on
several partitions and a reader interleaves them in any order: the live
consumer, a group re-reading the topic and ``replay`` each see another one.
Every rule of the join must therefore depend on the set of events only.
These properties draw streams (duplicates, retried responses, amendments,
row mismatches, several models, feedback carrying its own prediction, V2
responses found by their body id) and read them in two random orders.

Only the revision counters (amendments, and the outcomes they retracted and
re-applied) may differ: they count how often a reader changed its mind.
The join TTL is longer than the streams' span, as it is when partitions are
read within the TTL of each other.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_stream.engine import Engine
from feedback_stream.replay import replay
from tests._fidelity_streams import extras, with_extras
from tests._oracle import Stream, order_free, streams

_WINDOWS = ("total", "5m")
_TTL = 100_000.0


def _report(lines: list[bytes]) -> dict[str, Any]:
    engine = Engine(_WINDOWS, ttl=_TTL)
    replay(lines, engine)
    return order_free(engine.report())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), more=extras(), data=st.data())
def test_any_read_order_gives_the_same_report(
    stream: Stream, more: list[dict[str, Any]], data: st.DataObject
) -> None:
    lines = with_extras(stream, more)
    first = data.draw(st.permutations(lines))
    second = data.draw(st.permutations(lines))
    assert _report(list(first)) == _report(list(second))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), more=extras(), data=st.data())
def test_any_interleaving_of_partitions_gives_the_same_report(
    stream: Stream, more: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Each partition read in its own order, the partitions interleaved at random."""
    lines = with_extras(stream, more)
    by_partition: dict[int, list[bytes]] = {}
    for line in lines:
        by_partition.setdefault(orjson.loads(line)["partition"], []).append(line)
    queues = [list(q) for q in by_partition.values()]
    interleaved: list[bytes] = []
    while any(queues):
        live = [q for q in queues if q]
        queue = live[data.draw(st.integers(0, len(live) - 1))]
        interleaved.append(queue.pop(0))
    assert _report(interleaved) == _report(lines)
