"""Argument checks shared by the whole package: one clear ValueError instead of a wrong answer.

Every public function that takes a size, a count, a rate or a named option checks it
with these helpers, so a learner who passes ``n_layer=True``, ``batch=-1`` or
``dtype="bf61"`` gets one line that names the argument and the fix, never a traceback
from deep inside torch. ``bool`` is rejected wherever a number is expected: Python
counts ``True`` as the integer 1, which would silently turn a mistake into a result.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["is_int", "is_number", "check_int", "check_number", "check_choice", "check_fraction"]


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for real numbers (int, float, NumPy scalars), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` must be a whole number (not a bool) >= ``minimum``; returns it as int."""
    if not is_int(value):
        raise ValueError(f"{name}={value!r} must be a whole number >= {minimum}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def check_number(name: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` must be a finite real number >= ``minimum`` (> if ``strict``); returns it as float."""
    if not is_number(value):
        raise ValueError(f"{name}={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be finite")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name}={value:g} must be {op} {minimum:g}")
    return value


def check_fraction(name: str, value, *, closed: bool = False) -> float:
    """``value`` must be a number in [0, 1) (or [0, 1] if ``closed``); returns it as float."""
    value = check_number(name, value)
    if value > 1 or (value == 1 and not closed):
        raise ValueError(f"{name}={value:g} must be in [0, {'1]' if closed else '1)'}")
    return value


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """``value`` must be one of ``choices``; the error lists them all."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(repr(c) for c in choices)}")
    return value
