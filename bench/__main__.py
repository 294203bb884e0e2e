"""``python -m bench [--quick]``: run the benchmarks, write bench/results/.

``make bench`` runs every benchmark at full size (under 10 minutes on two
cores); ``make bench-quick`` at a small size (under a minute, once the
baselines' venv exists), which checks the harness, not the numbers.
``--only core,render`` picks benchmarks; ``--bootstrap`` uses a running
broker instead of starting one.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    core,
    durable_state,
    history,
    hostile,
    kafka_e2e,
    latency,
    memory,
    render,
    report,
    scaling,
)
from bench.broker import running_broker
from bench.result import Context, Figure

BENCHMARKS: dict[str, Callable[[Context], list[Figure]]] = {
    "core": core.run,
    "memory": memory.run,
    "render": render.run,
    "hostile": hostile.run,
    "kafka": kafka_e2e.run,
    "latency": latency.run,
    "scaling": scaling.run,
    "history": history.run,
    "durable": durable_state.run,
}
NEEDS_KAFKA = frozenset({"kafka", "latency", "scaling", "durable"})
RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a check, < 1 min")
    parser.add_argument("--only", default="", help=f"comma list of {', '.join(BENCHMARKS)}")
    parser.add_argument("--bootstrap", default=None, help="use this running Kafka broker")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="output folder (default bench/results, or bench/results/quick with --quick)",
    )
    parser.add_argument("--scale", type=float, default=None, help="size factor (1.0 = full)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmarks: {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    scale = args.scale if args.scale is not None else (0.02 if args.quick else 1.0)
    if args.results is None:  # a quick run never overwrites the full run's results
        args.results = RESULTS / "quick" if args.quick else RESULTS
    args.results.mkdir(parents=True, exist_ok=True)
    ctx = Context(scale=scale, results=args.results, quick=args.quick, profile=not args.no_profile)
    command = "python -m bench" + (
        " " + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    started = time.perf_counter()
    figures: list[Figure] = []
    errors: dict[str, str] = {}

    def run_all() -> None:
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                got = BENCHMARKS[name](ctx)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"bench: {name} failed: {errors[name]}", file=sys.stderr, flush=True)
                continue
            figures.extend(got)
            print(f"bench: {name} done in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    if NEEDS_KAFKA & set(names):
        with running_broker(args.bootstrap) as broker:
            ctx.bootstrap_address, ctx.broker_pid = broker.bootstrap, broker.pid
            run_all()
    else:
        run_all()
    seconds = time.perf_counter() - started
    from bench import envs

    markdown = report.write(
        args.results, figures, command, seconds, errors, args.quick, envs.versions()
    )
    if scale >= 1.0 and not args.no_readme and not errors:
        facts = report.machine()
        report.update_readme(
            report.render_table(figures),
            command,
            f"`{command}` on {facts['cpu']} ({facts['cores']} cores), commit {facts['commit']}; "
            "details and the profile in [bench/results/latest.md](bench/results/latest.md).",
        )
    print(markdown)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
