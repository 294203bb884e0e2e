"""Build: compile the per-record core with mypyc (see src/feedback_stream/_compiled.py).

``pip install .`` / ``pip install -e .`` (and so ``make install``) compile
the modules of ``CORE_MODULES`` from their own ``.py`` sources; everything
else is in pyproject.toml. ``FEEDBACK_STREAM_COMPILE=0`` builds a pure-Python
package (for a platform without a C compiler: the same code, interpreted).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = ROOT / "src" / "feedback_stream"
# setuptools runs this file for metadata too (egg_info, dist_info): compile only
# for the commands that build extensions.
_BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop"}


def _compiled_module() -> ModuleType:
    """``feedback_stream._compiled`` loaded by path (the package itself is not importable
    in the isolated build environment)."""
    spec = importlib.util.spec_from_file_location("_fs_compiled", PACKAGE_DIR / "_compiled.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _ext_modules() -> list[object]:
    if os.environ.get("FEEDBACK_STREAM_COMPILE", "1") == "0" or not _BUILDS & set(sys.argv):
        return []
    from mypyc.build import mypycify

    compiled = _compiled_module()
    compiled.record_sources(PACKAGE_DIR)
    paths = [f"src/feedback_stream/{name}.py" for name in compiled.CORE_MODULES]
    return list(mypycify(paths, group_name=compiled.GROUP, opt_level="3"))


setup(ext_modules=_ext_modules())
