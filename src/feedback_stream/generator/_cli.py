"""``feedback-stream generate``: the generator's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import get_args

import orjson

from feedback_stream.core2.convert import experiments_for, to_core2
from feedback_stream.generator._config import (
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
from feedback_stream.generator._plan import intended_outcomes
from feedback_stream.generator._wire import generate_records, write_jsonl


def _predictor(text: str) -> PredictorSpec:
    """``NAME:ACCURACY[:shadow][:traffic=W][:model=M]``."""
    parts = text.split(":")
    if len(parts) < 2:
        raise argparse.ArgumentTypeError(f"predictor {text!r}: expected NAME:ACCURACY[:shadow]")
    name, accuracy = parts[0], float(parts[1])
    shadow, traffic, model = False, 1.0, "classifier"
    for option in parts[2:]:
        if option == "shadow":
            shadow = True
        elif option.startswith("traffic="):
            traffic = float(option.removeprefix("traffic="))
        elif option.startswith("model="):
            model = option.removeprefix("model=")
        else:
            raise argparse.ArgumentTypeError(f"predictor {text!r}: unknown option {option!r}")
    return PredictorSpec(name, accuracy, shadow, traffic, model)


def _batch(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _time_ms(text: str) -> int:
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _choices(text: str, allowed: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    for v in values:
        if v not in allowed:
            raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(allowed)}")
    return values


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``generate`` to the ``feedback-stream`` command line."""
    p = subparsers.add_parser(
        "generate",
        help="write a synthetic Seldon/KServe event stream as replay JSONL",
        description=(
            "Write a deterministic synthetic stream of request, response and feedback "
            "records (replay JSONL). Deployments cycle through --encoding and --payload."
        ),
    )
    _configure(p)
    p.set_defaults(handler=run)


