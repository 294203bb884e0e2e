"""The baselines' own virtualenv: Quix Streams and Faust, beside (not in) ``.venv``.

``quixstreams`` 3.x pins ``pydantic<2.14`` and ``pydantic-settings<2.16``,
older than what feedback-stream's venv holds, so installing it there would
downgrade the project's own dependencies. Both baselines therefore run as
subprocesses from ``.cache/bench-venv``, which this module creates on first
use (about a minute) and rebuilds when the requirements below change. The
project is installed there too (editable), so the baseline jobs decode with
the very same :func:`feedback_stream.decode.decode_kafka_record` as we do:
what differs between the contenders is the streaming framework alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["REQUIREMENTS", "baseline_python", "versions"]

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "bench-venv"
REQUIREMENTS = ("quixstreams>=3.10,<4", "faust-streaming>=0.11,<0.16")
_STAMP = VENV / ".bench-requirements"


def _python() -> Path:
    return VENV / "bin" / "python"


def baseline_python() -> Path:
    """The interpreter of the baselines' venv, created or refreshed if needed."""
    wanted = "\n".join(REQUIREMENTS)
    if _python().exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return _python()
    if not _python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # The editable install points at src/, where `make install` built the compiled
    # core in place: the baselines decode with the same build as the service, and
    # the venv does not compile it a second time.
    pure = {**os.environ, "FEEDBACK_STREAM_COMPILE": "0"}
    subprocess.run([*pip, *REQUIREMENTS, "-e", str(ROOT)], check=True, env=pure)
    _STAMP.write_text(wanted)
    return _python()


def versions() -> dict[str, str]:
    """Versions of the baselines' packages (empty when the venv is not there)."""
    if not _python().exists():
        return {}
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in "
        "('quixstreams','confluent-kafka','faust-streaming','aiokafka','pydantic')}))"
    )
    out = subprocess.run([str(_python()), "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {}
    import json

    result: dict[str, str] = json.loads(out.stdout)
    return result


if __name__ == "__main__":
    print(baseline_python())
    sys.exit(0)
