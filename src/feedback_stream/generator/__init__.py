"""Deterministic synthetic Seldon / KServe event streams, as replay JSONL records.

A stream is built in two layers, each with its own seeded random source:

* the **plan**: which deployment and predictors answer each request, the
  true and predicted class of every row, which requests get feedback, when,
  with truth or a reward only, and which feedback is later amended. The
  outcomes the core should compute follow from the plan alone, so
  :func:`intended_outcomes` replays just this layer;
* the **wire**: payload bytes (features, scores, ids), the encoding of each
  record, its partition, and the delivery faults (disorder, duplicates).

Every random decision of the wire is drawn whether or not its knob is on,
so turning on duplicates or disorder adds or moves records without changing
any other record: a test can compare a stream with and without a fault.

Records come out in delivery order, the order a consumer would read them.
Event time is the record timestamp. Without disorder, timestamps never go
backwards; with it, a record is late by at most ``disorder_max_s``.
Amendments are scheduled later than the original feedback plus every
delivery delay, so they are always read after it.
"""

from feedback_stream.generator._cli import add_parser, config_from_args, generate_main, run
from feedback_stream.generator._config import (
    INVALID_KINDS,
    DelayDistribution,
    DeploymentSpec,
    DuplicateMode,
    Encoding,
    FeedbackScope,
    GeneratorConfig,
    OutputStyle,
    PayloadFormat,
    PredictorSpec,
)
from feedback_stream.generator._plan import IntendedOutcome, intended_outcomes
from feedback_stream.generator._wire import generate_records, write_jsonl

__all__ = [
    "INVALID_KINDS",
    "DelayDistribution",
    "DeploymentSpec",
    "DuplicateMode",
    "Encoding",
    "FeedbackScope",
    "GeneratorConfig",
    "IntendedOutcome",
    "OutputStyle",
    "PayloadFormat",
    "PredictorSpec",
    "add_parser",
    "config_from_args",
    "generate_main",
    "generate_records",
    "intended_outcomes",
    "run",
    "write_jsonl",
]