def _configure(p: argparse.ArgumentParser) -> None:
    d = GeneratorConfig()
    p.add_argument("--out", required=True, help="output file, '-' for stdout")
    p.add_argument("--intended", help="also write the intended outcomes as JSONL here")
    p.add_argument("--requests", type=int, default=d.n_requests, help="number of requests")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--deployments", type=int, default=1, help="number of deployments")
    p.add_argument("--namespace", default="seldon")
    p.add_argument(
        "--predictor",
        action="append",
        type=_predictor,
        help="NAME:ACCURACY[:shadow][:traffic=W][:model=M], repeatable "
        "(default: default:0.9 shadow:0.75:shadow)",
    )
    p.add_argument("--classes", type=int, default=3, help="classes per deployment")
    p.add_argument("--batch", type=_batch, default=(1, 1), help="rows per request, N or MIN-MAX")
    p.add_argument("--encoding", default="ce_binary", help=f"comma list of {get_args(Encoding)}")
    p.add_argument("--payload", default="ndarray", help=f"comma list of {get_args(PayloadFormat)}")
    p.add_argument("--output", choices=get_args(OutputStyle), default="proba")
    p.add_argument("--rate", type=float, default=d.request_rate, help="requests/s of event time")
    p.add_argument("--start", type=_time_ms, default=d.start_ms, help="ms or ISO time")
    p.add_argument("--request-share", type=float, default=d.request_share)
    p.add_argument("--feedback-share", type=float, default=d.feedback_share)
    p.add_argument("--truth-share", type=float, default=d.truth_share)
    p.add_argument("--feedback-delay", type=float, default=d.feedback_delay_mean_s, help="mean s")
    p.add_argument(
        "--delay-distribution", choices=get_args(DelayDistribution), default=d.feedback_delay
    )
    p.add_argument("--feedback-scope", choices=get_args(FeedbackScope), default=d.feedback_scope)
    p.add_argument("--feedback-echo", action="store_true", help="feedback repeats request/response")
    p.add_argument("--amendment-share", type=float, default=d.amendment_share)
    p.add_argument("--disorder-share", type=float, default=d.disorder_share)
    p.add_argument("--disorder-max", type=float, default=d.disorder_max_s, help="seconds")
    p.add_argument("--duplicate-share", type=float, default=d.duplicate_share)
    p.add_argument("--duplicate-mode", choices=get_args(DuplicateMode), default=d.duplicate_mode)
    p.add_argument(
        "--invalid-share", type=float, default=d.invalid_share, help="share of bad records"
    )
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--keyed", action="store_true", help="key records by puid")
    p.add_argument("--topic", default=d.topic)
    p.add_argument(
        "--seldon-core-2",
        action="store_true",
        help="write the traffic as Seldon Core 2 records (model topics, OIP protobuf and "
        "JSON, a feedback topic); replay them with --source seldon-core-2",
    )


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    """The :class:`GeneratorConfig` the ``generate`` flags describe."""
    encodings = _choices(args.encoding, get_args(Encoding))
    payloads = _choices(args.payload, get_args(PayloadFormat))
    predictors = tuple(args.predictor) if args.predictor else DeploymentSpec().predictors
    n = args.deployments
    deployments = []
    for i in range(n):
        encoding = encodings[i % len(encodings)]
        payload = payloads[i % len(payloads)]
        if encoding == "kserve" and payload in ("ndarray", "tensor"):
            payload = "v2"  # KServe speaks V1 (tf) or V2, not Seldon's protocol
        preds = predictors
        if encoding == "kserve":
            preds = tuple(p for p in predictors if not p.shadow)
        deployments.append(
            DeploymentSpec(
                name="iris" if n == 1 else f"iris-{i}",
                namespace=args.namespace,
                predictors=preds,
                n_classes=args.classes,
                encoding=encoding,  # type: ignore[arg-type]
                payload=payload,  # type: ignore[arg-type]
                output=args.output,
            )
        )
    return GeneratorConfig(
        seed=args.seed,
        n_requests=args.requests,
        deployments=tuple(deployments),
        batch_min=args.batch[0],
        batch_max=args.batch[1],
        request_rate=args.rate,
        start_ms=args.start,
        request_share=args.request_share,
        feedback_share=args.feedback_share,
        truth_share=args.truth_share,
        feedback_delay=args.delay_distribution,
        feedback_delay_mean_s=args.feedback_delay,
        feedback_scope=args.feedback_scope,
        feedback_echo=args.feedback_echo,
        amendment_share=args.amendment_share,
        disorder_share=args.disorder_share,
        disorder_max_s=args.disorder_max,
        duplicate_share=args.duplicate_share,
        duplicate_mode=args.duplicate_mode,
        invalid_share=args.invalid_share,
        partitions=args.partitions,
        keyed=args.keyed,
        topic=args.topic,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``feedback-stream generate``; returns the exit status."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"feedback-stream generate: {exc}", file=sys.stderr)
        return 2
    if args.seldon_core_2:
        count = _write_core2(config, args.out)
    else:
        count = write_jsonl(generate_records(config), args.out)
    if args.intended:
        with open(args.intended, "wb") as f:
            for o in intended_outcomes(config):
                row = {
                    "namespace": o.key.namespace,
                    "deployment": o.key.deployment,
                    "predictor": o.key.predictor,
                    "model": o.key.model,
                    "puid": o.puid,
                    "row": o.row,
                    "predicted": o.predicted,
                    "truth": o.truth,
                    "correct": o.correct,
                    "reward": o.reward,
                    "time": o.time,
                }
                f.write(orjson.dumps(row) + b"\n")
    print(f"wrote {count} records to {args.out}", file=sys.stderr)
    return 0


def _write_core2(config: GeneratorConfig, path: str) -> int:
    """Write the stream as Core 2 records; say which experiments label its predictors."""
    out = sys.stdout.buffer if path == "-" else open(path, "wb")  # noqa: SIM115
    count = 0
    try:
        for record in to_core2(generate_records(config), seed=config.seed):
            out.write(orjson.dumps(record) + b"\n")
            count += 1
    finally:
        if out is sys.stdout.buffer:
            out.flush()
        else:
            out.close()
    flags = " ".join(f"--seldon-experiment {text}" for text in experiments_for(config))
    print(f"replay with: --source seldon-core-2 {flags}".rstrip(), file=sys.stderr)
    return count


def generate_main(argv: Sequence[str] | None = None) -> int:
    """``feedback-stream generate`` as a stand-alone program."""
    parser = argparse.ArgumentParser(prog="feedback-stream generate")
    _configure(parser)
    return run(parser.parse_args(argv))
