"""Measure this machine: its roofline from a few microbenchmarks, in seconds.

Two numbers place a machine on the roofline: how many FLOP/s its best matmul reaches
and how many bytes/s it streams from memory. We measure them as the STREAM benchmark
(McCalpin 1995) and the HPL/GEMM tradition do:

- **GEMM**: ``a @ b`` for square fp32 matrices of a few sizes (2n³ FLOPs each), and int8
  ``torch._int_mm`` (int8 x int8 -> int32) where this torch has it. The best rate is the
  machine's measured compute roof, always below the datasheet peak.
- **Bandwidth**: *copy* ``b = a`` (reads n and writes n elements) and *triad*
  ``a = b + s·c`` (reads 2n, writes n) on arrays much larger than the last-level cache.
  We count only the bytes the program asks for; a write-allocating cache may move more.

Each timing is the *best* of a few repeats: on a shared machine the minimum is the most
reproducible estimate of what the hardware can do.

:func:`this_machine` returns the result as a :class:`DeviceSpec` named "this machine",
ready for every roofline and cost function. :func:`predict_vs_measure` then checks the
roofline against this machine: it predicts the time of a list of operations from a spec
and times each of them (lesson 07, section 5, and ``benchmarks/bench_hardware.py``).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from minillm.threads import num_threads  # also re-exported: lessons 07-08 import it from here

from minillm.moved import moved_names
from minillm.timing import best_time
from minillm.units import GB, MB
from minillm.validate import check_int, check_number
from .devices import DeviceSpec
from .roofline import gemm_flops_bytes, op_time

__all__ = [
    "Measurements",
    "gemm_rate",
    "int8_gemm_rate",
    "copy_bandwidth",
    "triad_bandwidth",
    "run_microbenchmarks",
    "this_machine",
    "num_threads",
    "pick_threads",
    "auto_clock",
    "Case",
    "gemm_case",
    "scale_case",
    "default_cases",
    "predict_vs_measure",
]


@dataclass
class Measurements:
    """Raw microbenchmark results. Rates in FLOP/s (ops/s for int8) and bytes/s."""

    gemm_fp32: dict[int, float] = field(default_factory=dict)
    gemm_int8: dict[int, float] = field(default_factory=dict)
    copy_bw: float = 0.0
    triad_bw: float = 0.0
    threads: int = 1
    seconds: float = 0.0
    int8_kernel: str = "none"
    array_bytes: int = 0
    clock: str = "wall time"

    @property
    def peak_fp32(self) -> float:
        return max(self.gemm_fp32.values())

    @property
    def peak_int8(self) -> float | None:
        return max(self.gemm_int8.values()) if self.gemm_int8 else None

    @property
    def mem_bw(self) -> float:
        return max(self.copy_bw, self.triad_bw)


def _repeats_for(seconds_one: float, budget_s: float, lo: int = 2, hi: int = 20) -> int:
    """How many repeats fit a time budget, given one call's duration."""
    return max(lo, min(hi, int(budget_s / max(seconds_one, 1e-6))))


def gemm_rate(n: int, budget_s: float = 0.5, seed: int = 0, clock=time.perf_counter) -> float:
    """Achieved fp32 FLOP/s of an n x n x n matmul: 2n³ / best time."""
    n = check_int("n", n)
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    t0 = time.perf_counter()
    a @ b  # warm-up, also sizes the number of repeats
    reps = _repeats_for(time.perf_counter() - t0, budget_s)
    return 2.0 * n**3 / best_time(lambda: a @ b, repeats=reps, warmup=0, clock=clock)


def int8_gemm_rate(n: int, budget_s: float = 0.5, seed: int = 0, clock=time.perf_counter) -> float | None:
    """Achieved int8 ops/s of ``torch._int_mm`` (int8 x int8 -> int32) at size n, or None if unavailable."""
    n = check_int("n", n)
    if not hasattr(torch, "_int_mm"):
        return None
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    try:
        t0 = time.perf_counter()
        torch._int_mm(a, b)
    except (RuntimeError, NotImplementedError):  # some builds or shapes lack a CPU kernel
        return None
    reps = _repeats_for(time.perf_counter() - t0, budget_s, lo=1)
    return 2.0 * n**3 / best_time(lambda: torch._int_mm(a, b), repeats=reps, warmup=0, clock=clock)


