"""The compiled core (mypyc) and the pure-Python one are one implementation.

mypyc compiles the very ``.py`` files of the core (``feedback_stream._compiled``),
so there is no second copy to drift; what can still differ is how the two
run them (native ints and floats, attribute slots, dataclass machinery).
The differential tests feed the same random streams to this process's
core and to a worker process running the other one (compiled here: a pure
worker; ``FEEDBACK_STREAM_PURE=1`` here: a compiled worker) and demand
identical reports, errors, counters and snapshots, byte for byte.

The guard tests check the staleness rule: a build whose sources changed is
never used.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import feedback_stream
from feedback_stream import CORE_BUILD, _compiled
from tests._core_worker import read_frame, run_case, write_frame
from tests._fidelity_streams import extras, with_extras
from tests._oracle import Stream, streams
from tests._score_streams import VARIANTS, ScoreStream, score_streams

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(feedback_stream.__file__).resolve().parent


class _Worker:
    """A worker process (tests/_core_worker.py) whose core runs the other way."""

    def __init__(self) -> None:
        env = dict(os.environ)
        if CORE_BUILD.compiled:
            env[_compiled.PURE_ENV] = "1"
        else:
            env.pop(_compiled.PURE_ENV, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests._core_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._in, self._out = self.process.stdin, self.process.stdout
        self.compiled, self.reason = read_frame(self._out)

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        write_frame(self._in, case)
        result: dict[str, Any] = read_frame(self._out)
        return result

    def close(self) -> None:
        self._in.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def other() -> Iterator[_Worker]:
    """The other core; the test fails (never skips) unless one side runs compiled."""
    worker = _Worker()
    try:
        assert worker.compiled != CORE_BUILD.compiled, (
            "the differential test needs the compiled and the pure core; here: "
            f"{CORE_BUILD.reason}; worker: {worker.reason}. `make install` builds the core."
        )
        yield worker
    finally:
        worker.close()


def _case(**fields: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "windows": ["total", "5m", "3"],
        "ttl": 100_000.0,
        "time_basis": "feedback",
        "route": "puid",
    }
    case.update(fields)
    return case


def _assert_same(case: dict[str, Any], other: _Worker) -> None:
    here, there = run_case(case), other.run(case)
    assert orjson.loads(here["report"]) == orjson.loads(there["report"])
    assert here == there  # and byte for byte: report, errors, counters, snapshots


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    more=extras(),
    basis=st.sampled_from(["feedback", "request"]),
    route=st.sampled_from(["puid", "partition"]),
    ttl=st.sampled_from([100_000.0, 5.0]),
)
def test_join_streams_give_identical_results(
    other: _Worker, stream: Stream, more: list[dict[str, Any]], basis: str, route: str, ttl: float
) -> None:
    """Duplicates, retries, amendments, row mismatches, embedded predictions, V2 aliases;
    per-puid and per-partition state; a TTL that expires entries mid-stream."""
    lines = with_extras(stream, more)
    _assert_same(_case(lines=lines, time_basis=basis, route=route, ttl=ttl), other)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), variant=st.sampled_from(VARIANTS))
def test_scored_streams_give_identical_results(
    other: _Worker, data: st.DataObject, variant: str
) -> None:
    """Declared binary, probability and regression models (the score terms)."""
    stream: ScoreStream = data.draw(score_streams(variant))
    _assert_same(_case(lines=stream.lines(), kinds=variant), other)


_HEADER_NAMES = ["ce-type", "ce-id", "ce-source", "ce-time", "ce-modelid",
                 "ce-inferenceservicename", "ce-namespace", "ce-endpoint", "ce-requestid",
                 "Ce-Type", "content-type"]  # fmt: skip
_TYPES = [
    b"io.seldon.serving.inference.request",
    b"io.seldon.serving.inference.response",
    b"io.seldon.serving.feedback",
    b"org.kubeflow.serving.inference.request",
    b"org.kubeflow.serving.inference.response",
    b"nonsense",
]
_SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False)
_JSON = st.recursive(  # small JSON documents: at most 8 leaves
    _SCALARS | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _hostile_records(draw: st.DrawFn) -> tuple[list[tuple[str, bytes]], bytes, int, int]:
    headers = [("ce-type", draw(st.sampled_from(_TYPES)))]
    for name in draw(st.lists(st.sampled_from(_HEADER_NAMES), max_size=5)):
        headers.append((name, draw(st.sampled_from([b"", b"p1", b"m", b"\xff", b"2024-01-01"]))))
    value = draw(
        st.one_of(
            st.binary(max_size=20),
            _JSON.map(orjson.dumps),
            st.sampled_from([b'{"data":{"ndarray":[[0.1,0.9]]},"meta":{}}', b'{"truth":[1]}']),
        )
    )
    return headers, value, draw(st.integers(0, 10**13)), draw(st.integers(0, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_hostile_records(), max_size=12))
def test_hostile_records_give_identical_errors(
    other: _Worker, records: list[tuple[list[tuple[str, bytes]], bytes, int, int]]
) -> None:
    """Garbage headers and values: the same decode errors, word for word."""
    _assert_same(_case(wire=records, expire_every=5), other)


def test_the_bench_stream_gives_identical_results(other: _Worker) -> None:
    """The core bench's own stream (binary CloudEvents headers), as the bench feeds it."""
    from bench.stream import bench_config, wire_stream

    wire = [(r.headers, r.value, r.timestamp, r.partition) for r in wire_stream(bench_config(400))]
    _assert_same(_case(wire=wire, windows=["total", "5m", "1000"], expire_every=100), other)


