"""Device memory of a job: weights, optimizer states, KV cache and activations, and whether they fit.

Activation memory 34sbh + 5as²b bytes per layer (Korthikanti et al. 2022, Sec. 4.1);
mixed-precision Adam model states 16 bytes per parameter (Rajbhandari et al. 2020, ZeRO,
Sec. 3.1). Capacities are the catalog's ``mem_bytes`` (binary GiB for GPUs, see
:mod:`~minillm.hardware.devices`); figures print in GB = 1e9 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minillm.units import GB
from minillm.validate import check_int, check_number
from .devices import DeviceSpec, as_device
from .inference import dtype_and_bytes, kv_cache_bytes
from .shapes import as_shape, param_count

__all__ = ["activation_bytes_per_layer", "MemoryPlan", "inference_activation_bytes", "memory_plan", "min_devices"]


def activation_bytes_per_layer(shape, batch: int, seq_len: int, bytes_per_elem: float = 2) -> float:
    """Activations one block keeps for its backward pass: s·b·h·(34 + 5·a·s/h) bytes.

    Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
    Models", Sec. 4.1, for 16-bit activations without recompute (scaled here by
    bytes_per_elem / 2). It assumes d_ff = 4h and multi-head attention, so it is an
    approximation for gated or GQA models. The 5as²b term is the attention matrix,
    which FlashAttention never stores.
    """
    shape = as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    h, a = shape.d_model, shape.n_head
    return s * b * h * (34 + 5 * a * s / h) * (bytes_per_elem / 2)


@dataclass(frozen=True)
class MemoryPlan:
    """What one job needs in device memory, in bytes (GB = 1e9), and whether it fits.

    ``max_batch`` is the largest batch that fits at this context (0 if even the fixed
    part, weights and optimizer states, does not fit).
    """

    weights: float
    optimizer: float
    kv_cache: float
    activations: float
    total: float
    capacity: float
    fits: bool
    max_batch: int
    per_sample: float
    n_devices: int

    def as_gb(self) -> dict:
        """The byte fields in GB (1e9 bytes), for a table."""
        keys = ("weights", "optimizer", "kv_cache", "activations", "total", "capacity", "per_sample")
        return {k: getattr(self, k) / GB for k in keys}


def inference_activation_bytes(shape, batch: int, seq_len: int, bytes_per_elem: float = 2) -> float:
    """Live activations of one block while prefilling ``seq_len`` tokens, with a fused attention kernel.

    Only one block's activations are alive at a time during inference, and a fused
    (FlashAttention, Dao et al. 2022) kernel never writes the T x T attention matrix. What
    remains per token: the residual stream and its normalised copy (2D), the queries,
    keys and values (H·Q + 2K·Q) and the MLP hidden state (F, or 2F when gated).
    """
    shape = as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    up = (2 if shape.gated_mlp else 1) * shape.d_ff
    per_token = 2 * shape.d_model + shape.q_dim + 2 * shape.kv_dim + up
    return b * s * per_token * bytes_per_elem


_RECOMPUTE = ("none", "selective", "full")


def memory_plan(
    shape,
    device: DeviceSpec | str,
    batch: int,
    context: int,
    dtype: str | None = None,
    n_devices: int = 1,
    training: bool = False,
    recompute: str | bool = "none",
    kv_bytes_per_elem: float | None = None,
    usable_fraction: float = 1.0,
) -> MemoryPlan:
    """Weights, optimizer, KV cache and activations of a job; whether they fit on ``n_devices``.

    Inference (``training=False``): weights in ``dtype``, the KV cache for ``batch``
    sequences of ``context`` tokens, and one block's live activations while prefilling
    (:func:`inference_activation_bytes`).

    Training (``context`` is the sequence length): 16 bytes per parameter for
    mixed-precision Adam (2 weights + 2 gradients + 12 for fp32 master weights, momentum
    and variance; ZeRO, Sec. 3.1) and the activations every block keeps for its backward
    (Korthikanti et al. 2022): ``recompute="none"`` keeps 34sbh + 5as²b bytes per block,
    ``"selective"`` recomputes the attention matrix (34sbh), ``"full"`` keeps only each
    block's 2sbh-byte input (``True`` means "full"). No KV cache.

    Memory is pooled over the devices (perfect sharding); ``usable_fraction`` reserves
    room for the runtime, fragmentation and workspace.
    """
    shape, device = as_shape(shape), as_device(device)
    b = check_int("batch", batch)
    ctx = check_int("context", context)
    n = check_int("n_devices", n_devices)
    frac = check_number("usable_fraction", usable_fraction, strict=True)
    if frac > 1:
        raise ValueError(f"usable_fraction={frac} must be in (0, 1]")
    if isinstance(recompute, bool):
        recompute = "full" if recompute else "none"
    if recompute not in _RECOMPUTE:
        raise ValueError(f"recompute={recompute!r} must be one of {_RECOMPUTE}")
    dtype, wbytes, kvb = dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    P = param_count(shape)
    act_bpe = 2 if wbytes < 4 else 4  # activations stay in 16-bit unless the model runs in fp32
    if training:
        weights, optimizer = 4.0 * P, 12.0 * P  # fp16 weights + grads, then fp32 Adam states
        per_sample_kv = 0.0
        sbh = ctx * shape.d_model * (act_bpe / 2)  # Korthikanti's sbh for b = 1
        if recompute == "full":
            per_sample_act = 2.0 * sbh * shape.n_layer
        elif recompute == "selective":
            per_sample_act = 34.0 * sbh * shape.n_layer
        else:
            per_sample_act = shape.n_layer * activation_bytes_per_layer(shape, 1, ctx, act_bpe)
    else:
        weights, optimizer = float(P * wbytes), 0.0
        per_sample_kv = kv_cache_bytes(shape, ctx, 1, kvb)
        per_sample_act = inference_activation_bytes(shape, 1, ctx, act_bpe)
    per_sample = per_sample_kv + per_sample_act
    capacity = device.mem_bytes * n * frac
    fixed = weights + optimizer
    total = fixed + b * per_sample
    max_batch = max(0, math.floor((capacity - fixed) / per_sample)) if capacity > fixed else 0
    return MemoryPlan(
        weights=weights,
        optimizer=optimizer,
        kv_cache=b * per_sample_kv,
        activations=b * per_sample_act,
        total=total,
        capacity=capacity,
        fits=total <= capacity,
        max_batch=max_batch,
        per_sample=per_sample,
        n_devices=n,
    )


def min_devices(shape, device: DeviceSpec | str, batch: int, context: int, dtype: str | None = None, **kw) -> int:
    """The fewest devices whose pooled memory holds the job of :func:`memory_plan`."""
    one = memory_plan(shape, device, batch, context, dtype=dtype, n_devices=1, **kw)
    return max(1, math.ceil(one.total / one.capacity))
