"""Runs core cases for the differential test (tests/test_compiled.py), in this process or
as a worker process in the other mode (compiled vs pure Python).

A case is plain data (pickled across the pipe): replay lines or Kafka wire
records, the engine's configuration, and an optional declared-kinds variant
of :mod:`tests._score_streams`. Its result is everything the core exposes to
the service: the JSON report, the decode and join errors in order, the event
counters, every model's counters, and the state snapshot
(canonical: its sets sorted).

As a worker (``python -m tests._core_worker``) it reads length-prefixed
pickled cases on stdin and answers each with a pickled result; its first
answer says how its core runs (``feedback_stream.CORE_BUILD``).
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO, Any

import orjson

from feedback_stream import CORE_BUILD
from feedback_stream.engine import ALL_PARTITIONS, Engine
from feedback_stream.events import SourcePosition
from feedback_stream.model_kinds import ModelKinds
from feedback_stream.replay import replay

__all__ = ["read_frame", "run_case", "write_frame"]


def _kinds(variant: str | None) -> ModelKinds | None:
    if variant is None:
        return None
    from tests._score_streams import kinds_for

    return kinds_for(variant)


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Process one case on a fresh engine; every observable result, as plain data."""
    engine = Engine(
        case["windows"],
        ttl=case["ttl"],
        time_basis=case["time_basis"],
        route=case["route"],
        kinds=_kinds(case.get("kinds")),
    )
    errors: list[tuple[str, str]] = []
    if "lines" in case:
        result = replay(case["lines"], engine)
        errors = [(e.code, e.reason) for e in result.errors]
    else:
        for offset, (headers, value, timestamp, partition) in enumerate(case["wire"]):
            position = SourcePosition("differential", partition, offset)
            error = engine.process_record(headers, value, timestamp, position)
            if error is not None:
                errors.append((error.code, error.reason))
            if offset % case["expire_every"] == 0:
                engine.expire(engine.clock)
    option = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    return {
        "report": orjson.dumps(engine.report(), option=option),
        "errors": errors,
        "events": engine.events().to_dict(),
        "model_counters": {str(k): engine.model_counters(k).to_dict() for k in engine.model_keys()},
        "pending": engine.pending,
        "snapshots": {str(k): _canonical(engine.snapshot(k)) for k in sorted(engine.states)},
        "all_partitions": ALL_PARTITIONS in engine.states,
    }


def _canonical(snapshot: bytes) -> Any:
    """A snapshot with each join entry's marks sorted: they are a set, which iterates
    in an order that depends on the process's string hash seed."""
    document = orjson.loads(snapshot)
    for entry in document["join"]["entries"]:
        entry[7] = sorted(entry[7])
    return document


def write_frame(stream: IO[bytes], payload: object) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the core worker closed its pipe")
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def main() -> None:
    write_frame(sys.stdout.buffer, (CORE_BUILD.compiled, CORE_BUILD.reason))
    while True:
        try:
            case = read_frame(sys.stdin.buffer)
        except EOFError:
            return
        write_frame(sys.stdout.buffer, run_case(case))


if __name__ == "__main__":
    main()
