"""Measuring prototypes of a compiled core (Cython, mypyc, Rust/PyO3, batching): see README.md."""

__all__: list[str] = []
