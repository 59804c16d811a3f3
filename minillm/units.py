"""Units and how the course prints them: one GB, one set of formatters.

Bandwidths, FLOP/s and papers' memory figures are decimal (``GB`` = 1e9 bytes, as the
ZeRO and Megatron papers and every bandwidth datasheet count). GPU memory *sizes* are
binary as vendors quote them: NVIDIA's "80 GB" H100 holds 80 GiB = 85.9e9 bytes
(``nvidia-smi`` reports 81,559 MiB). Every number in the course says which one it uses.
"""

from __future__ import annotations

__all__ = ["KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "format_bytes", "format_seconds", "format_rate"]

KB, MB, GB, TB = 1e3, 1e6, 1e9, 1e12  # decimal: bandwidths, papers' tables
KiB, MiB, GiB = 2.0**10, 2.0**20, 2.0**30  # binary: vendors' GPU memory sizes


def format_seconds(s: float) -> str:
    """A duration with a readable unit: "3.2 ms", "41 µs", "2.5 s", "3.1 h"."""
    units = (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("µs", 1e-6))
    unit, scale = next(((u, k) for u, k in units if s >= k), ("ns", 1e-9))
    return f"{s / scale:.3g} {unit}"


def format_bytes(n: float) -> str:
    """A size in decimal units: "1.5 GB", "640 kB", "12 B" (GB = 1e9 bytes)."""
    for scale, unit in ((TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "kB")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def format_rate(x: float, unit: str = "FLOP/s") -> str:
    """A rate with an SI prefix: "312 TFLOP/s", "2.04 TB/s" (pass unit="B/s")."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"
