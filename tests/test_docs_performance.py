"""docs/performance.md stays honest: the README links it, its links resolve, and its
table of measured prototypes is the recorded run's own (``bench/prototypes/results.json``).

No timing happens here: the figures are those a run wrote, compared as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.prototypes.build import VARIANTS
from bench.prototypes.report import DOC, RESULTS, quoted, table

ROOT = Path(__file__).resolve().parent.parent
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_performance_section_links_the_document() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "(docs/performance.md)" in section


def test_every_relative_link_of_the_document_resolves() -> None:
    targets = [
        t.split("#", 1)[0]
        for t in _LINK.findall(DOC.read_text(encoding="utf-8"))
        if not t.startswith(("http://", "https://", "#", "mailto:"))
    ]
    assert targets, "the document links the sources it describes"
    missing = [t for t in targets if not (DOC.parent / t).resolve().exists()]
    assert missing == []


def test_the_measured_table_is_the_recorded_runs_own() -> None:
    document = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert quoted(DOC.read_text(encoding="utf-8")) == table(document)


def test_the_recorded_run_checked_every_variant_against_the_pure_core() -> None:
    summary = json.loads(RESULTS.read_text(encoding="utf-8"))["summary"]
    measured = {name for name, row in summary.items() if "error" not in row}
    assert "pure" in measured
    assert measured <= {v.name for v in VARIANTS}
    assert all(summary[name]["same_report"] for name in measured)


def test_the_document_uses_no_internal_terms() -> None:
    text = DOC.read_text(encoding="utf-8").lower()
    assert not re.search(r"\bissue\s*#?\d", text)
    assert "the seed" not in text
