"""Write a run's figures as ``bench/results/latest.md`` and ``latest.json``.

Both carry the machine (CPU, cores, memory, kernel, load), the versions of
everything measured, the exact command and the commit, so a figure is never
read without its conditions. A full run also puts the table into the
README's performance section, between its two marker comments.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.result import Figure

__all__ = ["machine", "render_markdown", "update_readme", "write"]

ROOT = Path(__file__).resolve().parent.parent
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
_PACKAGES = ("feedback-stream", "aiokafka", "orjson", "prometheus-client", "pydantic", "aiohttp")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    try:
        from tests._services import KAFKA_VERSION

        versions["kafka broker"] = KAFKA_VERSION
    except ImportError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _mem_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load_average": list(os.getloadavg()),
        "versions": versions,
        "commit": _git(),
    }


def _number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit in ("ms",):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def _ratio(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None or math.isnan(ratio):
        return "—"
    return f"{ratio:.2f}×"


def _met(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "met" if figure.met else "**not met**"


def render_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| benchmark | figure | value | baseline (same run) | ratio | target | |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for f in figures:
        baseline = (
            f"{f.baseline_name}: {_number(f.baseline_value, f.unit)}" if f.baseline_name else "—"
        )
        problem = f.detail.get("problem")
        name = f"{f.name} ({problem})" if problem else f.name
        lines.append(
            f"| {f.benchmark} | {name} | {_number(f.value, f.unit)} | {baseline} | "
            f"{_ratio(f)} | {f.target or ''} | {_met(f)} |"
        )
    return "\n".join(lines)


def render_markdown(
    figures: Sequence[Figure],
    facts: dict[str, Any],
    command: str,
    seconds: float,
    errors: dict[str, str],
    profiles: Sequence[str],
    baselines: dict[str, str],
) -> str:
    v = facts["versions"]
    out = [
        "# feedback-stream benchmark results",
        "",
        f"- **command**: `{command}` ({seconds:.0f} s), "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        f"- **commit**: {facts['commit']}",
        f"- **machine**: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}, "
        f"{facts['kernel']}; load average at the end "
        f"{', '.join(f'{x:.2f}' for x in facts['load_average'])}",
        "- **versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]
    if baselines:
        out.append(
            "- **baselines' venv**: " + ", ".join(f"{k} {val}" for k, val in baselines.items())
        )
    out += ["", render_table(figures), ""]
    if errors:
        out += ["Benchmarks that did not run:", ""]
        out += [f"- **{name}**: {reason}" for name, reason in errors.items()]
        out.append("")
    if profiles:
        out += ["Profiles of the hot path: " + ", ".join(f"`{p}`" for p in profiles), ""]
    return "\n".join(out)


def write(
    results: Path,
    figures: Sequence[Figure],
    command: str,
    seconds: float,
    errors: dict[str, str],
    quick: bool,
    baselines: dict[str, str],
) -> str:
    """Write latest.md and latest.json; return the markdown."""
    facts = machine()
    profiles = sorted(p.name for p in results.glob("profile-*"))
    markdown = render_markdown(figures, facts, command, seconds, errors, profiles, baselines)
    (results / "latest.md").write_text(markdown, encoding="utf-8")
    document = {
        "command": command,
        "quick": quick,
        "seconds": seconds,
        "generated_at": time.time(),
        "machine": facts,
        "baselines_venv": baselines,
        "figures": [f.to_dict() for f in figures],
        "errors": errors,
        "profiles": profiles,
    }
    (results / "latest.json").write_text(
        json.dumps(document, indent=2, default=_json_default), encoding="utf-8"
    )
    return markdown


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def update_readme(markdown_table: str, command: str, facts_line: str) -> bool:
    """Replace the README's table between the bench markers; False if they are absent."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start == -1 or end == -1 or end < start:
        return False
    body = f"{README_START}\n{facts_line}\n\n{markdown_table}\n{README_END}"
    readme.write_text(text[:start] + body + text[end + len(README_END) :], encoding="utf-8")
    return True


if __name__ == "__main__":
    print(json.dumps(machine(), indent=2))
    sys.exit(0)
