"""``/metrics`` render time at 100 models × 10 classes × 3 windows.

The page is the service's (:class:`~feedback_stream.exposition.MetricsExposition`):
:class:`ServiceMetrics` counters attached to the engine while it read the
stream (written from their children by
:class:`~feedback_stream.exposition.CounterText`), then the window gauges
written by :class:`~feedback_stream.exposition.WindowGauges`, which reuses
the lines of windows whose counts did not change. The figure is a scrape
after new traffic (~5 requests a model, untimed) changed nearly every window
since the previous scrape (the share is in the detail): the steady state of
a loaded service. The first scrape of a fresh page (nothing cached), a
scrape with nothing changed, the OpenMetrics page and the former page
(``generate_latest`` over the same families, the window gauges through
:class:`WindowCollector`) are in the detail. Before any time counts, the
page is checked to hold exactly the former page's lines. The baseline
renders the same number of samples from plain, already-set ``Gauge``
objects: the cost of the text format alone, with no metric computed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from bench._timing import median
from bench.core import process_all, save_profile
from bench.result import Context, Figure
from bench.stream import wire_stream
from feedback_stream.engine import Engine
from feedback_stream.events import ModelKey, SourcePosition
from feedback_stream.exposition import MetricsExposition, WindowGauges
from feedback_stream.generator import DeploymentSpec, GeneratorConfig, PredictorSpec
from feedback_stream.prometheus import LabelGuard, ServiceMetrics

__all__ = ["build_exposition", "run"]

TARGET_MS = 50.0
MODELS = 100
CLASSES = 10


def build_exposition(
    n_requests: int, models: int = MODELS, held_back: int = 0
) -> tuple[Callable[[], MetricsExposition], Engine, Callable[[int], None]]:
    """A service's page over an engine that has seen ``models`` models of 10 classes.

    Returns a factory of fresh pages (nothing cached) over the same counters
    and engine, the engine, and ``more(n)``: apply the next ``n`` of the
    ``held_back`` last records of the stream (new traffic between scrapes).
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
    guard = LabelGuard(max_models=1000, max_classes=50, class_allowlist=())
    counters = ServiceMetrics(CollectorRegistry(), guard)
    counters.attach(engine)
    records = wire_stream(config)
    split = len(records) - held_back
    process_all(engine, records[:split])
    later = iter(enumerate(records[split:], start=split))
    rest = CollectorRegistry()

    def page() -> MetricsExposition:
        windows = WindowGauges(engine, guard, lambda: engine.clock)
        return MetricsExposition(rest, windows, counters)

    def more(n: int) -> None:
        for offset, r in itertools.islice(later, n):
            position = SourcePosition("bench", r.partition, offset)
            engine.process_record(r.headers, r.value, r.timestamp, position)

    return page, engine, more


def _plain_registry(samples: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("bench_plain", "Same series count, values preset.", ["a", "b"], registry=registry)
    for i in range(samples):
        gauge.labels(f"m{i // 100}", f"s{i % 100}").set(i * 0.5)
    return registry


def _timed(
    render: Callable[[], bytes], repeats: int, before: Callable[[], None] = lambda: None
) -> tuple[list[float], bytes]:
    """Milliseconds of each of ``repeats`` renders (``before`` each, untimed)."""
    times: list[float] = []
    body = b""
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        body = render()
        times.append((time.perf_counter() - start) * 1000.0)
    return times, body


def _text(page: MetricsExposition, accept: str = "") -> bytes:
    return page.render(accept)[0]


def _first_scrape(page: Callable[[], MetricsExposition]) -> Callable[[], bytes]:
    """A first scrape of a fresh page each time (only the page's own objects are new)."""
    return lambda: _text(page())


def _changed_share(engine: Engine, more: Callable[[int], None], chunk: int) -> float:
    """The share of (model, window) counts that ``chunk`` more records change."""

    def snapshot() -> dict[tuple[ModelKey, str], list[object]]:
        return {
            (key, spec.name): engine.counts(key, spec.name).to_list()
            for key in engine.model_keys()
            for spec in engine.specs
        }

    before = snapshot()
    more(chunk)
    after = snapshot()
    return sum(after[k] != before.get(k) for k in after) / len(after)


def run(ctx: Context) -> list[Figure]:
    models = MODELS if ctx.scale >= 0.01 else 10
    repeats = 20 if ctx.scale >= 0.5 else 5 if ctx.scale >= 0.01 else 2
    chunk = 15 * models  # ~5 requests a model: nearly every window changes
    held = chunk * (2 * repeats + 1)
    page, engine, more = build_exposition(
        ctx.size(30_000, minimum=models * 60) + held // 3, models, held
    )
    former = page().full
    expected = generate_latest(former)
    body = _text(page())
    if sorted(body.splitlines()) != sorted(expected.splitlines()):
        raise RuntimeError("the page differs from generate_latest of the same families")
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    first, _ = _timed(_first_scrape(page), repeats)
    if ctx.profile:
        save_profile("render", lambda: _timed(_first_scrape(page), 3) and None, ctx.results)
    live = page()
    _text(live)
    changed = _changed_share(engine, more, chunk)
    ours, _ = _timed(lambda: _text(live), repeats, lambda: more(chunk))
    unchanged, _ = _timed(lambda: _text(live), repeats)
    openmetrics, _ = _timed(
        lambda: _text(live, "application/openmetrics-text; version=1.0.0"),
        repeats,
        lambda: more(chunk),
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
                "windows_changed_between_scrapes": changed,
                "first_scrape_ms": median(first),
                "unchanged_scrape_ms": median(unchanged),
                "openmetrics_ms": median(openmetrics),
                "generate_latest_of_the_same_families_ms": median(before),
                "true_classes_per_model": sorted(classes),
            },
        )
    ]
