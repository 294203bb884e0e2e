"""Build the prototypes: Cython and mypyc copies of the core, the Rust decoder.

Every variant is a copy of ``src/feedback_stream`` under
``build/prototypes/<variant>/`` (git-ignored) in which some modules are
compiled in place; the measuring process puts that directory first on its
path, so the rest of the package (and the benchmark) is the same code.
Nothing here touches ``src/`` or the project's install.

The tools are installed into the running interpreter's environment on
demand (``pip install cython maturin``); Rust needs ``cargo`` on the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILD",
    "CRATE",
    "MYPYC_BUILD",
    "REPO",
    "VARIANTS",
    "Variant",
    "build",
    "built",
    "current",
    "environment",
    "package_path",
    "shipped_mypyc",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = REPO / "build" / "prototypes"
CRATE = HERE / "rust_decode"
SRC = REPO / "src" / "feedback_stream"

_HOT = ("windows.py", "join.py")
_HOT_DECODE = (*_HOT, "decode.py")
_CORE = (
    *_HOT_DECODE,
    "partition.py",
    "engine.py",
    "metrics.py",
    "outcomes.py",
    "events.py",
    "paired.py",
    "caps.py",
    "payload.py",
    "label_delay.py",
    "model_kinds.py",
    "scores.py",
    "packed.py",
)


@dataclass(frozen=True)
class Variant:
    """One way to run the core: which tool compiles which modules, what is patched in."""

    name: str
    tool: str  # "pure", "cython", "mypyc", "rust", "batch"
    modules: tuple[str, ...] = ()
    rust: bool = False
    batch: bool = False
    base: str | None = None  # reuse the build of another variant

    @property
    def path(self) -> Path:
        return BUILD / (self.base or self.name)


VARIANTS: tuple[Variant, ...] = (
    Variant("pure", "pure"),
    Variant("cython-windows-join", "cython", _HOT),
    Variant("cython-windows-join-decode", "cython", _HOT_DECODE),
    Variant("cython-core", "cython", _CORE),
    Variant("mypyc-core", "mypyc", _CORE),
    Variant("rust-decode", "rust", rust=True),
    Variant("batch", "batch", batch=True),
    Variant("rust-decode+cython-core", "cython", _CORE, rust=True, base="cython-core"),
    Variant("mypyc-core+batch", "mypyc", _CORE, batch=True, base="mypyc-core"),
)


MYPYC_BUILD: Path | None = None
"""A directory holding a ``feedback_stream`` already compiled by mypyc, to measure instead
of building one (``--mypyc-build``): a build of a branch not yet in this checkout."""


def shipped_mypyc() -> bool:
    """Whether the package itself compiles its core with mypyc (``make install`` builds it)."""
    return (SRC / "_compiled.py").exists()


def package_path(variant: Variant) -> Path:
    """The directory that holds the ``feedback_stream`` the variant runs."""
    if variant.tool == "mypyc" and MYPYC_BUILD is not None:
        return MYPYC_BUILD
    if variant.tool == "cython" or (variant.tool == "mypyc" and not shipped_mypyc()):
        return variant.path
    return SRC.parent


def environment(variant: Variant) -> dict[str, str]:
    """Variables the measuring process needs: the interpreted core unless mypyc is measured."""
    if variant.tool == "mypyc" and (shipped_mypyc() or MYPYC_BUILD is not None):
        return {}
    return {"FEEDBACK_STREAM_PURE": "1"}


def _run(cmd: list[str], cwd: Path) -> None:
    print("$", " ".join(cmd), f"(in {cwd})", flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def _ensure(module: str, package: str) -> None:
    try:
        __import__(module)
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", package], REPO)


def _copy(variant: Variant) -> Path:
    """The package copied under the variant's build directory.

    Over an earlier copy, sources keep their modification times (``copy2``),
    so that ``cythonize`` recompiles only the modules that changed.
    """
    target = variant.path / "feedback_stream"
    shutil.copytree(
        SRC,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "_compiled_sources.json"),
        dirs_exist_ok=True,
    )
    guard = target / "_compiled.py"
    if guard.exists():
        # The package's guard against a stale mypyc build would load every core module
        # from its .py here (no mypyc build in this copy): the copy runs what it compiled.
        text = guard.read_text(encoding="utf-8")
        activation = "STATUS: CoreBuild = activate() if"
        if activation not in text:
            raise RuntimeError(f"{guard}: no {activation!r} line to turn off")
        replacement = 'STATUS: CoreBuild = CoreBuild(False, "prototype build") if'
        guard.write_text(text.replace(activation, replacement), encoding="utf-8")
    return target


def _cython(variant: Variant) -> None:
    _ensure("Cython", "cython>=3.1,<4")
    _ensure("setuptools", "setuptools")
    package = _copy(variant)
    files = [f"feedback_stream/{name}" for name in variant.modules]
    # Pure-Python mode: the .py files as they are; annotations only as Python types.
    cythonize = Path(sys.executable).with_name("cythonize")
    _run([str(cythonize), "-i", "-3", "-j", "1", *files], package.parent)


def _mypyc(variant: Variant) -> None:
    _ensure("setuptools", "setuptools")
    package = _copy(variant)
    mypyc = Path(sys.executable).with_name("mypyc")
    files = [f"feedback_stream/{name}" for name in variant.modules]
    _run([str(mypyc), *files], package.parent)


def _rust() -> Path:
    """Build the Rust decoder with maturin and unpack its wheel under build/prototypes/rust."""
    _ensure("maturin", "maturin>=1.5,<2")
    wheels = BUILD / "wheels"
    if wheels.exists():
        shutil.rmtree(wheels)
    maturin = Path(sys.executable).with_name("maturin")
    _run([str(maturin), "build", "--release", "-q", "-o", str(wheels)], CRATE)
    target = BUILD / "rust"
    if target.exists():
        shutil.rmtree(target)
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    return target


def built(variant: Variant) -> bool:
    """Whether the variant's artefacts exist (the pure and batch ones need none)."""
    if variant.rust and not any((BUILD / "rust").glob("feedback_stream_rust_decode*")):
        return False
    if variant.tool == "mypyc" and (shipped_mypyc() or MYPYC_BUILD is not None):
        # the package's own list of compiled modules
        return any((package_path(variant) / "feedback_stream").glob("join.*.so"))
    if variant.tool in ("cython", "mypyc"):
        package = package_path(variant) / "feedback_stream"
        return all(any(package.glob(Path(m).stem + ".*.so")) for m in variant.modules)
    return True


