"""Serving views: one inference step as a roofline point with its memory and cost, and batch sweeps.

These compose :mod:`~minillm.hardware.inference`, :mod:`~minillm.hardware.memory` and
:mod:`~minillm.hardware.economics` into the plain dicts that lessons 07 and 09 tabulate,
plot and drive widgets with. Units: seconds, FLOP/byte, GB = 1e9 bytes, US dollars, kWh.
"""

from __future__ import annotations

from minillm.units import GB
from minillm.validate import check_int
from .devices import DeviceSpec, as_device
from .economics import cost_dollars, energy_joules
from .inference import DEFAULT_BATCHES, decode_knee_batch, decode_step_time, prefill_time
from .memory import memory_plan, min_devices
from .roofline import Op, attainable_flops, ridge_point
from .shapes import as_shape

__all__ = ["PHASES", "workload_point", "serving_summary", "decode_batch_sweep", "serving_view"]

#: The two kinds of inference step: "decode" generates tokens, "prefill" reads a prompt.
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
    """One LLM inference step as a point on a device's roofline, with its memory and cost.

    ``model`` is a :class:`~minillm.hardware.shapes.ModelShape`, a preset name or a GPTConfig.
    ``phase="decode"``: one step that generates ``batch`` tokens, each attending to
    ``context`` cached ones (:func:`~minillm.hardware.inference.decode_step_time`);
    ``phase="prefill"``: ``batch`` prompts of ``context`` tokens
    (:func:`~minillm.hardware.inference.prefill_time`). ``n_devices`` defaults to the fewest
    that hold the weights and KV cache; work is split evenly, so the point (per device)
    has the same intensity on any number of devices and only the time shrinks.

    Returns a flat dict: ``model, device, dtype, phase, batch, context, n_devices, flops``
    and ``bytes`` (per device), ``intensity`` (FLOP/byte), ``ridge``, ``attainable_flops``
    (the roof at that intensity), ``step_s``, ``compute_s``, ``memory_s``, ``bound``,
    ``tokens_per_s``, ``memory_gb`` and ``capacity_gb`` (GB = 1e9 bytes), ``fits``,
    ``max_batch`` (the largest batch that fits at this context), ``usd_per_million`` and
    ``kwh_per_million`` (per million tokens this phase produces or reads; None without a
    price or TDP), and for plotting ``spec`` (the DeviceSpec) and ``op`` (an :class:`Op`).
    """
    shape, device = as_shape(model), as_device(device)
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
    seconds_per_million = 1e6 / step.tokens * step.seconds  # as cost_per_million_tokens counts it
    joules = energy_joules(seconds_per_million, device, n) if device.tdp_w is not None else None
    usd = cost_dollars(seconds_per_million, device, n) if device.usd_per_hour is not None else None
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
        "memory_gb": plan.total / GB,
        "capacity_gb": plan.capacity / GB,
        "fits": plan.fits,
        "max_batch": plan.max_batch,
        "usd_per_million": usd,
        "kwh_per_million": None if joules is None else joules / 3.6e6,
        "spec": device,
        "op": Op(f"{phase}, batch {b}, context {ctx}", flops, nbytes),
    }


def serving_summary(
    shape, device: DeviceSpec | str, batch: int = 1, context: int = 1024, dtype: str | None = None, n_devices: int | None = None
) -> dict:
    """:func:`workload_point` of a decode step (the name lesson 09 and older code use)."""
    return workload_point(shape, device, batch, context, phase="decode", dtype=dtype, n_devices=n_devices)


def decode_batch_sweep(
    shape,
    device: DeviceSpec | str,
    context: int,
    batches=None,
    dtype: str | None = None,
    n_devices: int = 1,
) -> list[dict]:
    """A decode step at each batch size on ``n_devices``: roofline time, throughput and memory.

    One dict per batch (default :data:`DEFAULT_BATCHES`) with ``batch``, ``step_s``,
    ``compute_s``, ``memory_s``, ``bound``, ``intensity`` (FLOP/byte), ``tokens_per_s``
    (batch / step), ``memory_gb`` (weights + KV cache + activations, GB = 1e9 bytes, from
    :func:`memory_plan`) and ``fits``. Plot ``tokens_per_s`` against ``batch`` to see the
    knee where weight reads stop dominating.
    """
    shape, device = as_shape(shape), as_device(device)
    batches = DEFAULT_BATCHES if batches is None else batches
    rows = []
    for b in batches:
        step = decode_step_time(shape, device, context, batch=b, dtype=dtype, n_devices=n_devices)
        plan = memory_plan(shape, device, b, max(context, 1), dtype=step.dtype, n_devices=n_devices)
        rows.append(
            {
                "batch": step.tokens,
                "step_s": step.seconds,
                "compute_s": step.compute_s,
                "memory_s": step.memory_s,
                "bound": step.bound,
                "intensity": step.intensity,
                "tokens_per_s": step.tokens_per_s,
                "memory_gb": plan.total / GB,
                "fits": plan.fits,
            }
        )
    return rows


def serving_view(
    shape,
    device: DeviceSpec | str,
    batch: int = 1,
    context: int = 1024,
    dtype: str | None = None,
    n_devices: int | None = None,
    batches=None,
) -> dict:
    """The data behind lesson 09's serving widget, for one (model, device, batch, context) point.

    ``summary``: :func:`serving_summary` (step time, bound, memory, cost per million tokens);
    ``memory_gb``: the memory plan split into weights, KV cache and activations, and the
    capacity (GB = 1e9 bytes); ``sweep``: :func:`decode_batch_sweep` over ``batches`` on the
    same devices; ``knee``: :func:`decode_knee_batch` (None if decode never turns
    compute-bound at this context). ``n_devices`` defaults to the fewest that hold the job.
    """
    shape, device = as_shape(shape), as_device(device)
    dtype = device.default_dtype() if dtype is None else dtype
    if n_devices is None:
        n_devices = min_devices(shape, device, batch, context, dtype=dtype)
    summary = serving_summary(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    plan = memory_plan(shape, device, batch, context, dtype=dtype, n_devices=n_devices)
    return {
        "summary": summary,
        "memory_gb": {k: v for k, v in plan.as_gb().items() if k in ("weights", "kv_cache", "activations", "capacity")},
        "sweep": decode_batch_sweep(shape, device, context, batches, dtype=dtype, n_devices=n_devices),
        "knee": decode_knee_batch(shape, device, context, dtype=dtype),
    }
