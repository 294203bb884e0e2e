"""``/metrics`` render time at 100 models × 10 classes × 3 windows.

The page is the service's (:class:`~feedback_stream.exposition.MetricsExposition`):
:class:`ServiceMetrics` counters attached to the engine while it read the
stream, rendered by ``prometheus_client``, then the window gauges written by
:class:`~feedback_stream.exposition.WindowGauges`. The figure is a first
scrape (nothing cached: every window computed and written, as when every
window changed since the last scrape); a scrape with nothing changed, the
OpenMetrics page and the former page (``generate_latest`` over the same
families through :class:`WindowCollector`) are in the detail. Before any
time counts, the page is checked to hold exactly the former page's lines.
The baseline renders the same number of samples from plain, already-set
``Gauge`` objects: the cost of the text format alone, with no metric
computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from bench._timing import median
from bench.core import process_all, save_profile
from bench.result import Context, Figure
from bench.stream import wire_stream
from feedback_stream.engine import Engine
from feedback_stream.exposition import MetricsExposition, WindowGauges
from feedback_stream.generator import DeploymentSpec, GeneratorConfig, PredictorSpec
from feedback_stream.prometheus import LabelGuard, ServiceMetrics

__all__ = ["build_exposition", "run"]

TARGET_MS = 50.0
MODELS = 100
CLASSES = 10


def build_exposition(
    n_requests: int, models: int = MODELS
) -> tuple[Callable[[], MetricsExposition], Engine]:
    """A service's page over an engine that has seen ``models`` models of 10 classes.

    Returns a factory of fresh pages (nothing cached) over the same counters
    and engine, and the engine.
    """
    deps = tuple(
        DeploymentSpec(
            name=f"model-{i:03d}",
            namespace="bench",
            predictors=(PredictorSpec("default", 0.8),),
            n_classes=CLASSES,
        )
        for i in range(models)
    )
    config = GeneratorConfig(
        seed=11,
        n_requests=n_requests,
        deployments=deps,
        request_rate=2000.0,
        feedback_share=1.0,
        truth_share=1.0,
        feedback_delay="fixed",
        feedback_delay_mean_s=1.0,
    )
    engine = Engine(("total", "5m", "1000"))
    registry = CollectorRegistry()
    guard = LabelGuard(max_models=1000, max_classes=50, class_allowlist=())
    ServiceMetrics(registry, guard).attach(engine)
    process_all(engine, wire_stream(config))

    def page() -> MetricsExposition:
        windows = WindowGauges(engine, guard, lambda: engine.clock)
        return MetricsExposition(registry, windows)

    return page, engine


def _plain_registry(samples: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("bench_plain", "Same series count, values preset.", ["a", "b"], registry=registry)
    for i in range(samples):
        gauge.labels(f"m{i // 100}", f"s{i % 100}").set(i * 0.5)
    return registry


def _timed(render: Callable[[], bytes], repeats: int) -> tuple[list[float], bytes]:
    times: list[float] = []
    body = b""
    for _ in range(repeats):
        start = time.perf_counter()
        body = render()
        times.append((time.perf_counter() - start) * 1000.0)
    return times, body


def _text(page: MetricsExposition, accept: str = "") -> bytes:
    return page.render(accept)[0]


def _first_scrape(page: Callable[[], MetricsExposition]) -> Callable[[], bytes]:
    """A first scrape of a fresh page each time (only the page's own objects are new)."""
    return lambda: _text(page())


def run(ctx: Context) -> list[Figure]:
    models = MODELS if ctx.scale >= 0.01 else 10
    page, engine = build_exposition(ctx.size(20_000, minimum=models * 40), models)
    repeats = 20 if ctx.scale >= 0.5 else 5 if ctx.scale >= 0.01 else 2
    former = page().full
    expected = generate_latest(former)
    body = _text(page())
    if sorted(body.splitlines()) != sorted(expected.splitlines()):
        raise RuntimeError("the page differs from generate_latest of the same families")
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    ours, _ = _timed(_first_scrape(page), repeats)
    if ctx.profile:
        save_profile("render", lambda: _timed(_first_scrape(page), 3) and None, ctx.results)
    warm_page = page()
    unchanged, _ = _timed(lambda: _text(warm_page), repeats)
    openmetrics, _ = _timed(
        lambda: _text(page(), "application/openmetrics-text; version=1.0.0"), repeats
    )
    before, _ = _timed(lambda: generate_latest(former), repeats)
    plain = _plain_registry(samples)
    base, _ = _timed(lambda: generate_latest(plain), repeats)
    value = median(ours)
    classes = {
        len({truth for truth, _ in engine.counts(k, "total").confusion})
        for k in engine.model_keys()
    }
    return [
        Figure(
            benchmark="render",
            name=f"/metrics render, {len(engine.model_keys())} models × {CLASSES} classes"
            " × 3 windows",
            value=value,
            unit="ms",
            baseline_name=f"generate_latest of {samples:,} preset Gauge samples",
            baseline_value=median(base),
            target=f"<= {TARGET_MS:.0f} ms",
            met=value <= TARGET_MS,
            detail={
                "samples": samples,
                "bytes": len(body),
                "repeats": repeats,
                "ours_ms": ours,
                "baseline_ms": base,
                "unchanged_scrape_ms": median(unchanged),
                "openmetrics_ms": median(openmetrics),
                "generate_latest_of_the_same_families_ms": median(before),
                "true_classes_per_model": sorted(classes),
            },
        )
    ]
