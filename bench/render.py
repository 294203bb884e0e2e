"""``/metrics`` render time at 100 models × 10 classes × 3 windows.

The registry is the service's: :class:`ServiceMetrics` counters attached to
the engine while it read the stream, plus the scrape-time
:class:`WindowCollector`; rendering is ``prometheus_client``'s
``generate_latest``, which ``/metrics`` calls. The baseline renders the same
number of samples from plain, already-set ``Gauge`` objects: the cost of the
text format alone, with no metric computed.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from bench._timing import median
from bench.core import process_all, save_profile
from bench.result import Context, Figure
from bench.stream import wire_stream
from feedback_stream.engine import Engine
from feedback_stream.generator import DeploymentSpec, GeneratorConfig, PredictorSpec
from feedback_stream.prometheus import LabelGuard, ServiceMetrics, WindowCollector

__all__ = ["build_registry", "run"]

TARGET_MS = 50.0
MODELS = 100
CLASSES = 10


def build_registry(n_requests: int, models: int = MODELS) -> tuple[CollectorRegistry, Engine]:
    """A service registry over an engine that has seen ``models`` models of 10 classes."""
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
    registry.register(WindowCollector(engine, guard, lambda: engine.clock))
    return registry, engine


def _plain_registry(samples: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("bench_plain", "Same series count, values preset.", ["a", "b"], registry=registry)
    for i in range(samples):
        gauge.labels(f"m{i // 100}", f"s{i % 100}").set(i * 0.5)
    return registry


def _render_ms(registry: CollectorRegistry, repeats: int) -> tuple[list[float], int, int]:
    times: list[float] = []
    body = b""
    for _ in range(repeats):
        start = time.perf_counter()
        body = generate_latest(registry)
        times.append((time.perf_counter() - start) * 1000.0)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return times, samples, len(body)


def run(ctx: Context) -> list[Figure]:
    models = MODELS if ctx.scale >= 0.01 else 10
    registry, engine = build_registry(ctx.size(20_000, minimum=models * 40), models)
    repeats = 20 if ctx.scale >= 0.5 else 5 if ctx.scale >= 0.01 else 2
    ours, samples, size = _render_ms(registry, repeats)
    if ctx.profile:
        save_profile("render", lambda: _render_ms(registry, 3) and None, ctx.results)
    base, _, _ = _render_ms(_plain_registry(samples), repeats)
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
                "bytes": size,
                "repeats": repeats,
                "ours_ms": ours,
                "baseline_ms": base,
                "true_classes_per_model": sorted(classes),
            },
        )
    ]
