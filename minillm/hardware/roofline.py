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
lives in :func:`plot_roofline` (see :mod:`minillm.hardware.plots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minillm.validate import check_int, check_number
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
    "plot_roofline",
    "PHASES",
    "workload_point",
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
    if isinstance(intensity, (int, float, np.integer, np.floating)) and not isinstance(intensity, bool):
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


PHASES = ("decode", "prefill")


def workload_point(
    model,
    device: DeviceSpec | str,
    batch: int = 1,
    context: int = 1024,
    phase: str = "decode",
    dtype: str | None = None,
    n_devices: int | None = None,
) -> dict:
    """One LLM inference step as a point on a device's roofline: the data behind the lessons' widgets.

    ``model`` is a :class:`~minillm.hardware.costs.ModelShape`, a preset name or a GPTConfig.
    ``phase="decode"``: one step that generates ``batch`` tokens, each attending to
    ``context`` cached ones (:func:`~minillm.hardware.costs.decode_step_time`);
    ``phase="prefill"``: ``batch`` prompts of ``context`` tokens
    (:func:`~minillm.hardware.costs.prefill_time`). ``n_devices`` defaults to the fewest
    that hold the weights and KV cache; work is split evenly, so the point (per device)
    has the same intensity on any number of devices and only the time shrinks.

    Returns a flat dict: ``model, device, dtype, phase, batch, context, n_devices, flops``
    and ``bytes`` (per device), ``intensity`` (FLOP/byte), ``ridge``, ``attainable_flops``
    (the roof at that intensity), ``step_s``, ``compute_s``, ``memory_s``, ``bound``,
    ``tokens_per_s``, ``memory_gb`` and ``capacity_gb`` (GB = 1e9 bytes), ``fits``, and for
    plotting ``spec`` (the DeviceSpec) and ``op`` (an :class:`Op`).
    """
    from .costs import _as_shape, decode_step_time, memory_plan, min_devices, prefill_time

    shape, device = _as_shape(model), as_device(device)
    b, ctx = check_int("batch", batch), check_int("context", context)
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r} is not one of {PHASES}; 'decode' generates tokens, 'prefill' reads a prompt")
    dtype = device.default_dtype() if dtype is None else dtype
    device.peak(dtype)  # a clear error for a dtype the device lacks
    if n_devices is None:
        n_devices = min_devices(shape, device, b, ctx, dtype=dtype)
    n = check_int("n_devices", n_devices)
    if phase == "decode":
        step = decode_step_time(shape, device, ctx, batch=b, dtype=dtype, n_devices=n)
    else:
        step = prefill_time(shape, device, ctx, batch=b, dtype=dtype, n_devices=n)
    plan = memory_plan(shape, device, b, ctx, dtype=dtype, n_devices=n)
    flops, nbytes = step.flops / n, step.nbytes / n
    return {
        "model": shape.name,
        "device": device.name,
        "dtype": dtype,
        "phase": phase,
        "batch": b,
        "context": ctx,
        "n_devices": n,
        "flops": flops,
        "bytes": nbytes,
        "intensity": step.intensity,
        "ridge": ridge_point(device, dtype),
        "attainable_flops": attainable_flops(device, step.intensity, dtype),
        "step_s": step.seconds,
        "compute_s": step.compute_s,
        "memory_s": step.memory_s,
        "bound": step.bound,
        "tokens_per_s": step.tokens_per_s,
        "memory_gb": plan.total / 1e9,
        "capacity_gb": plan.capacity / 1e9,
        "fits": plan.fits,
        "spec": device,
        "op": Op(f"{phase}, batch {b}, context {ctx}", flops, nbytes),
    }


def plot_roofline(devices, ops=None, dtype: str | None = None, **kwargs):
    """Draw rooflines of one or more devices, with operations placed on them; returns a Figure.

    See :func:`minillm.hardware.plots.plot_roofline` for the arguments.
    """
    from .plots import plot_roofline as _plot

    return _plot(devices, ops=ops, dtype=dtype, **kwargs)
