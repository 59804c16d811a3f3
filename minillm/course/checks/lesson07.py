"""Checks of lesson 07, "Roofline: where time goes".

Each check compares the learner's function with minillm's roofline formulas
(:mod:`minillm.hardware.roofline`) on seeded random cases plus edge cases, and tests a
property of the roofline (more batch never lowers a GEMM's intensity; the roof is
never above the peak). Typical mistakes are recognised and named in the hint.
Everything here is float arithmetic on a handful of products, so the comparisons use
a relative tolerance of 1e-9: far above float64 rounding, far below any real mistake.
"""

from __future__ import annotations

import math

from minillm.course.checks import CheckFailure, case_rng, describe, register

RTOL = 1e-9  # float64 arithmetic in a different order: ~1e-15 relative; any formula slip is >= 1e-3


def _number(got, what: str, hint: str) -> float:
    """The learner's result as a float: a Python, numpy or 0-d torch number."""
    if hasattr(got, "item") and getattr(got, "ndim", 0) == 0 and not isinstance(got, bool):
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise CheckFailure(f"{what} is", got=describe(got), expected="a number (a float)", hint=hint)
    got = float(got)
    if not math.isfinite(got):
        raise CheckFailure(f"{what} is", got=got, expected="a finite number", hint=hint)
    return got


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=0.0)


def _name_mistake(got: float, mistakes: dict[str, float], default: str) -> str:
    for hint, wrong in mistakes.items():
        if _close(got, wrong):
            return hint
    return default


# --------------------------------------------------------------------------- arithmetic intensity


def _intensity(M: int, K: int, N: int, b: float) -> float:
    return 2.0 * M * K * N / (b * (M * K + K * N + M * N))


def _gemm_cases(seed: int) -> list[tuple[int, int, int, float]]:
    """(M, K, N, bytes per element): the teacher's shapes, a decode GEMV, square and random ones."""
    rng = case_rng(seed)
    cases = [
        (256, 128, 384, 4),  # the teacher's qkv projection over a 256-token prompt, fp32
        (1, 4096, 4096, 2),  # one token through a 4096 x 4096 bf16 layer: a GEMV
        (1024, 1024, 1024, 2),
        (8, 8192, 28672, 1),  # a small batch through a llama-70B MLP weight, int8
        (1, 1, 1, 4),
        (7, 3, 5, 2),
    ]
    for _ in range(6):
        cases.append((rng.randint(1, 4096), rng.randint(1, 4096), rng.randint(1, 4096), rng.choice([1, 2, 4])))
    return cases


@register(
    "07.gemm_intensity",
    points=2,
    references=(
        "minillm.hardware.roofline.gemm_intensity",
        "minillm.hardware.roofline.gemm_flops_bytes",
        "minillm.hardware.roofline.gemm_op",
    ),
)
def check_gemm_intensity(fn) -> None:
    """gemm_intensity(M, K, N, bytes_per_elem) -> FLOP/byte of A[M,K] @ B[K,N]."""
    for M, K, N, b in _gemm_cases(7):
        what = f"gemm_intensity(M={M}, K={K}, N={N}, bytes_per_elem={b})"
        got = _number(fn(M, K, N, b), what, "return 2·M·K·N / (bytes_per_elem·(M·K + K·N + M·N))")
        expected = _intensity(M, K, N, b)
        if not _close(got, expected):
            mistakes = {
                "a multiply-add is 2 FLOPs: the GEMM does 2·M·K·N of them": expected / 2,
                "C is written too: bytes = bytes_per_elem·(M·K + K·N + M·N)": 2.0 * M * K * N / (b * (M * K + K * N)),
                "multiply the element count by bytes_per_elem (bf16 is 2 bytes, fp32 is 4)": expected * b,
                "intensity is FLOPs per byte, not bytes per FLOP": 1.0 / expected,
                "count each matrix once: M·K + K·N + M·N elements, not (M + N)·K": 2.0 * M * K * N / (b * (M + N) * K),
            }
            raise CheckFailure(
                f"{what} is",
                got=f"{got:.6g}",
                expected=f"{expected:.6g}",
                hint=_name_mistake(got, mistakes, "FLOPs = 2·M·K·N; bytes = bytes_per_elem·(M·K + K·N + M·N)"),
            )
    # Property: a bigger batch (M) never lowers the intensity (issue 6).
    for M in (1, 2, 16, 128):
        lo = _number(fn(M, 512, 512, 2), "gemm_intensity", "")
        hi = _number(fn(2 * M, 512, 512, 2), "gemm_intensity", "")
        if hi < lo:
            raise CheckFailure(
                f"doubling the batch from M={M} lowered the intensity from {lo:.4g} to {hi:.4g}",
                hint="more rows of A reuse the same weight matrix B, so the intensity can only grow",
            )