def copy_bandwidth(n_elems: int, repeats: int = 5, clock=time.perf_counter) -> float:
    """STREAM copy, bytes/s: ``dst.copy_(src)`` moves 2 x 4 x n bytes (fp32 read + write)."""
    n = check_int("n_elems", n_elems)
    src, dst = torch.ones(n), torch.empty(n)
    return 8.0 * n / best_time(lambda: dst.copy_(src), repeats=repeats, clock=clock)


def triad_bandwidth(n_elems: int, repeats: int = 5, clock=time.perf_counter) -> float:
    """STREAM triad, bytes/s: ``a = b + 3·c`` moves 3 x 4 x n bytes (two reads, one write)."""
    n = check_int("n_elems", n_elems)
    a, b, c = torch.empty(n), torch.ones(n), torch.ones(n)
    return 12.0 * n / best_time(lambda: torch.add(b, c, alpha=3.0, out=a), repeats=repeats, clock=clock)


def pick_threads(n: int = 384) -> int:
    """torch's default thread count, or 1 if a single thread runs an n-cube fp32 GEMM faster.

    On a busy shared machine OpenMP threads wait for each other at every barrier while
    one of them is descheduled, and a multi-threaded GEMM can run ten times slower than
    a single-threaded one. Measuring with the faster setting gives the roof this machine
    can actually reach; use :func:`num_threads` to time your own code the same way.
    """
    default = torch.get_num_threads()
    if default == 1:
        return 1
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_default = best_time(lambda: a @ b, repeats=5)
    with num_threads(1):
        t_one = best_time(lambda: a @ b, repeats=5)
    return 1 if t_one < 0.9 * t_default else default


def auto_clock(threads: int):
    """CPU time for a single thread (immune to other processes' time slices), else wall time.

    Falls back to wall time where the process clock is coarse (Windows ticks at ~16 ms).
    """
    if threads == 1 and time.get_clock_info("process_time").resolution <= 1e-6:
        return time.process_time
    return time.perf_counter


def run_microbenchmarks(
    quick: bool = False, progress: bool = True, threads: int | None = None, clock=None
) -> Measurements:
    """Run every microbenchmark; about 5-10 s (``quick``: about 2 s).

    ``threads`` fixes torch's thread count; None picks it with :func:`pick_threads`.
    ``clock`` times each call (see :func:`best_time`); None picks :func:`auto_clock`.

    Sizes: fp32 GEMM 256..2048 (quick: 256..1024); int8 GEMM up to 1024, stopping early
    when a size would take more than a second (int8 on a CPU without VNNI/AMX is slow);
    bandwidth on 128 MB arrays (quick: 64 MB), past most last-level caches.
    """
    fp32_sizes = [256, 512, 1024] if quick else [256, 512, 1024, 1536, 2048]
    int8_sizes = [128, 256] if quick else [128, 256, 512, 1024]
    n_elems = (1 << 24) if quick else (1 << 25)  # fp32 elements per array
    budget = 0.15 if quick else 0.6  # seconds of repeats per size
    m = Measurements(array_bytes=4 * n_elems)
    start = time.perf_counter()
    if threads is None:
        threads = pick_threads()
    with num_threads(threads):
        m.threads = torch.get_num_threads()
        clock = auto_clock(m.threads) if clock is None else clock
        m.clock = "cpu time" if clock is time.process_time else "wall time"
        steps = len(fp32_sizes) + len(int8_sizes) + 2
        with tqdm(total=steps, desc="measuring this machine", disable=not progress, leave=False) as bar:
            for n in fp32_sizes:
                bar.set_postfix_str(f"fp32 GEMM n={n}")
                m.gemm_fp32[n] = gemm_rate(n, budget, clock=clock)
                bar.update()
            last = None
            for n in int8_sizes:
                bar.set_postfix_str(f"int8 GEMM n={n}")
                # Skip sizes the previous rate says would take over a second per call.
                if last is not None and 2.0 * n**3 / last > 1.0:
                    bar.update()
                    continue
                rate = int8_gemm_rate(n, budget, clock=clock)
                if rate is not None:
                    m.gemm_int8[n] = last = rate
                    m.int8_kernel = "torch._int_mm"
                bar.update()
            bar.set_postfix_str("copy bandwidth")
            m.copy_bw = copy_bandwidth(n_elems, repeats=3 if quick else 6, clock=clock)
            bar.update()
            bar.set_postfix_str("triad bandwidth")
            m.triad_bw = triad_bandwidth(n_elems, repeats=3 if quick else 6, clock=clock)
            bar.update()
    m.seconds = time.perf_counter() - start
    return m


