"""What every Kafka contender reports, and how the harness starts and reads it.

A contender is a child process (ours and raw aiokafka in the project's
venv, Quix Streams and Faust in the baselines' venv) that reads a preloaded
topic and prints one JSON line when it has processed ``expected`` records:
wall-clock times of its first and last record (``time.time``, so the times
of several processes compare), its CPU seconds, and the cumulative
(correct, known) counts per model that it computed, which the harness
checks against the core before the contender's time counts.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ContenderResult", "as_in_service_run", "model_name", "report", "run_contender"]

ROOT = Path(__file__).resolve().parent.parent
_MARKER = "BENCH-RESULT "


def as_in_service_run() -> None:
    """What ``Service.run()`` does after ``start()``, for children that call ``start()``.

    The children drive the service's own start/stop (to time it, and to stop
    it when the stream is read) rather than ``run()``, which waits for a
    signal; they apply the same process settings ``run()`` applies.
    """
    from feedback_stream._gc import tune_collector

    tune_collector()


def model_name(namespace: str, deployment: str, predictor: str, model: str) -> str:
    return f"{namespace}/{deployment}/{predictor}/{model}"


@dataclass(slots=True)
class ContenderResult:
    records: int
    t_first: float
    t_last: float
    cpu_s: float
    models: dict[str, list[int]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        span = self.t_last - self.t_first
        return self.records / span if span > 0 else float("nan")


def report(
    records: int,
    t_first: float,
    t_last: float,
    models: dict[str, list[int]] | None = None,
    **extra: Any,
) -> None:
    """Print the contender's result line (called by the child)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = {
        "records": records,
        "t_first": t_first,
        "t_last": t_last,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "models": models or {},
        "extra": extra,
    }
    print(_MARKER + json.dumps(line), flush=True)


def run_contender(
    argv: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> ContenderResult:
    """Run a contender to completion and parse its result line."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    proc = subprocess.run(
        list(argv),
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        # Faust hands the child's stdout to its logger, which prefixes each line.
        marker = line.find(_MARKER)
        if marker != -1:
            data = json.loads(line[marker + len(_MARKER) :].strip())
            return ContenderResult(
                records=data["records"],
                t_first=data["t_first"],
                t_last=data["t_last"],
                cpu_s=data["cpu_s"],
                models=data["models"],
                extra=data["extra"],
            )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    raise RuntimeError(f"{argv[2:4]} exited {proc.returncode} without a result:\n{tail}")
