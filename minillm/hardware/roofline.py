"""The roofline model: is an operation limited by arithmetic or by memory?

Williams, Waterman & Patterson (2009), "Roofline: an insightful visual performance model".
A chip does at most ``peak`` FLOP/s and moves at most ``bw`` bytes/s from memory. An
operation that does F FLOPs on B bytes has **arithmetic intensity** I = F / B
(FLOP/byte) and can run no faster than

    attainable(I) = min(peak, I * bw)                     FLOP/s
    time          >= max(F / peak, B / bw)                 seconds

The corner where the two limits meet is the **ridge point** ``peak / bw``: an
operation with less intensity than that is memory-bound, one with more is
compute-bound. An H100 at dense bf16 has its ridge at 989.4e12 / 3.35e12 = 295
FLOP/byte, so a matmul must reuse each byte ~300 times to keep it busy.

Everything here is a pure function of numbers and a :class:`DeviceSpec`; plotting
lives in :func:`minillm.hardware.plots.plot_roofline`, and an LLM inference step placed
on a roofline in :func:`minillm.hardware.serving.workload_point`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from minillm.moved import moved_names
from minillm.validate import check_int, check_number, is_number
from .devices import DeviceSpec, as_device

__all__ = [
    "Op",
    "gemm_flops_bytes",
    "gemm_intensity",
    "gemm_op",
    "ridge_point",
    "attainable_flops",
    "op_time",
    "roofline_curve",
    "ridge_batch",
]


@dataclass(frozen=True)
class Op:
    """One operation to place on a roofline: a name, its FLOPs and the bytes it moves.

    ``measured_flops_per_s`` is optional: an achieved rate, plotted as a second marker.
    """

    name: str
    flops: float
    nbytes: float
    measured_flops_per_s: float | None = None

    def __post_init__(self) -> None:
        check_number(f"Op({self.name!r}).flops", self.flops)
        check_number(f"Op({self.name!r}).nbytes", self.nbytes, strict=True)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP/byte."""
        return self.flops / self.nbytes


# --------------------------------------------------------------------------- GEMMs


def gemm_flops_bytes(M: int, K: int, N: int, bytes_per_elem: float = 2) -> tuple[float, float]:
    """FLOPs and bytes of ``C[M,N] = A[M,K] @ B[K,N]``.

    FLOPs = 2MKN (one multiply and one add per term). Bytes = bytes_per_elem x (MK + KN + MN):
    A and B read once and C written once, the least any implementation can move
    (the scaling book, Part 1: a [B,D]x[D,F] matmul moves 2(BD + DF + BF) bytes in bf16).
    """
    M, K, N = check_int("M", M), check_int("K", K), check_int("N", N)
    b = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    return 2.0 * M * K * N, b * (M * K + K * N + M * N)


def gemm_intensity(M: int, K: int, N: int, bytes_per_elem: float = 2) -> float:
    """Arithmetic intensity of a GEMM, FLOP/byte: 2MKN / (bytes_per_elem (MK + KN + MN)).

    For a batch of M tokens through a D x F weight with M << D, F this is about
    2M / bytes_per_elem, i.e. M in bf16: intensity grows with the batch, which is why
    batching turns memory-bound decoding into compute-bound work.

    >>> round(gemm_intensity(1, 4096, 4096, 2), 4)   # one token through a 4096x4096 bf16 layer
    0.9995
    """
    flops, nbytes = gemm_flops_bytes(M, K, N, bytes_per_elem)
    return flops / nbytes


def gemm_op(name: str, M: int, K: int, N: int, bytes_per_elem: float = 2) -> Op:
    """An :class:`Op` for ``A[M,K] @ B[K,N]``."""
    flops, nbytes = gemm_flops_bytes(M, K, N, bytes_per_elem)
    return Op(name, flops, nbytes)


# --------------------------------------------------------------------------- the roofline


def _peak_and_bw(device: DeviceSpec | str, dtype: str | None) -> tuple[DeviceSpec, float, float]:
    device = as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    return device, device.peak(dtype), device.mem_bw


