"""Floods against the caps: RSS under 1M unjoined puids and 100k models x 50 classes, render time.

Each flood runs in a fresh child process (``python -m bench.hostile KIND N``)
through a :class:`~feedback_stream.service.Service`'s engine and counters
(built, not started: no sockets), so that the RSS growth is the flood's:

* ``pending``: N puids with a request and a response, never a feedback
  (the generator's records, as the Kafka source decodes them). Caps at
  their defaults (``max_pending`` 200,000) against the same flood with the
  pending cap off (what HTTP ingest held before: everything, for the TTL).
* ``models``: N distinct models, each response + feedback pair of a random
  one of 50 classes. Caps at their defaults (``max_models`` 1000,
  ``max_classes`` 50) against no model cap.

After the model flood the child renders ``/metrics`` (the service's page in
the text format, as a scrape gets it) with the caps at their defaults: the
first render (nothing cached yet, the figure) and the median of three more
(unchanged windows' lines reused).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator

from bench._timing import rss_bytes
from bench.memory import pending_records
from bench.result import Context, Figure
from feedback_stream.events import SourcePosition
from feedback_stream.service import Service
from feedback_stream.settings import Settings

__all__ = ["flood", "run"]

_UNCAPPED = 1 << 40


_RESPONSE = "io.seldon.serving.inference.response"
_FEEDBACK = "io.seldon.serving.feedback"


def _model_records(n: int, per_model: int) -> Iterator[tuple[list[tuple[str, bytes]], bytes, int]]:
    """``per_model`` joined pairs for each of ``n`` models, classes c0..c49."""
    t0 = 1_767_225_600_000
    for i in range(n * per_model):
        model = f"model-{i % n}".encode()
        puid = f"p{i}".encode()
        predicted = (i * 7) % 50
        truth = (i * 13) % 50
        base = [("ce_requestid", puid), ("ce_modelid", model), ("ce_namespace", b"bench"),
                ("ce_inferenceservicename", b"flood"), ("ce_endpoint", b"default"),
                ("content-type", b"application/json")]  # fmt: skip
        yield (
            [("ce_type", _RESPONSE.encode()), ("ce_id", b"r" + puid), *base],
            b'{"predictions": ["c%d"]}' % predicted,
            t0 + i,
        )
        yield (
            [("ce_type", _FEEDBACK.encode()), ("ce_id", b"f" + puid), *base],
            b'{"truth": {"predictions": ["c%d"]}}' % truth,
            t0 + i + 1,
        )


def flood(kind: str, n: int, capped: bool) -> dict[str, float]:
    """RSS growth (bytes) of one flood in this process, and what the engine holds after."""
    values: dict[str, object] = {"windows": ["total", "5m", "1h", "1000"]}
    if not capped and kind == "pending":
        values["max_pending"] = _UNCAPPED
    if not capped and kind == "models":
        values["max_models"] = _UNCAPPED
    service = Service(Settings(**values))  # type: ignore[arg-type]
    engine = service.engine
    records = pending_records(n) if kind == "pending" else _model_records(n, 2)
    gc.collect()
    before = rss_bytes()
    for offset, (headers, value, ts) in enumerate(records):
        item = engine.process_record(headers, value, ts, SourcePosition("bench", 0, offset))
        if item is not None:
            raise RuntimeError(f"flood record refused: {item}")
    gc.collect()
    out: dict[str, float] = {
        "rss_growth": float(rss_bytes() - before),
        "pending": float(engine.pending),
        "models": float(len(engine.model_keys())),
    }
    if kind == "models" and capped:
        times = []
        for _ in range(4):
            start = time.perf_counter()
            page, _ = service.metrics_page("")
            times.append(time.perf_counter() - start)
        out["render_s"] = times[0]
        out["render_warm_s"] = sorted(times[1:])[1]
        out["render_bytes"] = float(len(page))
    return out


def _child(kind: str, n: int, capped: bool) -> dict[str, float]:
    args = [sys.executable, "-m", "bench.hostile", kind, str(n), "capped" if capped else "uncapped"]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run(ctx: Context) -> list[Figure]:
    mib = 1 << 20
    n_pending = ctx.size(1_000_000, minimum=2000)
    n_models = ctx.size(100_000, minimum=2000)
    capped = _child("pending", n_pending, True)
    uncapped = _child("pending", n_pending, False)
    models = _child("models", n_models, True)
    models_uncapped = _child("models", n_models, False)
    return [
        Figure(
            benchmark="hostile",
            name=f"RSS growth under {n_pending:,} unjoined puids, caps at defaults",
            value=capped["rss_growth"] / mib,
            unit="MiB",
            baseline_name="the same flood without the pending cap",
            baseline_value=uncapped["rss_growth"] / mib,
            detail={"pending_after": capped["pending"], "uncapped_pending": uncapped["pending"]},
        ),
        Figure(
            benchmark="hostile",
            name=f"RSS growth under {n_models:,} models x 50 classes, caps at defaults",
            value=models["rss_growth"] / mib,
            unit="MiB",
            baseline_name="the same flood without the model cap",
            baseline_value=models_uncapped["rss_growth"] / mib,
            detail={"models_after": models["models"], "uncapped_models": models_uncapped["models"]},
        ),
        Figure(
            benchmark="hostile",
            name=f"/metrics render after the {n_models:,}-model flood, caps at defaults",
            value=models["render_s"] * 1000,
            unit="ms",
            detail={
                "page_bytes": models["render_bytes"],
                "models": models["models"],
                "unchanged_render_ms": models["render_warm_s"] * 1000,
            },
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(flood(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "capped")))
