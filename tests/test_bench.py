"""Smoke of the benchmark harness at tiny sizes: every benchmark runs, and the
Quix Streams and Faust jobs compute the same accuracy as the core.

Correctness only, never timing: the numbers of a run this small mean
nothing. The baselines run from their own venv (``bench/envs.py``), which
the first run creates.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest
from bench import __main__ as bench_main
from bench import core, envs, history, kafka_e2e, latency, memory, render, report, scaling
from bench.result import Context, Figure
from elasticsearch import AsyncElasticsearch

from feedback_stream import CORE_BUILD
from feedback_stream.es import Paging
from tests._es_helpers import delete_indices

TINY = 0.001


def _ctx(tmp_path: Path, bootstrap: str | None = None, profile: bool = False) -> Context:
    return Context(scale=TINY, results=tmp_path, profile=profile, bootstrap_address=bootstrap)


def _measured(figures: list[Figure]) -> None:
    assert figures
    for f in figures:
        assert f.detail.get("problem") is None, f.detail["problem"]
        assert math.isfinite(f.value), f
        assert f.value > 0, f


def test_core_measures_and_saves_a_profile(tmp_path: Path) -> None:
    figures = core.run(_ctx(tmp_path, profile=True))
    _measured(figures)
    assert figures[0].baseline_value is not None
    assert figures[0].baseline_value > 0
    # Compiled (mypyc), the core is one native call to cProfile; pure, its functions show.
    profile = (tmp_path / "profile-core-cprofile.txt").read_text()
    assert "process_record" in profile
    assert ("decode_kafka_record" in profile) is not CORE_BUILD.compiled
    assert figures[0].detail["core"] == CORE_BUILD.reason
    names = [f.name for f in figures]
    assert any(name.startswith("binary-score stream") for name in names), names
    assert any(name.startswith("regression stream") for name in names), names


def test_scored_streams_give_every_score_number() -> None:
    """The binary and regression bench streams are read in their declared kinds, error-free."""
    from bench.scored import kinds, scored_stream

    for kind, fields in (("binary", ("roc_auc", "log_loss", "brier")),
                         ("regression", ("mae", "rmse", "r2", "mape"))):  # fmt: skip
        engine = core.make_engine(kinds())
        core.process_all(engine, scored_stream(kind, 300))
        document = engine.report()
        assert document["events"]["invalid_reasons"] == {}
        for model in document["models"]:
            assert model["kind"] == kind
            numbers = model["windows"]["total"][kind]
            assert all(numbers[field] is not None for field in fields), numbers


def test_memory_per_pending_puid_in_a_child_process(tmp_path: Path) -> None:
    figures = memory.run(_ctx(tmp_path))
    _measured(figures)
    assert figures[0].detail["pending"] >= 2000


def test_render_covers_every_model_and_class(tmp_path: Path) -> None:
    (figure,) = render.run(_ctx(tmp_path))
    _measured([figure])
    assert figure.detail["true_classes_per_model"] == [render.CLASSES]


@pytest.mark.kafka
def test_quix_and_faust_jobs_agree_with_the_core(kafka_bootstrap: str, tmp_path: Path) -> None:
    envs.baseline_python()
    figures = kafka_e2e.run(_ctx(tmp_path, kafka_bootstrap))
    _measured(figures)
    by_baseline = {f.baseline_name: f for f in figures}
    for name in ("(c) Quix Streams job", "(c') Quix Streams job", "(d) Faust job"):
        assert by_baseline[name].baseline_value is not None, name


@pytest.mark.kafka
def test_latency_and_scaling_run_against_the_service(kafka_bootstrap: str, tmp_path: Path) -> None:
    _measured(latency.run(_ctx(tmp_path, kafka_bootstrap)))
    (figure,) = scaling.run(_ctx(tmp_path, kafka_bootstrap))
    _measured([figure])
    assert [m["partitions"] for m in figure.detail["two"]["members"]] in ([[0], [1]], [[1], [0]])


def test_main_writes_markdown_and_json(tmp_path: Path) -> None:
    argv = ["--only", "render", "--scale", str(TINY), "--results", str(tmp_path)]
    assert bench_main.main([*argv, "--no-readme", "--no-profile"]) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["figures"][0]["benchmark"] == "render"
    assert document["machine"]["cores"] >= 1
    markdown = (tmp_path / "latest.md").read_text()
    assert "| render |" in markdown
    assert "python -m bench" in markdown


def test_table_says_which_targets_are_met() -> None:
    figures = [
        Figure("core", "a", 250_000.0, "events/s", "b", 1e6, ">= 200,000", True),
        Figure("render", "c", 80.0, "ms", "d", 40.0, "<= 50 ms", False),
    ]
    table = report.render_table(figures)
    assert "250,000 events/s" in table
    assert "0.25×" in table
    assert "| met |" in table
    assert "**not met**" in table
    assert "2.00×" in table


@pytest.mark.elasticsearch
async def test_history_bench_reads_back_every_document_both_ways(
    es: AsyncElasticsearch, es_url: str
) -> None:
    namespace = f"b{uuid.uuid4().hex[:10]}"
    try:
        server, rates, documents = await history.measure(es_url, 100, namespace)
        await es.indices.refresh(index=f"inference-log-*-{namespace}-*")
        stored = await es.count(index=f"inference-log-*-{namespace}-*")
    finally:
        await delete_indices(es, f"inference-log-*-{namespace}-*")
    assert server.startswith("Elasticsearch 9.")
    assert set(rates) == {Paging.SCROLL, Paging.PIT}
    assert all(rate > 0 for rate in rates.values())
    assert documents == stored["count"] >= 100
