"""Smoke of the hostile-flood benchmark at its smallest size: it runs and the caps hold."""

from __future__ import annotations

from pathlib import Path

from bench import hostile
from bench.result import Context


def test_hostile_floods_measure_and_the_caps_hold(tmp_path: Path) -> None:
    figures = hostile.run(Context(scale=0.001, results=tmp_path, profile=False))
    assert [f.unit for f in figures] == ["MiB", "MiB", "ms"]
    assert all(f.value > 0 for f in figures)
    pending, models, render = figures
    assert pending.detail["pending_after"] <= 200_000
    assert models.detail["models_after"] == 1001  # max_models, plus the overflow model
    assert models.detail["uncapped_models"] == 2000
    assert render.detail["page_bytes"] > 0