def ridge_point(device: DeviceSpec | str, dtype: str | None = None) -> float:
    """Intensity (FLOP/byte) where the memory roof meets the compute roof: peak / bandwidth.

    ``dtype`` defaults to the device's usual LLM dtype (bf16 where it has one).
    """
    _, peak, bw = _peak_and_bw(device, dtype)
    return peak / bw


def attainable_flops(device: DeviceSpec | str, intensity, dtype: str | None = None):
    """The roofline: ``min(peak, intensity * bandwidth)`` FLOP/s.

    ``intensity`` is a number or an array of numbers (FLOP/byte, >= 0); the result has the
    same shape.
    """
    _, peak, bw = _peak_and_bw(device, dtype)
    if is_number(intensity):
        check_number("intensity", intensity)
        return min(peak, float(intensity) * bw)
    arr = np.asarray(intensity, dtype=float)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
        raise ValueError("intensity must hold finite numbers >= 0 (FLOP/byte)")
    return np.minimum(peak, arr * bw)


def op_time(flops: float, nbytes: float, device: DeviceSpec | str, dtype: str | None = None) -> tuple[float, str]:
    """Roofline lower bound on the time of an operation, and what bounds it.

    Returns ``(seconds, "compute" | "memory")`` with seconds = max(flops / peak, nbytes / bw).
    Compute and memory traffic are assumed to overlap perfectly, so this is a lower
    bound: real kernels add launch overhead and rarely reach either roof.
    """
    flops = check_number("flops", flops)
    nbytes = check_number("nbytes", nbytes)
    _, peak, bw = _peak_and_bw(device, dtype)
    t_compute, t_memory = flops / peak, nbytes / bw
    if t_compute >= t_memory:
        return t_compute, "compute"
    return t_memory, "memory"


def roofline_curve(
    device: DeviceSpec | str, dtype: str | None = None, intensities=None
) -> tuple[np.ndarray, np.ndarray]:
    """Points of the roofline for plotting: (intensity FLOP/byte, attainable FLOP/s).

    By default 200 log-spaced intensities from 1/100 to 100x the ridge point.
    """
    if intensities is None:
        ridge = ridge_point(device, dtype)
        intensities = np.logspace(np.log10(ridge / 100), np.log10(ridge * 100), 200)
    x = np.asarray(intensities, dtype=float)
    return x, attainable_flops(device, x, dtype)



def ridge_batch(K: int, N: int, peak: float, bandwidth: float, bytes_per_elem: float = 2) -> int | None:
    """The fewest rows M at which ``A[M,K] @ B[K,N]`` is compute-bound, or None if no M is.

    Compute-bound means intensity >= ridge, as :func:`op_time` decides it:
    2MKN / (b (MK + KN + MN)) >= I* with I* = peak / bandwidth. Rearranged,
    M (2KN - I* b (K + N)) >= I* b K N, so M = ceil(I* b K N / (2KN - I* b (K + N))) when the
    bracket is positive. When it is not, even M -> infinity leaves the intensity at or below
    2KN / (b (K + N)) (the weight and the output dominate the bytes): no batch reaches the ridge.
    For M << K, N the intensity is about 2M / b, so M is about I* b / 2; the exact M is larger.
    Exact rational arithmetic, so the boundary case (intensity exactly at the ridge) counts
    as compute-bound, as in :func:`op_time`.
    """
    K, N = check_int("K", K), check_int("N", N)
    ridge = Fraction(check_number("peak", peak, strict=True)) / Fraction(check_number("bandwidth", bandwidth, strict=True))
    b = Fraction(check_number("bytes_per_elem", bytes_per_elem, strict=True))
    slope = 2 * K * N - ridge * b * (K + N)
    if slope <= 0:
        return None
    return max(1, math.ceil(ridge * b * K * N / slope))

# workload_point (which needs the cost model) lives in serving.py; plot_roofline in plots.py.
__getattr__ = moved_names(__name__, {"workload_point": "minillm.hardware.serving", "PHASES": "minillm.hardware.serving", "plot_roofline": "minillm.hardware.plots"})
