"""Wrong answers to lesson 07's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

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
}