# --------------------------------------------------------------------------- attainable FLOP/s


@register("07.attainable_flops", points=2, references=("minillm.hardware.roofline.attainable_flops",))
def check_attainable_flops(fn) -> None:
    """attainable_flops(peak, bandwidth, intensity) -> min(peak, intensity·bandwidth) FLOP/s."""
    rng = case_rng(70)
    # (peak FLOP/s, bytes/s): an H100 in bf16, a TPU v5e, a laptop core; plus random machines.
    machines = [(989.4e12, 3.35e12), (197e12, 819e9), (1.2e11, 2.0e10)]
    machines += [(10 ** rng.uniform(10, 15), 10 ** rng.uniform(9, 13)) for _ in range(3)]
    for peak, bw in machines:
        ridge = peak / bw
        # Far left, just left of, exactly at, just right of and far right of the ridge, and 0.
        for intensity in (0.0, ridge / 100, ridge * 0.999, ridge, ridge * 1.001, ridge * 50, 1.0):
            what = f"attainable_flops(peak={peak:.4g}, bandwidth={bw:.4g}, intensity={intensity:.4g})"
            got = _number(fn(peak, bw, intensity), what, "return min(peak, intensity * bandwidth)")
            expected = min(peak, intensity * bw)
            if not _close(got, expected):
                mistakes = {
                    "the roof is the LOWER of the two limits: min, not max": max(peak, intensity * bw),
                    "below the ridge the memory roof applies: intensity x bandwidth": peak,
                    "above the ridge the compute roof caps it at the peak": intensity * bw,
                    "the memory roof is intensity MULTIPLIED by bandwidth (FLOP/byte x byte/s)": min(peak, intensity / bw)
                    if bw
                    else math.nan,
                }
                side = "left of" if intensity < ridge else ("at" if intensity == ridge else "right of")
                raise CheckFailure(
                    f"{what} ({side} the ridge {ridge:.4g} FLOP/byte) is",
                    got=f"{got:.6g}",
                    expected=f"{expected:.6g}",
                    hint=_name_mistake(got, mistakes, "return min(peak, intensity * bandwidth)"),
                )


# --------------------------------------------------------------------------- GEMM time


@register(
    "07.gemm_time",
    points=3,
    references=(
        "minillm.hardware.roofline.op_time",
        "minillm.hardware.roofline.gemm_flops_bytes",
        "minillm.hardware.roofline.gemm_op",
        "minillm.hardware.roofline.gemm_intensity",
    ),
)
def check_gemm_time(fn) -> None:
    """gemm_time(M, K, N, peak, bandwidth, bytes_per_elem) -> (seconds, "compute" | "memory")."""
    rng = case_rng(77)
    machines = [(989.4e12, 3.35e12), (1.2e11, 2.0e10), (5e10, 8e9)]
    shapes = [(4096, 4096, 4096, 2), (1, 4096, 4096, 2), (256, 128, 512, 4), (1, 128, 512, 4), (64, 8192, 8192, 2)]
    shapes += [(rng.randint(1, 2048), rng.randint(1, 2048), rng.randint(1, 2048), rng.choice([1, 2, 4])) for _ in range(4)]
    for peak, bw in machines:
        for M, K, N, b in shapes:
            flops = 2.0 * M * K * N
            nbytes = b * (M * K + K * N + M * N)
            t_c, t_m = flops / peak, nbytes / bw
            if math.isclose(t_c, t_m, rel_tol=1e-6):
                continue  # a tie could be labelled either way
            expected, bound = max(t_c, t_m), ("compute" if t_c > t_m else "memory")
            what = f"gemm_time(M={M}, K={K}, N={N}, peak={peak:.4g}, bandwidth={bw:.4g}, bytes_per_elem={b})"
            out = fn(M, K, N, peak, bw, b)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise CheckFailure(f"{what} returned", got=describe(out), expected='a tuple (seconds, "compute" or "memory")')
            seconds = _number(out[0], f"{what}[0] (seconds)", "seconds = max(FLOPs / peak, bytes / bandwidth)")
            if not _close(seconds, expected):
                mistakes = {
                    "compute and memory traffic overlap: take the max of the two times, not their sum": t_c + t_m,
                    "the step takes as long as its SLOWER limit: max, not min": min(t_c, t_m),
                    "a GEMM does 2·M·K·N FLOPs (a multiply and an add per term)": max(t_c / 2, t_m),
                    "bytes = bytes_per_elem·(M·K + K·N + M·N): A and B read, C written": max(t_c, (M * K + K * N + M * N) / bw),
                }
                raise CheckFailure(
                    f"{what} takes",
                    got=f"{seconds:.6g} s",
                    expected=f"{expected:.6g} s ({bound}-bound)",
                    hint=_name_mistake(seconds, mistakes, "seconds = max(2·M·K·N / peak, bytes / bandwidth)"),
                )
            if out[1] != bound:
                raise CheckFailure(
                    f"{what} is labelled",
                    got=repr(out[1]),
                    expected=repr(bound),
                    hint=f'compute takes {t_c:.3g} s and memory {t_m:.3g} s: the label names the LARGER one, "compute" or "memory"',
                )