# ---------------------------------------------------------------- the staleness guard


def _copy_package(tmp_path: Path) -> Path:
    copy = tmp_path / "feedback_stream"
    copy.mkdir(parents=True)
    for name in _compiled.CORE_MODULES:
        shutil.copy(PACKAGE_DIR / f"{name}.py", copy / f"{name}.py")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        (copy / f"{name}{suffix}").write_bytes(b"")  # only its presence is read
    _compiled.record_sources(copy)
    return copy


def test_a_fresh_build_runs_compiled_and_an_edit_makes_it_stale(tmp_path: Path) -> None:
    copy = _copy_package(tmp_path)
    assert _compiled.inspect(copy, environ={}).compiled
    with (copy / "join.py").open("a", encoding="utf-8") as source:
        source.write("\n# an edit after the build\n")
    status = _compiled.inspect(copy, environ={})
    assert not status.compiled
    assert status.stale == ("join.py",)
    assert "STALE" in status.reason
    assert "make install" in status.reason
    assert not _compiled.inspect(copy, environ={_compiled.PURE_ENV: "1"}).compiled


def test_no_record_or_a_missing_extension_is_no_compiled_build(tmp_path: Path) -> None:
    copy = _copy_package(tmp_path)
    (copy / _compiled.RECORD).unlink()
    assert _compiled.inspect(copy, environ={}).stale == tuple(
        f"{name}.py" for name in _compiled.CORE_MODULES
    )
    copy = _copy_package(tmp_path / "again")
    next(copy.glob("windows.*so")).unlink()
    status = _compiled.inspect(copy, environ={})
    assert not status.compiled
    assert "windows" in status.reason


def test_a_stale_build_loads_every_core_module_from_its_source(tmp_path: Path) -> None:
    """A process whose package has an edited core source runs the .py files, warned."""
    built = _compiled.inspect(PACKAGE_DIR, environ={})
    assert built.compiled, f"this test needs a fresh compiled build: {built.reason}"
    copy = tmp_path / "src" / "feedback_stream"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "windows.py").open("a", encoding="utf-8") as source:
        source.write("\nEDITED_AFTER_THE_BUILD = True\n")
    probe = (
        "import warnings; warnings.simplefilter('error')\n"
        "try:\n    import feedback_stream\nexcept RuntimeWarning as w:\n    print('WARNED', w)\n"
        "warnings.simplefilter('ignore')\n"
        "import feedback_stream, feedback_stream.windows as w, feedback_stream.join as j\n"
        "print(feedback_stream.CORE_BUILD.stale, w.EDITED_AFTER_THE_BUILD, j.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != _compiled.PURE_ENV}
    env["PYTHONPATH"] = str(tmp_path / "src")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "WARNED feedback_stream core: pure Python: the compiled build is STALE" in out
    assert "('windows.py',) True" in out
    assert out.strip().endswith("join.py")