def current(variant: Variant) -> bool:
    """Whether the variant's compiled modules were built from the sources in src/."""
    package = package_path(variant) / "feedback_stream"
    return all(
        (package / name).exists() and (package / name).read_bytes() == (SRC / name).read_bytes()
        for name in variant.modules
    )


def build(variants: list[Variant], *, force: bool = False) -> dict[str, float]:
    """Build what ``variants`` need; return each build's wall seconds."""
    seconds: dict[str, float] = {}
    if any(v.rust for v in variants) and (force or not (BUILD / "rust").exists()):
        start = time.perf_counter()
        _rust()
        seconds["rust"] = time.perf_counter() - start
    for variant in variants:
        if variant.tool not in ("cython", "mypyc") or variant.base is not None:
            continue
        if variant.tool == "mypyc" and (shipped_mypyc() or MYPYC_BUILD is not None):
            continue  # the package's own build (make install), measured as shipped
        if built(variant) and current(variant) and not force:
            continue
        start = time.perf_counter()
        try:
            (_cython if variant.tool == "cython" else _mypyc)(variant)
        except subprocess.CalledProcessError as exc:  # reported as not built, the rest goes on
            print(f"{variant.name}: the build failed ({exc})", file=sys.stderr, flush=True)
            continue
        seconds[variant.name] = time.perf_counter() - start
    return seconds
