"""Argument checks shared by the hardware modules: one clear ValueError instead of a wrong answer."""

from __future__ import annotations

import math


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` must be an int (not a bool) >= ``minimum``; returns it."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_integral(value):
        raise ValueError(f"{name}={value!r} must be a whole number >= {minimum}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}; sizes and counts cannot be negative")
    return value


def check_number(name: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` must be a finite real number >= ``minimum`` (> if ``strict``); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_real(value):
        raise ValueError(f"{name}={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be finite")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name}={value:g} must be {op} {minimum:g}; a negative size, time or rate has no meaning")
    return value


def _is_integral(value) -> bool:
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False


def _is_real(value) -> bool:
    try:
        import numpy as np

        return isinstance(value, (np.integer, np.floating))
    except ImportError:  # pragma: no cover
        return False
