"""The benchmark streams: generated once per run, kept as Kafka would deliver them.

Every benchmark reads the same kind of stream, made by
:mod:`feedback_stream.generator` from a fixed seed: four deployments, each
with a default and a shadow predictor (eight models), three classes, Seldon
``ndarray`` scores with class names, CloudEvents binary headers, feedback for
80% of requests (70% of those with a truth), a few seconds of label delay.

Records are converted to their wire form first (header bytes, value bytes),
because that is what every consumer, ours or a baseline, starts from: the
conversion is not part of any measured time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from feedback_stream.encode import ReplayRecord
from feedback_stream.generator import (
    DeploymentSpec,
    GeneratorConfig,
    PredictorSpec,
    generate_records,
)

__all__ = ["WireRecord", "bench_config", "to_wire", "wire_stream"]

TOPIC = "bench-seldon-logs"


@dataclass(frozen=True, slots=True)
class WireRecord:
    """One record as a consumer receives it: what a producer puts on a topic."""

    partition: int
    timestamp: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


def bench_config(
    n_requests: int,
    *,
    seed: int = 7,
    deployments: int = 4,
    n_classes: int = 3,
    partitions: int = 1,
    keyed: bool = False,
    feedback_share: float = 0.8,
    request_rate: float = 1000.0,
    topic: str = TOPIC,
) -> GeneratorConfig:
    """The generator config of a benchmark stream of ``n_requests`` requests."""
    predictors = (PredictorSpec("default", 0.9), PredictorSpec("shadow", 0.75, shadow=True))
    deps = tuple(
        DeploymentSpec(
            name=f"iris-{i}",
            namespace="bench",
            predictors=predictors,
            n_classes=n_classes,
            encoding="ce_binary",
            payload="ndarray",
        )
        for i in range(deployments)
    )
    return GeneratorConfig(
        seed=seed,
        n_requests=n_requests,
        deployments=deps,
        request_rate=request_rate,
        feedback_share=feedback_share,
        truth_share=0.7,
        feedback_delay="exponential",
        feedback_delay_mean_s=5.0,
        partitions=partitions,
        keyed=keyed,
        topic=topic,
    )


def to_wire(record: ReplayRecord) -> WireRecord:
    """A replay record as the bytes a Kafka consumer reads."""
    value = record["value"]
    raw = value.encode("utf-8") if isinstance(value, str) else orjson.dumps(value)
    key = record["key"]
    return WireRecord(
        partition=record["partition"],
        timestamp=record["timestamp"],
        key=key.encode("utf-8") if key is not None else None,
        headers=[(name, text.encode("utf-8")) for name, text in record["headers"].items()],
        value=raw,
    )


def wire_stream(config: GeneratorConfig) -> list[WireRecord]:
    """The whole stream of ``config`` in delivery order, in wire form."""
    return [to_wire(r) for r in generate_records(config)]


def iter_wire(config: GeneratorConfig) -> Iterator[WireRecord]:
    """The stream lazily: for streams too large to hold (1M pending puids)."""
    return (to_wire(r) for r in generate_records(config))


def count_by_partition(records: Iterable[WireRecord]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in records:
        counts[r.partition] = counts.get(r.partition, 0) + 1
    return counts
