"""Wrong answers to lesson 08's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

# --------------------------------------------------------------------------- weight-stationary cycles


def ws_no_load(M, K, N, rows, cols):
    """Forgets the R cycles that shift the weights in."""
    return math.ceil(K / rows) * math.ceil(N / cols) * (rows + cols + M - 2)


def ws_floor_folds(M, K, N, rows, cols):
    """Counts folds with floor division, dropping ragged tiles."""
    return (K // rows) * (N // cols) * (2 * rows + cols + M - 2)


def ws_swapped_mapping(M, K, N, rows, cols):
    """Maps N onto the rows and K onto the columns."""
    return math.ceil(N / rows) * math.ceil(K / cols) * (2 * rows + cols + M - 2)


def ws_streams_k(M, K, N, rows, cols):
    """Streams K (the output-stationary T) instead of M."""
    return math.ceil(K / rows) * math.ceil(N / cols) * (2 * rows + cols + K - 2)


def ws_one_fold(M, K, N, rows, cols):
    """Ignores folding: one pass whatever the problem size."""
    return 2 * rows + cols + M - 2


def ws_float(M, K, N, rows, cols):
    """Right value, returned as a float."""
    return float(math.ceil(K / rows) * math.ceil(N / cols) * (2 * rows + cols + M - 2))


# --------------------------------------------------------------------------- FPGA pipeline


def fpga_no_ceil(M, K, N, lanes, clock_hz, ii=1, depth=8):
    """Lets the last iteration be fractional."""
    return (depth + (M * K * N / lanes - 1) * ii) / clock_hz


def fpga_no_depth(M, K, N, lanes, clock_hz, ii=1, depth=8):
    """Forgets the pipeline fill."""
    return math.ceil(M * K * N / lanes) * ii / clock_hz


def fpga_off_by_one(M, K, N, lanes, clock_hz, ii=1, depth=8):
    """depth + iterations·II: counts the first iteration twice."""
    return (depth + math.ceil(M * K * N / lanes) * ii) / clock_hz


def fpga_counts_flops(M, K, N, lanes, clock_hz, ii=1, depth=8):
    """Spreads 2·M·K·N FLOPs (not MACs) over the lanes."""
    return (depth + (math.ceil(2 * M * K * N / lanes) - 1) * ii) / clock_hz


def fpga_cycles(M, K, N, lanes, clock_hz, ii=1, depth=8):
    """Returns cycles, not seconds."""
    return depth + (math.ceil(M * K * N / lanes) - 1) * ii


# --------------------------------------------------------------------------- device choice


def _rows(model, devices, batch, context):
    from minillm.hardware.economics import cost_per_million_tokens

    return [cost_per_million_tokens(model, d, batch=batch, context=context) for d in devices]


def cheapest_ignores_deadline(model, devices, batch, context, max_step_s):
    """Picks the cheapest device whether or not it meets the deadline."""
    rows = [r for r in _rows(model, devices, batch, context) if r["usd_per_million"] is not None]
    return min(rows, key=lambda r: r["usd_per_million"])["device"] if rows else None


def cheapest_fastest(model, devices, batch, context, max_step_s):
    """Picks the fastest device that meets the deadline."""
    rows = [r for r in _rows(model, devices, batch, context) if r["step_s"] <= max_step_s and r["usd_per_million"] is not None]
    return min(rows, key=lambda r: r["step_s"])["device"] if rows else None


def cheapest_hourly_price(model, devices, batch, context, max_step_s):
    """Compares the hourly rental price instead of dollars per million tokens."""
    rows = [r for r in _rows(model, devices, batch, context) if r["step_s"] <= max_step_s and r["usd_per_hour"] is not None]
    return min(rows, key=lambda r: r["usd_per_hour"])["device"] if rows else None


def cheapest_first_that_fits(model, devices, batch, context, max_step_s):
    """Returns the first device in the list that meets the deadline."""
    for r in _rows(model, devices, batch, context):
        if r["step_s"] <= max_step_s and r["usd_per_million"] is not None:
            return r["device"]
    return None


def cheapest_no_price_check(model, devices, batch, context, max_step_s):
    """Forgets that some devices have no price (None), so min() fails on them."""
    rows = [r for r in _rows(model, devices, batch, context) if r["step_s"] <= max_step_s]
    return min(rows, key=lambda r: r["usd_per_million"])["device"] if rows else None


def cheapest_strict_deadline(model, devices, batch, context, max_step_s):
    """Keeps only devices strictly faster than the deadline (< instead of <=)."""
    rows = [r for r in _rows(model, devices, batch, context) if r["step_s"] < max_step_s and r["usd_per_million"] is not None]
    return min(rows, key=lambda r: r["usd_per_million"])["device"] if rows else None


# --------------------------------------------------------------------------- stretch: output-stationary cycles


def _os(M, K, N, rows, cols, S_R, S_C, T):
    return math.ceil(S_R / rows) * math.ceil(S_C / cols) * (2 * rows + cols + T - 2)


def os_as_weight_stationary(M, K, N, rows, cols):
    """Reuses the weight-stationary mapping (S_R = K, S_C = N, T = M)."""
    return _os(M, K, N, rows, cols, K, N, M)


def os_streams_m(M, K, N, rows, cols):
    """Maps the output onto the array but streams M instead of K."""
    return _os(M, K, N, rows, cols, M, N, M)


def os_swapped(M, K, N, rows, cols):
    """Puts the output's columns on the array's rows and its rows on the columns."""
    return _os(M, K, N, rows, cols, N, M, K)


def os_input_stationary(M, K, N, rows, cols):
    """Uses input-stationary's mapping (S_R = K, S_C = M, T = N)."""
    return _os(M, K, N, rows, cols, K, M, N)


def os_one_fold(M, K, N, rows, cols):
    """Ignores folding: one pass of 2R + C + K - 2 cycles whatever the output's size."""
    return 2 * rows + cols + K - 2



MUTANTS = {
    "08.ws_cycles": [ws_no_load, ws_floor_folds, ws_swapped_mapping, ws_streams_k, ws_one_fold, ws_float],
    "08.fpga_gemm_seconds": [fpga_no_ceil, fpga_no_depth, fpga_off_by_one, fpga_counts_flops, fpga_cycles],
    "08.cheapest_device": [
        cheapest_ignores_deadline,
        cheapest_fastest,
        cheapest_hourly_price,
        cheapest_first_that_fits,
        cheapest_no_price_check,
        cheapest_strict_deadline,
    ],
    "08.os_cycles": [os_as_weight_stationary, os_streams_m, os_swapped, os_input_stationary, os_one_fold],
}

#: mutant -> a phrase its verdict's hint must contain (tests/course/test_course_hints.py).
HINTS = {
    "cheapest_strict_deadline": "step_s <= max_step_s (not <)",
    "os_as_weight_stationary": "weight-stationary count",
    "os_streams_m": "time is K, not M",
    "os_swapped": "not the other way",
    "os_input_stationary": "input-stationary's mapping",
    "os_one_fold": "each a full pass",
}
