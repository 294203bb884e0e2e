"""The ``feedback-stream`` command line.

One ``_add_<name>_parser(subparsers)`` function per subcommand registers its
arguments and sets ``handler``; add a command by writing one and listing it
in ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO

import orjson

from feedback_stream import generator
from feedback_stream.core2 import DEFAULT_FEEDBACK_TOPIC, DEFAULT_PREFIX, Core2Decoder, Experiments
from feedback_stream.core2.replaying import Core2Replay
from feedback_stream.demo.runner import add_demo_parser
from feedback_stream.engine import Engine
from feedback_stream.model_kinds import ModelKinds, ModelKindsError
from feedback_stream.outcomes import TimeBasis
from feedback_stream.replay import LineError, ReplayAborted, replay
from feedback_stream.report import render_table
from feedback_stream.service import add_run_parser
from feedback_stream.windows import WindowSpec, parse_duration

__all__ = ["build_parser", "main"]


def _comma_list(text: str) -> list[str]:
    """``a,b`` as two items, as run's list settings take them."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _windows(text: str) -> list[WindowSpec]:
    try:
        return [WindowSpec.parse(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as handle:
            yield handle


def _run_replay(args: argparse.Namespace) -> int:
    specs: list[WindowSpec] = args.window or [WindowSpec.parse("total")]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        print(f"feedback-stream replay: repeated window in {names}", file=sys.stderr)
        return 2
    try:
        kinds = ModelKinds.load(args.models_config) if args.models_config else None
        engine = Engine(
            specs,
            ttl=args.ttl,
            time_basis=TimeBasis(args.time),
            route="puid",
            kinds=kinds,
            comparisons=args.compare or (),
            comparison_alpha=args.alpha,
        )
    except (ModelKindsError, ValueError) as exc:
        print(f"feedback-stream replay: {exc}", file=sys.stderr)
        return 2
    core2: Core2Replay | None = None
    if args.source == "seldon-core-2":
        try:
            experiments = Experiments.parse(args.seldon_experiment or [])
        except ValueError as exc:
            print(f"feedback-stream replay: {exc}", file=sys.stderr)
            return 2
        core2 = Core2Replay(
            Core2Decoder(
                prefix=args.seldon_topic_prefix,
                feedback_topic=args.seldon_feedback_topic,
                experiments=experiments,
            )
        )

    def report_error(error: LineError) -> None:
        print(f"{args.input}:{error}", file=sys.stderr)

    try:
        with _open_input(args.input) as handle:
            result = replay(
                handle, engine, strict=args.strict, on_error=report_error, decoder=core2
            )
    except OSError as exc:
        print(f"feedback-stream replay: cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    except ReplayAborted:
        print(
            "feedback-stream replay: stopped at the first invalid line (--strict)", file=sys.stderr
        )
        return 1
    document = engine.report(result.clock)
    if core2 is not None:
        document["model_errors"] = core2.model_errors()
    if result.errors:
        print(
            f"feedback-stream replay: {len(result.errors)} invalid of {result.records} lines",
            file=sys.stderr,
        )
    if args.output == "json":
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_table(document))
    sys.stdout.flush()
    return 0


_REPLAY_INPUT = """\
input: one consumed Kafka record per line, as a JSON object:

  {"topic": "seldon", "partition": 0, "offset": 17, "timestamp": 1767225600000,
   "key": null,
   "headers": {"ce_type": "io.seldon.serving.inference.response",
               "ce_requestid": "puid-1", "ce_endpoint": "default",
               "ce_modelid": "classifier", "content-type": "application/json"},
   "value": {"data": {"names": ["t:0", "t:1", "t:2"],
                      "ndarray": [[0.1, 0.7, 0.2]]}}}

  topic, partition, offset  where the record was read (a repeat counts once)
  timestamp                 record time, ms since the epoch: the event time and
                            the replay's clock
  headers                   the record's headers, string values: CloudEvents
                            binary (ce_*), Seldon's own (type, requestid, ...), or
                            content-type application/cloudevents+json with the
                            whole CloudEvent as value
  value                     the record value: JSON, or a string where it is not JSON

Every encoding, with examples: docs/events.md. 'feedback-stream generate'
writes such a file.
"""


def _add_replay_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="compute metrics from a file of consumed Kafka records (JSON lines)",
        description=(
            "Replay INPUT (one consumed Kafka record per line; '-' for stdin) and print\n"
            "the metrics of every model as of the last record timestamp."
        ),
        epilog=_REPLAY_INPUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT.jsonl")
    parser.add_argument(
        "--window",
        "--windows",
        action="extend",
        type=_windows,
        metavar="WINDOW",
        help="'total', a duration (30s, 5m, 1h) or a number of outcomes; repeatable or "
        "comma separated, as run's --windows (default: total)",
    )
    parser.add_argument(
        "--ttl",
        "--ttl-s",
        type=_duration,
        default=3600.0,
        metavar="DURATION",
        help="how long a puid waits for its other parts and stays amendable: seconds or "
        "a duration like 30m (default 1h)",
    )
    parser.add_argument(
        "--time",
        "--time-basis",
        choices=[basis.value for basis in TimeBasis],
        default=TimeBasis.FEEDBACK.value,
        help="which event time places an outcome in time windows (default feedback)",
    )
    parser.add_argument(
        "--source",
        choices=["cloudevents", "seldon-core-2"],
        default="cloudevents",
        help="what the records are: CloudEvents (Seldon Core v1, KServe) or Seldon Core 2 "
        "topic records (default cloudevents)",
    )
    parser.add_argument(
        "--seldon-topic-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"Core 2's topicPrefix (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--seldon-feedback-topic",
        default=DEFAULT_FEEDBACK_TOPIC,
        metavar="TOPIC",
        help=f"the feedback topic's name (default {DEFAULT_FEEDBACK_TOPIC})",
    )
    parser.add_argument(
        "--seldon-experiment",
        "--seldon-experiments",
        action="extend",
        type=_comma_list,
        metavar="NAME=DEFAULT:OTHER",
        help="a Core 2 experiment to label as one deployment; repeatable or comma "
        "separated, as run's --seldon-experiments",
    )
    parser.add_argument(
        "--models-config",
        metavar="MODELS.toml",
        help="TOML file declaring model kinds (binary with a threshold, regression, "
        "classification) by model selector, as run's --models-config (default: detect)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        metavar="BASELINE->CANDIDATE",
        help="predictors to compare, like default->shadow; repeatable "
        "(default: every two predictors of a deployment, default as the baseline)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="error rate of the always-valid comparison test (default 0.05)",
    )
    parser.add_argument("--output", choices=["json", "table"], default="json")
    parser.add_argument("--strict", action="store_true", help="exit 1 at the first invalid line")
    parser.set_defaults(handler=_run_replay)


_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_replay_parser,
    generator.add_parser,
    add_run_parser,
    add_demo_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-stream",
        description="Exact live classification metrics for Seldon Core and KServe models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
