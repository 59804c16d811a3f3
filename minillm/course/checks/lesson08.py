"""Checks of lesson 08, "CPU, GPU, FPGA and ASIC".

- ``08.ws_cycles`` against :func:`minillm.hardware.systolic.systolic_cycles`, whose closed
  form the stepped :class:`~minillm.hardware.systolic.SystolicArray` reproduces exactly
  (tests/hardware/test_hw_systolic.py). Cycle counts are integers: compared exactly.
- ``08.fpga_gemm_seconds`` against :func:`minillm.hardware.fpga.gemm` (compute time of a
  design with no memory limit), relative tolerance 1e-9 (float64 division only).
- ``08.cheapest_device`` against a reference selection over
  :func:`minillm.hardware.economics.cost_per_million_tokens`, exact (a device name).
"""

from __future__ import annotations

import math

from minillm.course.checks import CheckFailure, case_rng, describe, register

RTOL = 1e-9  # one float64 division in a different order: ~1e-16 relative; an off-by-one cycle is >= 1e-6 here


# --------------------------------------------------------------------------- weight-stationary cycles


def _ws(M: int, K: int, N: int, R: int, C: int, *, load: bool = True, ceil: bool = True, swap: bool = False, T=None) -> int:
    """The closed form and the variants typical mistakes produce (used only to name the mistake)."""
    S_R, S_C = (N, K) if swap else (K, N)
    div = (lambda a, b: -(-a // b)) if ceil else (lambda a, b: a // b)
    folds = div(S_R, R) * div(S_C, C)
    T = M if T is None else T
    return folds * ((2 * R if load else R) + C + T - 2)


def _ws_cases(seed: int) -> list[tuple[int, int, int, int, int]]:
    """(M, K, N, rows, cols): one fold, ragged tiles, TPU-sized arrays, a decode step, random shapes."""
    rng = case_rng(seed)
    cases = [
        (4, 4, 4, 4, 4),  # one fold, the docstring example: 14 cycles
        (2, 3, 4, 4, 4),  # smaller than the array: still a full pass
        (13, 9, 17, 8, 8),  # ragged in both K and N
        (1, 4096, 4096, 128, 128),  # one token through a 4096 x 4096 layer on a TPU-like MXU
        (2048, 4096, 4096, 128, 128),  # a 2048-token prefill of the same layer
        (30, 1, 1, 8, 8),
        (5, 20, 3, 4, 6),  # a non-square array
        (7, 6, 10, 3, 2),
    ]
    for _ in range(6):
        cases.append((rng.randint(1, 300), rng.randint(1, 300), rng.randint(1, 300), rng.randint(1, 64), rng.randint(1, 64)))
    return cases


@register(
    "08.ws_cycles",
    points=3,
    references=(
        "minillm.hardware.systolic.systolic_cycles",
        "minillm.hardware.systolic.systolic_folds",
        "minillm.hardware.systolic.systolic_utilization",
        "minillm.hardware.systolic.SystolicArray.matmul",
    ),
)
def check_ws_cycles(fn) -> None:
    """ws_cycles(M, K, N, rows, cols) -> cycles of A[M,K] @ B[K,N] on a weight-stationary array."""
    from minillm.hardware.systolic import systolic_cycles

    for M, K, N, R, C in _ws_cases(8):
        what = f"ws_cycles(M={M}, K={K}, N={N}, rows={R}, cols={C})"
        got = fn(M, K, N, R, C)
        if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:
            got = got.item()  # a 0-d numpy or torch integer is fine
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(
                f"{what} returned",
                got=describe(got) + (f" ({got!r})" if isinstance(got, float) else ""),
                expected="an int (a number of cycles)",
                hint="use math.ceil (or -(-a // b)) for the folds, so everything stays an int",
            )
        expected = systolic_cycles(M, K, N, R, C, "ws")
        assert expected == _ws(M, K, N, R, C)  # the check's own closed form agrees with minillm's
        if got != expected:
            mistakes = {
                "the weights must be shifted in first: each fold takes 2R + C + T - 2 cycles, R of them loading": _ws(M, K, N, R, C, load=False),
                "a ragged tile is still a fold: round the fold counts UP (ceil)": _ws(M, K, N, R, C, ceil=False),
                "weight-stationary maps K onto the array's rows and N onto its columns (S_R = K, S_C = N)": _ws(M, K, N, R, C, swap=True),
                "in weight-stationary the streamed dimension is T = M (rows of A), not K": _ws(M, K, N, R, C, T=K),
                "a problem larger than the array is cut into ceil(K/R)·ceil(N/C) folds, each a full pass": 2 * R + C + M - 2,
            }
            hint = next((h for h, v in mistakes.items() if v == got and v != expected), "folds = ceil(K/rows)·ceil(N/cols); each fold takes 2·rows + cols + M - 2 cycles")
            raise CheckFailure(f"{what} is", got=f"{got:,}", expected=f"{expected:,}", hint=hint)


# --------------------------------------------------------------------------- FPGA pipeline


def _fpga_reference(M, K, N, lanes, clock_hz, ii, depth) -> float:
    from minillm.hardware.fpga import FPGADesign, gemm

    design = FPGADesign("check", dsp=lanes, clock_hz=clock_hz, ops_per_dsp_per_cycle=2.0, initiation_interval=ii,
                        parallelism=lanes, pipeline_depth=depth)
    return gemm(design, M, K, N).compute_s


@register(
    "08.fpga_gemm_seconds",
    points=2,
    references=("minillm.hardware.fpga.gemm", "minillm.hardware.fpga._loop_cycles", "minillm.hardware.fpga.transformer_layer"),
)
def check_fpga_gemm_seconds(fn) -> None:
    """fpga_gemm_seconds(M, K, N, lanes, clock_hz, ii=1, depth=8) -> seconds of the pipelined MAC loop."""
    rng = case_rng(80)
    # (M, K, N, lanes, clock, II, depth): the U280 DPU (28,672 lanes at 300 MHz) on the teacher's
    # qkv GEMM and on a 4096-wide layer; a toy design with II = 2; ragged iteration counts;
    # a GEMM smaller than one iteration (only the pipeline depth remains).
    cases = [
        (256, 128, 384, 28672, 300e6, 1, 16),
        (1, 4096, 4096, 28672, 300e6, 1, 16),
        (16, 32, 8, 64, 100e6, 2, 10),
        (3, 5, 7, 8, 200e6, 1, 8),
        (2, 2, 2, 64, 250e6, 3, 4),
        (1, 1, 1, 1, 1e6, 1, 1),
    ]
    for _ in range(5):
        cases.append((rng.randint(1, 512), rng.randint(1, 512), rng.randint(1, 512), rng.choice([16, 100, 1024, 4096]),
                      rng.choice([150e6, 300e6, 450e6]), rng.randint(1, 4), rng.randint(1, 30)))
    for M, K, N, lanes, clock, ii, depth in cases:
        what = f"fpga_gemm_seconds(M={M}, K={K}, N={N}, lanes={lanes}, clock_hz={clock:g}, ii={ii}, depth={depth})"
        out = fn(M, K, N, lanes, clock, ii, depth)
        if hasattr(out, "item") and getattr(out, "ndim", 0) == 0:
            out = out.item()
        if isinstance(out, bool) or not isinstance(out, (int, float)):
            raise CheckFailure(f"{what} returned", got=describe(out), expected="a number of seconds")
        expected = _fpga_reference(M, K, N, lanes, clock, ii, depth)
        if not math.isclose(out, expected, rel_tol=RTOL):
            macs = M * K * N
            iters = -(-macs // lanes)
            mistakes = {
                "iterations = ceil(M·K·N / lanes): a partly filled last iteration still takes its cycles": (depth + (macs / lanes - 1) * ii) / clock,
                "the pipeline must fill first: add its depth (the first result appears after `depth` cycles)": iters * ii / clock,
                "latency = depth + (iterations - 1)·II: the first iteration is already counted in the depth": (depth + iters * ii) / clock,
                "one lane does one MAC (not one FLOP) per II cycles: iterations = ceil(M·K·N / lanes)": (depth + (-(-2 * macs // lanes) - 1) * ii) / clock,
                "cycles become seconds by dividing by the clock": depth + (iters - 1) * ii,
                "II multiplies only the iterations after the first, not the depth": (depth + (iters - 1)) * ii / clock,
            }
            hint = next(
                (h for h, v in mistakes.items() if math.isclose(out, v, rel_tol=RTOL) and not math.isclose(v, expected, rel_tol=RTOL)),
                "cycles = depth + (ceil(M·K·N / lanes) - 1)·ii; seconds = cycles / clock_hz",
            )
            raise CheckFailure(f"{what} is", got=f"{out:.6g} s", expected=f"{expected:.6g} s", hint=hint)


# --------------------------------------------------------------------------- device choice


def _cheapest(model, devices, batch, context, max_step_s):
    from minillm.hardware.economics import cost_per_million_tokens

    rows = [cost_per_million_tokens(model, d, batch=batch, context=context) for d in devices]
    ok = [r for r in rows if r["usd_per_million"] is not None and r["step_s"] <= max_step_s]
    return (min(ok, key=lambda r: r["usd_per_million"])["device"] if ok else None), rows


@register("08.cheapest_device", points=2, references=())
def check_cheapest_device(fn) -> None:
    """cheapest_device(model, devices, batch, context, max_step_s) -> catalog name of the cheapest device that meets the deadline, or None."""
    from minillm.hardware import get_device
    from minillm.hardware.shapes import from_config
    from minillm.presets import TEACHER

    teacher = from_config(TEACHER, name="teacher")
    gpus_tpus = ["h100", "a100", "tpu-v5e", "xeon-8480"]
    everything = ["groq-lpu", "alveo-u280", "xeon-8480", "tpu-v6e", "tpu-v5p", "tpu-v5e", "tpu-v4", "b200", "h200", "h100", "a100"]
    # (model, devices, batch, context, deadline): a loose deadline, where the cheapest is not the
    # fastest; a tight one that rules the cheapest out; one only a device without a price meets;
    # an impossible one; the whole catalog, with devices that have no price.
    cases = [
        ("llama2-7b", gpus_tpus, 1, 1024, 1.0),
        ("llama2-7b", gpus_tpus, 1, 1024, 0.005),
        ("llama2-7b", ["tpu-v5e", "a100", "h100"], 1, 1024, 0.02),
        ("llama3-70b", everything, 32, 2048, 0.5),
        ("llama3-70b", everything, 32, 2048, 0.017),
        ("llama3-70b", ["groq-lpu", "h100", "a100"], 1, 1024, 1e-4),
        ("llama2-7b", gpus_tpus, 1, 1024, 1e-6),
        ("gpt2-124m", ["xeon-8480", "tpu-v5e", "tpu-v6e"], 32, 2048, 0.005),
        (teacher, ["xeon-8480", "tpu-v5e", "h100"], 64, 256, 1e-3),
    ]
    # The boundary: the deadline is exactly the step time of the device that should win, so
    # "step_s < max_step_s" drops it and only "<=" keeps it.
    exact = _cheapest("llama2-7b", gpus_tpus, 1, 1024, math.inf)[0]
    exact_step = next(r["step_s"] for r in _cheapest("llama2-7b", gpus_tpus, 1, 1024, math.inf)[1] if r["device"] == exact)
    cases.append(("llama2-7b", gpus_tpus, 1, 1024, exact_step))
    # Drawn cases: a random model, catalog subset, batch and context; the deadline near a random device's step time.
    rng = case_rng(161)
    for _ in range(3):
        model = rng.choice(["gpt2-124m", "llama2-7b", "llama3-70b"])
        devices = rng.sample(everything, rng.randint(2, 6))
        batch, context = rng.choice([1, 2, 4, 8, 16, 32, 64]), rng.choice([256, 512, 1024, 2048, 4096])
        step = rng.choice(_cheapest(model, devices, batch, context, math.inf)[1])["step_s"]
        cases.append((model, devices, batch, context, step * rng.uniform(0.8, 1.6)))
    for model, devices, batch, context, deadline in cases:
        name = model if isinstance(model, str) else model.name
        what = f"cheapest_device({name!r}, {devices}, batch={batch}, context={context}, max_step_s={deadline!r})"
        got = fn(model, list(devices), batch, context, deadline)
        expected, rows = _cheapest(model, devices, batch, context, deadline)
        if hasattr(got, "name") and not isinstance(got, str):
            got = got.name  # a DeviceSpec is fine too
        if got is not None and not isinstance(got, str):
            raise CheckFailure(f"{what} returned", got=describe(got), expected="a device name (str) or None")
        if isinstance(got, str):
            try:
                got = get_device(got).name  # accept aliases such as "h100"
            except ValueError:
                raise CheckFailure(f"{what} returned", got=repr(got), expected=repr(expected),
                                   hint="return the 'device' field of the chosen row") from None
        if got != expected:
            at_deadline = [r["device"] for r in rows if r["step_s"] == deadline]
            meets = [r for r in rows if r["step_s"] <= deadline]
            priced = [r for r in rows if r["usd_per_million"] is not None]
            if expected in at_deadline:
                hint = (f"{expected} takes exactly max_step_s: a step that finishes ON the deadline meets it, "
                        "so keep devices with step_s <= max_step_s (not <)")
            elif expected is None and meets:
                hint = "the devices that meet the deadline have no public price: with nothing to compare, return None"
            elif expected is None:
                hint = "no device meets the deadline: return None"
            elif got is not None and got not in [r["device"] for r in meets]:
                hint = f"{got} misses the deadline: keep only devices whose step_s <= max_step_s"
            elif priced and got == min(priced, key=lambda r: r["usd_per_hour"])["device"]:
                hint = "compare dollars per million tokens, not the hourly price: a cheap slow chip can cost more per token"
            elif got is not None and got == min(meets, key=lambda r: r["step_s"])["device"]:
                hint = "among the devices that meet the deadline, pick the one with the lowest usd_per_million, not the fastest"
            else:
                hint = "filter by step_s <= max_step_s and a known usd_per_million, then take the lowest usd_per_million"
            raise CheckFailure(f"{what} is", got=repr(got), expected=repr(expected), hint=hint)


# --------------------------------------------------------------------------- stretch: output-stationary cycles


def _os_variant(M: int, K: int, N: int, R: int, C: int, mapping: tuple[str, str, str], ceil: bool = True) -> int:
    """Cycles with (S_R, S_C, T) taken from ``mapping`` (names of M, K, N): the right one and the mistakes."""
    size = {"M": M, "K": K, "N": N}
    S_R, S_C, T = (size[d] for d in mapping)
    div = (lambda a, b: -(-a // b)) if ceil else (lambda a, b: a // b)
    return div(S_R, R) * div(S_C, C) * (2 * R + C + T - 2)


@register(
    "08.os_cycles",
    points=2,
    references=(
        "minillm.hardware.systolic.systolic_cycles",
        "minillm.hardware.systolic.systolic_mapping",
        "minillm.hardware.systolic.systolic_folds",
        "minillm.hardware.systolic.SystolicArray.matmul",
    ),
)
def check_os_cycles(fn) -> None:
    """os_cycles(M, K, N, rows, cols) -> cycles of A[M,K] @ B[K,N] on an output-stationary array."""
    from minillm.hardware.systolic import systolic_cycles

    # Shapes where M, K and N all differ, so every wrong mapping gives a different count.
    for M, K, N, R, C in [(5, 4, 4, 4, 4), (13, 9, 17, 8, 8), (1, 4096, 4096, 128, 128), (300, 40, 70, 16, 32)] + _ws_cases(81)[6:]:
        what = f"os_cycles(M={M}, K={K}, N={N}, rows={R}, cols={C})"
        got = fn(M, K, N, R, C)
        if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(f"{what} returned", got=describe(got), expected="an int (a number of cycles)",
                               hint="use math.ceil (or -(-a // b)) for the folds, so everything stays an int")
        expected = systolic_cycles(M, K, N, R, C, "os")
        assert expected == _os_variant(M, K, N, R, C, ("M", "N", "K"))
        if got != expected:
            mistakes = {
                "that is the weight-stationary count: here the OUTPUTS stay put, so the array's rows and columns "
                "cover the output's M rows and N columns, and time runs over K": ("K", "N", "M"),
                "that is input-stationary's mapping: output-stationary keeps C[M,N] in the cells": ("K", "M", "N"),
                "each cell accumulates one output C[i, j] over k = 0..K-1, one product per cycle: time is K, not M": ("M", "N", "M"),
                "rows of the array hold rows of the output (M) and columns hold its columns (N), not the other way": ("N", "M", "K"),
            }
            hint = next((h for h, m in mistakes.items() if _os_variant(M, K, N, R, C, m) == got and got != expected), None)
            if hint is None and got == 2 * R + C + K - 2:
                hint = "an output larger than the array is cut into tiles of rows x cols outputs, each a full pass"
            if hint is None and got == _os_variant(M, K, N, R, C, ("M", "N", "K"), ceil=False):
                hint = "a ragged tile of outputs is still a fold: round the fold counts UP"
            raise CheckFailure(f"{what} is", got=f"{got:,}", expected=f"{expected:,}",
                               hint=hint or "which sizes of the problem do the array's rows, its columns and time cover?")
