"""Wrong answers to lesson 07's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

# --------------------------------------------------------------------------- arithmetic intensity


def intensity_no_factor_two(M, K, N, bytes_per_elem=2):
    """Counts one FLOP per multiply-add."""
    return M * K * N / (bytes_per_elem * (M * K + K * N + M * N))


def intensity_no_output(M, K, N, bytes_per_elem=2):
    """Forgets that C is written."""
    return 2 * M * K * N / (bytes_per_elem * (M * K + K * N))


def intensity_elements_not_bytes(M, K, N, bytes_per_elem=2):
    """Divides by elements, not bytes."""
    return 2 * M * K * N / (M * K + K * N + M * N)


def intensity_inverted(M, K, N, bytes_per_elem=2):
    """Returns bytes per FLOP."""
    return bytes_per_elem * (M * K + K * N + M * N) / (2 * M * K * N)


def intensity_batch_approximation(M, K, N, bytes_per_elem=2):
    """Uses the small-batch shortcut 2M / bytes_per_elem everywhere."""
    return 2 * M / bytes_per_elem


# --------------------------------------------------------------------------- attainable FLOP/s


def attainable_max(peak, bandwidth, intensity):
    """Takes the larger roof."""
    return max(peak, intensity * bandwidth)


def attainable_always_peak(peak, bandwidth, intensity):
    """Ignores the memory roof."""
    return peak


def attainable_always_memory(peak, bandwidth, intensity):
    """Ignores the compute roof."""
    return intensity * bandwidth


def attainable_divides(peak, bandwidth, intensity):
    """Divides intensity by bandwidth."""
    return min(peak, intensity / bandwidth)


def attainable_ridge_switch_wrong(peak, bandwidth, intensity):
    """Switches roofs on the wrong side of the ridge."""
    return intensity * bandwidth if intensity > peak / bandwidth else peak


# --------------------------------------------------------------------------- GEMM time


def _fb(M, K, N, b):
    return 2.0 * M * K * N, b * (M * K + K * N + M * N)


def gemm_time_sum(M, K, N, peak, bandwidth, bytes_per_elem=4):
    """Adds compute and memory time (no overlap)."""
    f, by = _fb(M, K, N, bytes_per_elem)
    tc, tm = f / peak, by / bandwidth
    return tc + tm, "compute" if tc > tm else "memory"


def gemm_time_min(M, K, N, peak, bandwidth, bytes_per_elem=4):
    """Takes the faster of the two limits."""
    f, by = _fb(M, K, N, bytes_per_elem)
    tc, tm = f / peak, by / bandwidth
    return min(tc, tm), "compute" if tc > tm else "memory"


def gemm_time_label_swapped(M, K, N, peak, bandwidth, bytes_per_elem=4):
    """Right time, but names the limit that is NOT binding."""
    f, by = _fb(M, K, N, bytes_per_elem)
    tc, tm = f / peak, by / bandwidth
    return max(tc, tm), "memory" if tc > tm else "compute"


def gemm_time_elements(M, K, N, peak, bandwidth, bytes_per_elem=4):
    """Forgets bytes_per_elem in the memory time."""
    f, _ = _fb(M, K, N, bytes_per_elem)
    tc, tm = f / peak, (M * K + K * N + M * N) / bandwidth
    return max(tc, tm), "compute" if tc > tm else "memory"


def gemm_time_compute_only(M, K, N, peak, bandwidth, bytes_per_elem=4):
    """Assumes every GEMM is compute-bound."""
    f, _ = _fb(M, K, N, bytes_per_elem)
    return f / peak, "compute"




# --------------------------------------------------------------------------- stretch: the batch that reaches the ridge


def ridge_batch_small_m_approximation(K, N, peak, bandwidth, bytes_per_elem=2):
    """Uses I ≈ 2M/b (true only for M << K, N): M = ridge·b/2."""
    return max(1, math.ceil(peak / bandwidth * bytes_per_elem / 2))


def ridge_batch_floor(K, N, peak, bandwidth, bytes_per_elem=2):
    """Solves the inequality but rounds down."""
    r, b = peak / bandwidth, bytes_per_elem
    slope = 2 * K * N - r * b * (K + N)
    return None if slope <= 0 else max(1, math.floor(r * b * K * N / slope))


def ridge_batch_never_none(K, N, peak, bandwidth, bytes_per_elem=2):
    """Forgets the case where no batch reaches the ridge (a negative or zero bracket)."""
    r, b = peak / bandwidth, bytes_per_elem
    return math.ceil(r * b * K * N / (2 * K * N - r * b * (K + N)))


def ridge_batch_strict(K, N, peak, bandwidth, bytes_per_elem=2):
    """Wants the intensity strictly above the ridge, so a tie is not compute-bound."""
    r, b = peak / bandwidth, bytes_per_elem
    slope = 2 * K * N - r * b * (K + N)
    return None if slope <= 0 else math.floor(r * b * K * N / slope) + 1


def ridge_batch_no_output_bytes(K, N, peak, bandwidth, bytes_per_elem=2):
    """Leaves the output C[M,N] out of the bytes: M·(2KN - r·b·K) >= r·b·K·N."""
    r, b = peak / bandwidth, bytes_per_elem
    slope = 2 * K * N - r * b * K
    return None if slope <= 0 else max(1, math.ceil(r * b * K * N / slope))


MUTANTS = {
    "07.gemm_intensity": [
        intensity_no_factor_two,
        intensity_no_output,
        intensity_elements_not_bytes,
        intensity_inverted,
        intensity_batch_approximation,
    ],
    "07.attainable_flops": [
        attainable_max,
        attainable_always_peak,
        attainable_always_memory,
        attainable_divides,
        attainable_ridge_switch_wrong,
    ],
    "07.gemm_time": [
        gemm_time_sum,
        gemm_time_min,
        gemm_time_label_swapped,
        gemm_time_elements,
        gemm_time_compute_only,
    ],
    "07.ridge_batch": [
        ridge_batch_small_m_approximation,
        ridge_batch_floor,
        ridge_batch_never_none,
        ridge_batch_strict,
        ridge_batch_no_output_bytes,
    ],
}

#: mutant -> a phrase its verdict's hint must contain (tests/course/test_course_hints.py).
HINTS = {
    "ridge_batch_small_m_approximation": "2M/b holds only while M << K, N",
    "ridge_batch_floor": "round UP",
    "ridge_batch_never_none": "return None",
    "ridge_batch_strict": "counts as compute-bound (>=)",
    "ridge_batch_no_output_bytes": "rearrange",
}
