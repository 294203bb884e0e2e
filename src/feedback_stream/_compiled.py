"""Which core modules run compiled (mypyc), and the guard against a stale build.

The hot path (decode -> join -> windows and the counters of each record) is
compiled with mypyc from the very ``.py`` files next to it: one source, two
ways to run it. ``setup.py`` compiles :data:`CORE_MODULES` into extension
modules (``join.cpython-311-x86_64-linux-gnu.so`` beside ``join.py``) and
records the SHA-256 of every compiled source in :data:`RECORD`.

Python's import system prefers an extension module to the ``.py`` beside
it, so after an edit of ``join.py`` an in-place build would silently run
the old code. :func:`activate`, run when the package's ``__init__`` imports
this module, before any core module, therefore decides once per process
(:data:`STATUS`):

* ``compiled``: every extension is there and every source hashes as
  recorded at build time;
* ``pure`` otherwise (no build, a source changed since the build, or
  ``FEEDBACK_STREAM_PURE=1``): a finder placed first on ``sys.meta_path``
  loads every core module from its ``.py``, all of them, since compiled
  modules call each other natively and cannot be mixed with interpreted
  ones. A stale build also warns (``RuntimeWarning``) and names the
  changed files; the test suite prints the mode in its header and the
  differential test fails until the build is fresh again.

``make install`` rebuilds when a source changed (``python
src/feedback_stream/_compiled.py build`` is the step it runs). This module
uses the standard library only: ``setup.py`` loads it by path.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = [
    "CORE_MODULES",
    "PURE_ENV",
    "RECORD",
    "STATUS",
    "CoreBuild",
    "activate",
    "build_in_place",
    "inspect",
    "record_sources",
]

PACKAGE: Final = "feedback_stream"
CORE_MODULES: Final = (
    "caps",
    "decode",
    "engine",
    "events",
    "join",
    "label_delay",
    "metrics",
    "model_kinds",
    "outcomes",
    "packed",
    "paired",
    "partition",
    "payload",
    "scores",
    "window_text",
    "windows",
)
"""The modules mypyc compiles (``feedback_stream.<name>``): the per-record path."""

GROUP: Final = f"{PACKAGE}._core"
"""mypyc's group name: the shared library is ``feedback_stream/_core__mypyc*.so``."""

PURE_ENV: Final = "FEEDBACK_STREAM_PURE"
"""Set to ``1`` to run the pure-Python core even when a fresh build is there."""

RECORD: Final = "_compiled_sources.json"
"""Written at build time beside the sources: ``{module: sha256 of its .py}``."""

_HERE: Final = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class CoreBuild:
    """How the core runs in this process.

    ``compiled``: whether the mypyc extensions are in use; ``reason``: one
    line for humans (test header, logs); ``stale``: the sources that changed
    since the build (empty unless the build is stale).
    """

    compiled: bool
    reason: str
    stale: tuple[str, ...] = ()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources(package_dir: Path = _HERE) -> dict[str, str]:
    """``{module: sha256}`` of the compiled modules' sources in ``package_dir``."""
    return {name: _digest(package_dir / f"{name}.py") for name in CORE_MODULES}


def record_sources(package_dir: Path = _HERE) -> None:
    """Write :data:`RECORD` for the sources about to be compiled (``setup.py``)."""
    text = json.dumps(sources(package_dir), indent=1, sort_keys=True) + "\n"
    (package_dir / RECORD).write_text(text, encoding="utf-8")


def _extension(package_dir: Path, name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package_dir / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def inspect(package_dir: Path = _HERE, environ: dict[str, str] | None = None) -> CoreBuild:
    """Whether the core can run compiled, and why not (see the module docstring)."""
    env = os.environ if environ is None else environ
    built = [name for name in CORE_MODULES if _extension(package_dir, name) is not None]
    if env.get(PURE_ENV, "") not in ("", "0"):
        return CoreBuild(False, f"pure Python ({PURE_ENV}={env[PURE_ENV]})")
    if not built:
        return CoreBuild(False, "pure Python (no compiled build)")
    if len(built) != len(CORE_MODULES):
        missing = sorted(set(CORE_MODULES) - set(built))
        return CoreBuild(False, f"pure Python (build incomplete: no {', '.join(missing)})")
    try:
        recorded = json.loads((package_dir / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    now = sources(package_dir)
    stale = tuple(f"{name}.py" for name in CORE_MODULES if recorded.get(name) != now[name])
    if stale:
        return CoreBuild(
            False,
            f"pure Python: the compiled build is STALE ({', '.join(stale)} changed since it "
            "was built); `make install` rebuilds it",
            stale,
        )
    return CoreBuild(True, f"compiled (mypyc): {len(CORE_MODULES)} modules")


class _PureFinder(importlib.abc.MetaPathFinder):
    """Loads the core modules from their ``.py`` even where an extension shadows them."""

    def __init__(self, package_dir: Path) -> None:
        self._dir = package_dir
        self._names = {f"{PACKAGE}.{name}": name for name in CORE_MODULES}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        name = self._names.get(fullname)
        if name is None:
            return None
        return importlib.util.spec_from_file_location(fullname, self._dir / f"{name}.py")


def activate(package_dir: Path = _HERE) -> CoreBuild:
    """Decide how the core runs in this process; install the pure finder if needed.

    Must run before any core module is imported (the package ``__init__``).
    """
    status = inspect(package_dir)
    shadowed = not status.compiled and _extension(package_dir, CORE_MODULES[0]) is not None
    if shadowed and not any(isinstance(f, _PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder(package_dir))
    if status.stale:
        warnings.warn(f"feedback_stream core: {status.reason}", RuntimeWarning, stacklevel=2)
    return status


def build_in_place(root: Path) -> int:
    """Rebuild the extensions of the checkout at ``root`` if a source changed (``make``)."""
    package_dir = root / "src" / PACKAGE
    status = inspect(package_dir, environ={})
    if status.compiled:
        print(f"feedback_stream core: {status.reason}, up to date")
        return 0
    print(f"feedback_stream core: {status.reason}; compiling ...", flush=True)
    command = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
    return subprocess.run(command, cwd=root, check=False).returncode


STATUS: CoreBuild = activate() if __name__ == f"{PACKAGE}._compiled" else CoreBuild(False, "")
"""How the core runs in this process: decided when the package is first imported
(its ``__init__`` imports this module before any core module)."""


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python src/feedback_stream/_compiled.py build")
    sys.exit(build_in_place(_HERE.parent.parent))