def _physical_memory() -> float:
    """Installed RAM in bytes, or 8 GB if the OS will not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # e.g. Windows
        return 8e9


_CACHE: dict[tuple, DeviceSpec] = {}


def spec_from_measurements(m: Measurements, name: str = "this machine") -> DeviceSpec:
    """Turn raw measurements into a DeviceSpec (kind "cpu"; measured roofs, not datasheet peaks)."""
    when = datetime.date.today().isoformat()
    where = f"{platform.processor() or platform.machine()}, {m.threads} torch threads, {when}"
    peaks = {"fp32": m.peak_fp32}
    sources = {
        "peak_flops.fp32": f"measured: best fp32 GEMM over n={sorted(m.gemm_fp32)} ({where})",
        "mem_bytes": "os.sysconf: installed physical memory",
        "mem_bw": f"measured: best of STREAM copy ({m.copy_bw / GB:.1f} GB/s) and triad "
        f"({m.triad_bw / GB:.1f} GB/s) on {m.array_bytes / MB:.0f} MB arrays ({where})",
    }
    if m.peak_int8 is not None:
        peaks["int8"] = m.peak_int8
        sources["peak_flops.int8"] = f"measured: best {m.int8_kernel} over n={sorted(m.gemm_int8)} ({where})"
    return DeviceSpec(
        name=name,
        kind="cpu",
        peak_flops=peaks,
        mem_bytes=_physical_memory(),
        mem_bw=m.mem_bw,
        link_bw=None,
        tdp_w=None,
        sources=sources,
        usd_per_hour=None,
        notes=f"Measured in {m.seconds:.1f} s with {m.threads} torch thread(s), timed by {m.clock}. "
        "These are achieved rates, "
        "not datasheet peaks.",
    )


def this_machine(
    quick: bool = False, progress: bool = True, threads: int | None = None, refresh: bool = False
) -> DeviceSpec:
    """Measure this machine and return it as a DeviceSpec named "this machine" (kind "cpu").

    ``peak_flops`` holds the best measured fp32 GEMM rate (and int8 where torch has a CPU
    int8 matmul), ``mem_bw`` the best of STREAM copy and triad. Takes about 10 s
    (``quick=True``: about 2 s, less accurate) and shows a progress bar. ``threads=None``
    picks torch's default thread count or 1, whichever multiplies faster (see
    :func:`pick_threads`); the notes say which. Results are
    cached per (quick, threads) for the session; ``refresh=True`` measures again.
    """
    key = (bool(quick), threads)
    if refresh or key not in _CACHE:
        _CACHE[key] = spec_from_measurements(run_microbenchmarks(quick=quick, progress=progress, threads=threads))
    return _CACHE[key]


# --------------------------------------------------------------------------- predict, then measure

#: One operation to predict and time: (name, FLOPs, bytes it must move, a callable that runs it).
Case = tuple[str, float, float, Callable[[], object]]


def gemm_case(name: str, M: int, K: int, N: int, generator: torch.Generator | None = None) -> Case:
    """An fp32 ``A[M,K] @ B[K,N]`` on random operands: 2MKN FLOPs, 4(MK + KN + MN) bytes."""
    flops, nbytes = gemm_flops_bytes(M, K, N, 4)  # also checks the sizes
    a, b = torch.randn(M, K, generator=generator), torch.randn(K, N, generator=generator)
    return name, flops, nbytes, (lambda: a @ b)


def scale_case(name: str, rows: int, cols: int, generator: torch.Generator | None = None) -> Case:
    """An elementwise scale of an fp32 [rows, cols] tensor into a preallocated output.

    1 FLOP per element; 8 bytes per element (read 4, write 4). The output is allocated
    once here: an op that allocates a large output pays page faults on first touch
    (``h + h`` on 64 MB can take 10x the bandwidth bound), which the roofline leaves out.
    """
    h = torch.randn(check_int("rows", rows), check_int("cols", cols), generator=generator)
    out = torch.empty_like(h)
    return name, float(h.numel()), 8.0 * h.numel(), (lambda: torch.mul(h, 1.5, out=out))


def default_cases(quick: bool = True, seed: int = 0) -> list[Case]:
    """The benchmark's operations: square fp32 GEMMs, a large GEMV and an elementwise scale.

    GEMMs n = 128..1024 (2048 unless ``quick``); one token through a 4096 x 4096 fp32
    weight (64 MB; 4096 x 8192, 128 MB, unless ``quick``), the shape of batch-1 decoding,
    past the caches; a scale of 4096 (8192) x 4096 fp32 elements.
    """
    g = torch.Generator().manual_seed(seed)
    sizes = [128, 256, 512, 1024] if quick else [128, 256, 512, 1024, 2048]
    cases = [gemm_case(f"gemm_{n}", n, n, n, generator=g) for n in sizes]
    k, n = 4096, 4096 if quick else 8192
    cases.append(gemm_case(f"gemv_{k}x{n}", 1, k, n, generator=g))
    rows = 4096 if quick else 8192
    cases.append(scale_case(f"scale_{rows}x4096", rows, 4096, generator=g))
    return cases


def predict_vs_measure(
    spec: DeviceSpec,
    cases: list[Case] | None = None,
    dtype: str = "fp32",
    threads: int | None = 1,
    clock=None,
    budget_s: float = 0.2,
) -> list[dict]:
    """Predict each operation's time from ``spec``'s roofline, then time it on this machine.

    ``cases``: (name, FLOPs, bytes, callable) tuples, e.g. from :func:`gemm_case` and
    :func:`scale_case`; None uses :func:`default_cases` (quick). The prediction is
    :func:`~minillm.hardware.roofline.op_time` (``max(FLOPs / peak, bytes / bandwidth)``);
    the measurement is the best of as many calls as fit ``budget_s`` (2 to 20, after one
    untimed call that also sizes the repeats), run with ``threads`` torch threads (None:
    leave torch's setting) and timed by ``clock`` (None: :func:`auto_clock`).

    Returns one dict per case: ``name``, ``flops``, ``bytes``, ``intensity`` (FLOP/byte),
    ``predicted_s``, ``measured_s``, ``ratio`` (measured / predicted: 1 on the roof, above 1
    slower than the roof allows) and ``bound`` ("compute" or "memory").
    """
    cases = default_cases(quick=True) if cases is None else list(cases)
    budget_s = check_number("budget_s", budget_s, strict=True)
    rows = []
    with num_threads(threads):
        clock = auto_clock(torch.get_num_threads()) if clock is None else clock
        for name, flops, nbytes, fn in cases:
            predicted, bound = op_time(flops, nbytes, spec, dtype)
            t0 = clock()
            fn()  # warm-up, also sizes the number of repeats
            reps = _repeats_for(clock() - t0, budget_s)
            measured = best_time(fn, repeats=reps, warmup=0, clock=clock)
            rows.append(
                {
                    "name": name,
                    "flops": float(flops),
                    "bytes": float(nbytes),
                    "intensity": flops / nbytes,
                    "predicted_s": predicted,
                    "measured_s": measured,
                    "ratio": measured / predicted,
                    "bound": bound,
                }
            )
    return rows


__getattr__ = moved_names(__name__, {"interleaved_best": "minillm.timing"})
