"""The prototypes' results as docs/performance.md quotes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.prototypes.build import REPO

__all__ = ["DOC", "DOC_END", "DOC_START", "RESULTS", "quoted", "table", "update_doc"]

RESULTS = Path(__file__).resolve().parent / "results.json"
DOC = REPO / "docs" / "performance.md"
DOC_START = "<!-- prototypes:start -->"
DOC_END = "<!-- prototypes:end -->"


def table(document: dict[str, Any]) -> str:
    """The Markdown table of a run (``results.json``), as docs/performance.md quotes it."""
    summary: dict[str, dict[str, Any]] = document["summary"]
    machine = document["machine"]
    load = document["loadavg_before"][0], document["loadavg_after"][0]
    lines = [
        f"`python -m bench.prototypes --requests {document['requests']} --rounds "
        f"{document['rounds']} --repeats {document['repeats']}` at commit "
        f"{document.get('commit', 'unknown')} on {machine['cpu']} "
        f"({machine['cpus']} CPUs shared, load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after), Python {machine['python']}, {machine['cython']}, "
        f"{machine['mypyc/mypy']}, {machine['rustc']}.",
        "",
        "| variant | events/s | events per CPU-s | vs pure | vs pure (CPU) "
        "| vs orjson.loads | decode alone, per CPU-s (vs pure) | same report |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in summary.items():
        if "error" in row:
            lines.append(f"| {name} | failed to build or run | | | | | | |")
            continue
        nan = float("nan")
        lines.append(
            f"| {name} | {row['events_s']:,.0f} | {row['events_per_cpu_s']:,.0f} | "
            f"{row.get('vs_pure', nan):.2f}× | {row.get('vs_pure_cpu', nan):.2f}× "
            f"| {row['vs_orjson']:.3f}× | {row['decode_events_per_cpu_s']:,.0f} "
            f"({row.get('decode_vs_pure_cpu', nan):.2f}×) | "
            f"{'yes' if row['same_report'] else 'NO'} |"
        )
    other = [name for name, row in summary.items() if row.get("sources_current") is False]
    if other:
        lines += [
            "",
            f"Compiled from sources other than this commit's: {', '.join(other)} "
            "(the compiled core as built before it was merged); the report it computed "
            "is the same.",
        ]
    return "\n".join(lines)


def update_doc(document: dict[str, Any]) -> bool:
    """Put the run's table between the markers of docs/performance.md, if it has them."""
    if not DOC.exists():
        return False
    text = DOC.read_text(encoding="utf-8")
    if DOC_START not in text or DOC_END not in text:
        return False
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    DOC.write_text(f"{head}{DOC_START}\n{table(document)}\n{DOC_END}{tail}", encoding="utf-8")
    return True


def quoted(text: str) -> str:
    """What a document holds between the markers (stripped)."""
    return text.split(DOC_START, 1)[1].split(DOC_END, 1)[0].strip()