# --------------------------------------------------------------------------- stretch: the batch that reaches the ridge


def _ridge_batch_cases(seed: int) -> list[tuple[int, int, float, float, float]]:
    """(K, N, peak, bandwidth, bytes per element): real layers on real chips, an exact tie, no answer, random."""
    rng = case_rng(seed)
    cases = [
        (4096, 4096, 989.4e12, 3.35e12, 2),  # an H100 in bf16: 346, well above the 2M/b guess of 295
        (128, 384, 1e11, 2e10, 4),  # the teacher's qkv weight on a laptop core, fp32
        (8192, 28672, 1978.9e12, 3.35e12, 1),  # a Llama-70B MLP weight on an H100 in int8
        (4096, 4096, 197e12, 819e9, 2),  # a TPU v5e
        (6, 6, 4e10, 1e10, 1),  # intensity exactly 4 = the ridge at M = 6: a tie is compute-bound
        (512, 512, 989.4e12, 3.35e12, 2),  # a 512 x 512 weight never reaches an H100's ridge: None
        (64, 64, 1e12, 1e10, 2),  # nor a tiny one on any accelerator: None
    ]
    for _ in range(5):
        cases.append((rng.randint(64, 16384), rng.randint(64, 16384), 10 ** rng.uniform(10.5, 15), 10 ** rng.uniform(10, 12.5),
                      rng.choice([1, 2, 4])))
    return cases


@register("07.ridge_batch", points=2, references=("minillm.hardware.roofline.ridge_batch",))
def check_ridge_batch(fn) -> None:
    """ridge_batch(K, N, peak, bandwidth, bytes_per_elem=2) -> fewest rows M that make A[M,K] @ B[K,N] compute-bound, or None."""
    from minillm.hardware.roofline import ridge_batch

    for K, N, peak, bw, b in _ridge_batch_cases(71):
        what = f"ridge_batch(K={K}, N={N}, peak={peak:.4g}, bandwidth={bw:.4g}, bytes_per_elem={b})"
        got = fn(K, N, peak, bw, b)
        if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:
            got = got.item()
        expected = ridge_batch(K, N, peak, bw, b)
        if got is not None and (isinstance(got, bool) or not isinstance(got, int)):
            raise CheckFailure(f"{what} returned", got=describe(got) + (f" ({got!r})" if isinstance(got, float) else ""),
                               expected="an int (a number of rows) or None",
                               hint="a batch is a whole number of rows: round up with math.ceil")
        if got == expected:
            continue
        ridge = peak / bw
        if expected is None:
            hint = ("this weight never reaches the ridge: even as M grows, the intensity stays below "
                    "2KN / (b (K + N)); when 2KN <= ridge·b·(K + N), return None")
        elif got is None:
            hint = "some batch does reach the ridge here; return None only when 2KN <= ridge·b·(K + N)"
        elif got == max(1, math.ceil(ridge * b / 2)) or got == max(1, round(ridge * b / 2)):
            hint = ("I ≈ 2M/b holds only while M << K, N: solve 2MKN / (b (MK + KN + MN)) >= peak / bandwidth "
                    "for M exactly")
        elif got == expected - 1 and _intensity(got, K, N, b) < ridge:
            hint = f"M = {got} is still memory-bound (intensity {_intensity(got, K, N, b):.6g} < ridge {ridge:.6g}): round UP"
        elif got == expected + 1 and abs(_intensity(expected, K, N, b) - ridge) <= 1e-9 * ridge:
            hint = "exactly at the ridge counts as compute-bound (>=), as in your gemm_time"
        elif got > expected and _intensity(got - 1, K, N, b) >= ridge:
            hint = f"M = {got - 1} already reaches the ridge: return the FEWEST rows"
        else:
            hint = ("rearrange 2MKN >= ridge·b·(MK + KN + MN) into M·(2KN - ridge·b·(K + N)) >= ridge·b·K·N, "
                    "then take the smallest whole M")
        raise CheckFailure(f"{what} is", got=repr(got), expected=repr(expected), hint=hint)
