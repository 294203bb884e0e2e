"""Build every prototype, measure each on the core benchmark, print the comparison.

    python -m bench.prototypes [--requests N] [--rounds R] [--repeats K]
                               [--only NAME ...] [--no-build] [--rebuild]

Every variant runs in a process of its own (one package per process), on
the same generated stream, round after round with the order rotated, so a
change of machine load falls on every variant alike. Ratios are taken
within the run: against the pure-Python core, and against ``orjson.loads``
measured in the same process. A variant whose report differs from the
pure-Python one is reported as wrong, not timed.

Writes ``bench/prototypes/results.json``, prints a Markdown table and puts
it in docs/performance.md (between its ``prototypes`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.prototypes import build as build_module
from bench.prototypes.build import (
    BUILD,
    REPO,
    VARIANTS,
    Variant,
    build,
    built,
    current,
    environment,
    package_path,
)
from bench.prototypes.report import DOC, RESULTS, table, update_doc

__all__ = ["main"]


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "absent"
    return out.strip().splitlines()[0] if out.strip() else "absent"


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    venv = Path(sys.executable).parent
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cython": _tool_version([str(venv / "cython"), "--version"]),
        "mypyc/mypy": _tool_version([str(venv / "mypy"), "--version"]),
        "maturin": _tool_version([str(venv / "maturin"), "--version"]),
        "rustc": _tool_version(["rustc", "--version"]),
    }


def _measure(variant: Variant, requests: int, repeats: int) -> dict[str, Any]:
    paths = [str(package_path(variant))]
    if variant.rust:
        paths.append(str(BUILD / "rust"))
    paths.append(str(REPO))
    env = {k: v for k, v in os.environ.items() if k != "FEEDBACK_STREAM_PURE"}
    env.update(environment(variant), PYTHONPATH=os.pathsep.join(paths))
    cmd = [sys.executable, "-m", "bench.prototypes.measure", variant.name, str(requests)]
    out = subprocess.run(
        [*cmd, str(repeats)], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return {"variant": variant.name, "error": out.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["sources_current"] = current(variant)
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by.setdefault(run["variant"], []).append(run)
    pure = by.get("pure", [])
    reference = pure[0]["digest"] if pure and "digest" in pure[0] else None
    out: dict[str, dict[str, Any]] = {}
    for name, items in by.items():
        errors = [i["error"] for i in items if "error" in i]
        good = [i for i in items if "error" not in i]
        if errors or not good:
            out[name] = {"error": errors}
            continue
        events = good[0]["events"]
        wall = [s for i in good for s in i["ours_wall_s"]]
        cpu = [s for i in good for s in i["ours_cpu_s"]]
        base = [s for i in good for s in i["base_wall_s"]]
        per_process = [
            statistics.median(i["base_wall_s"]) / statistics.median(i["ours_wall_s"]) for i in good
        ]
        out[name] = {
            "events": events,
            "same_report": all(i["digest"] == reference for i in good),
            "sources_current": all(i.get("sources_current", True) for i in good),
            "events_s": events / statistics.median(wall),
            "events_per_cpu_s": events / statistics.median(cpu),
            "decode_events_per_cpu_s": events
            / statistics.median([s for i in good for s in i["decode_cpu_s"]]),
            "best_events_s": events / min(wall),
            "orjson_events_s": events / statistics.median(base),
            "vs_orjson": statistics.median(per_process),
            "compiled": good[0]["compiled"],
            "rust_share": good[0]["rust_share"],
            "loadavg": [i["loadavg"] for i in good],
        }
    if "pure" in out and "events_s" in out["pure"]:
        for row in out.values():
            if "events_s" in row:
                row["vs_pure"] = row["events_s"] / out["pure"]["events_s"]
                row["vs_pure_cpu"] = row["events_per_cpu_s"] / out["pure"]["events_per_cpu_s"]
                row["decode_vs_pure_cpu"] = (
                    row["decode_events_per_cpu_s"] / out["pure"]["decode_events_per_cpu_s"]
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prototypes", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="requests in the stream")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every variant")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per process")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (pure is kept)")
    parser.add_argument("--no-build", action="store_true", help="measure what is built")
    parser.add_argument("--rebuild", action="store_true", help="rebuild every artefact")
    parser.add_argument(
        "--mypyc-build",
        type=Path,
        default=None,
        help="measure the feedback_stream compiled by mypyc in this directory",
    )
    args = parser.parse_args(argv)
    if args.mypyc_build is not None:
        build_module.MYPYC_BUILD = args.mypyc_build.resolve()
    variants = [v for v in VARIANTS if args.only is None or v.name in args.only or v.tool == "pure"]
    build_s: dict[str, float] = {}
    if not args.no_build:
        build_s = build(variants, force=args.rebuild)
    variants = [v for v in variants if built(v)]
    before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        turn = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
        for variant in turn:
            print(f"round {round_ + 1}: {variant.name}", file=sys.stderr, flush=True)
            runs.append(_measure(variant, args.requests, args.repeats))
    summary = _summary(runs)
    document = {
        "mypyc_build": str(args.mypyc_build) if args.mypyc_build else None,
        "commit": _tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "machine": _machine(),
        "loadavg_before": before,
        "loadavg_after": os.getloadavg(),
        "requests": args.requests,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "build_s": build_s,
        "summary": summary,
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(table(document))
    if update_doc(document):
        print(f"updated {DOC.relative_to(REPO)}")
    print(f"load average before {before}, after {document['loadavg_after']}")
    ok = all(r.get("same_report", False) and r.get("sources_current") for r in summary.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
