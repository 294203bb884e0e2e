"""Fixed-point sums: floats added and taken back exactly, in any order.

A window adds a term when an outcome enters and subtracts the same term
when it leaves or is retracted. With float sums, residue from millions of
such steps (and the order partitions are merged in) would leak into the
result. Each term is instead truncated once to a multiple of 2**-64 and kept
as a Python integer, so sums are exact, order-free and reproducible; a mean
read from one is off by at most 2**-64 per term before the final rounding.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FIXED_ONE", "fixed", "unfixed"]

FIXED_ONE: Final = 1 << 64
"""The integer that stands for 1.0."""

_SCALE: Final = float(FIXED_ONE)


def fixed(value: float) -> int:
    """``value`` as an integer multiple of 2**-64, truncated toward zero.

    Raises:
        OverflowError: ``value`` is infinite (or so large that scaling overflows).
        ValueError: ``value`` is NaN.
    """
    return int(value * _SCALE)


def unfixed(total: int, count: int = 1) -> float:
    """``total / count`` back in float (correctly rounded integer division)."""
    return total / (count * FIXED_ONE)
