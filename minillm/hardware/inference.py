"""Inference on the roofline: the KV cache, prefill and decode step times, and the decode knee.

A decode step streams every weight once for the whole batch plus each sequence's KV
cache, so it is memory-bound until the batch is large (the scaling book, Part 7:
step >= (weight bytes + KV bytes) / bandwidth); a prefill is compute-bound. Units:
seconds, bytes, FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minillm.validate import check_int, check_number
from .devices import DTYPE_BYTES, DeviceSpec, as_device
from .roofline import op_time
from .shapes import as_shape, matmul_params

__all__ = [
    "kv_cache_bytes",
    "StepTime",
    "prefill_time",
    "decode_step_time",
    "DEFAULT_BATCHES",
    "decode_knee_batch",
    "decode_knee_context",
    "dtype_and_bytes",
]


def kv_cache_bytes(shape, seq_len: int, batch: int = 1, bytes_per_elem: float = 2) -> float:
    """Bytes of the key/value cache: 2 · L · K · Q · seq_len · batch · bytes_per_elem.

    K is the number of *key/value* heads, so grouped-query attention shrinks the cache by
    H/K. Llama-2-70B (80 layers, 8 KV heads of 128) in bf16: 2·80·8·128·2 = 327,680 bytes
    per token.
    """
    shape = as_shape(shape)
    T = check_int("seq_len", seq_len, minimum=0)
    b = check_int("batch", batch)
    bpe = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    return 2.0 * shape.n_layer * shape.n_kv_head * shape.head_dim * T * b * bpe


@dataclass(frozen=True)
class StepTime:
    """A roofline estimate of one inference step (a prefill or one decode step).

    ``seconds`` = max(compute_s, memory_s): the lower bound when compute and memory
    traffic overlap perfectly. ``tokens`` is how many tokens the step produces or reads in.
    """

    seconds: float
    compute_s: float
    memory_s: float
    flops: float
    nbytes: float
    bound: str
    tokens: int
    n_devices: int
    dtype: str

    @property
    def intensity(self) -> float:
        """FLOP/byte of the whole step."""
        return self.flops / self.nbytes

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def dtype_and_bytes(device: DeviceSpec, dtype: str | None, kv_bytes_per_elem: float | None) -> tuple[str, int, float]:
    """(dtype, bytes per weight, bytes per KV-cache element) of a job; dtype None means the device's usual one."""
    dtype = device.default_dtype() if dtype is None else dtype
    device.peak(dtype)  # raises a clear error for a dtype the device lacks
    wbytes = DTYPE_BYTES[dtype]
    # The KV cache usually stays in 16-bit even when weights are int8 or fp8.
    kvb = (4 if wbytes == 4 else 2) if kv_bytes_per_elem is None else kv_bytes_per_elem
    return dtype, wbytes, check_number("kv_bytes_per_elem", kvb, strict=True)


def _step(flops, nbytes, device, dtype, n_devices, tokens) -> StepTime:
    n = check_int("n_devices", n_devices)
    # n devices split the work evenly (ideal tensor parallelism; communication ignored).
    seconds, bound = op_time(flops / n, nbytes / n, device, dtype)
    return StepTime(
        seconds=seconds,
        compute_s=flops / n / device.peak(dtype),
        memory_s=nbytes / n / device.mem_bw,
        flops=flops,
        nbytes=nbytes,
        bound=bound,
        tokens=tokens,
        n_devices=n,
        dtype=dtype,
    )


def prefill_time(
    shape,
    device: DeviceSpec | str,
    prompt_len: int,
    batch: int = 1,
    dtype: str | None = None,
    n_devices: int = 1,
    kv_bytes_per_elem: float | None = None,
) -> StepTime:
    """Roofline bound on processing a prompt of ``prompt_len`` tokens for ``batch`` sequences.

    FLOPs = batch·T·(2N + 4·L·H·Q·T), N = :func:`matmul_params`: the forward third of PaLM's count, with every token
    attending over the whole prompt (a causal kernel can skip about half of the attention
    term). Bytes = the weights, read once, plus the KV cache written. Activations are
    assumed to stay on chip (fused kernels). Prefill is compute-bound for any real prompt.
    """
    shape, device = as_shape(shape), as_device(device)
    T, b = check_int("prompt_len", prompt_len), check_int("batch", batch)
    dtype, wbytes, kvb = dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops = b * T * (2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * T)
    nbytes = N * wbytes + kv_cache_bytes(shape, T, b, kvb)
    return _step(flops, nbytes, device, dtype, n_devices, b * T)


def decode_step_time(
    shape,
    device: DeviceSpec | str,
    context: int,
    batch: int = 1,
    dtype: str | None = None,
    n_devices: int = 1,
    kv_bytes_per_elem: float | None = None,
) -> StepTime:
    """Roofline bound on one decode step: ``batch`` new tokens, each attending to ``context`` cached ones.

    FLOPs = batch·(2N + 4·L·H·Q·context), N = :func:`matmul_params`. Bytes = every such
    weight once (shared by the batch) plus every sequence's KV cache: the scaling book's
    step >= (param bytes + batch x KV bytes) / bandwidth. At batch 1 the intensity is
    about 2N FLOPs / (N x bytes_per_weight) = 1 FLOP/byte in bf16, far left of any ridge:
    decoding is memory-bound until the batch is in the hundreds.
    """
    shape, device = as_shape(shape), as_device(device)
    ctx, b = check_int("context", context, minimum=0), check_int("batch", batch)
    dtype, wbytes, kvb = dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops = b * (2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * ctx)
    nbytes = N * wbytes + kv_cache_bytes(shape, ctx, b, kvb)
    return _step(flops, nbytes, device, dtype, n_devices, b)


#: The batch sizes a decode sweep visits by default: powers of two up to 4096.
DEFAULT_BATCHES: tuple[int, ...] = tuple(2**k for k in range(13))


def decode_knee_batch(
    shape,
    device: DeviceSpec | str,
    context: int,
    dtype: str | None = None,
    kv_bytes_per_elem: float | None = None,
) -> int | None:
    """The smallest batch at which a decode step at ``context`` turns compute-bound; None if none does.

    A decode step of batch b does b·F FLOPs and moves W + b·C bytes, with F = 2N + 4·L·H·Q·context,
    W the weight bytes and C one sequence's KV cache (:func:`decode_step_time`). It is
    compute-bound once b·F/peak >= (W + b·C)/bw, that is b >= (W/bw) / (F/peak - C/bw).
    With an empty cache the knee is b = ridge x bytes_per_weight / 2, about the ridge point in
    bf16 (the scaling book, Part 7: "batch > ~240" on TPU v5e). When one sequence's KV bytes take
    longer to read than its FLOPs take to compute (C/bw >= F/peak: long contexts, little or no
    GQA) no batch is compute-bound, and the answer is None. The device count cancels out.
    """
    shape, device = as_shape(shape), as_device(device)
    ctx = check_int("context", context, minimum=0)
    dtype, wbytes, kvb = dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    N = matmul_params(shape)
    flops_per_seq = 2.0 * N + 4.0 * shape.n_layer * shape.n_head * shape.head_dim * ctx
    kv_per_seq = kv_cache_bytes(shape, ctx, 1, kvb)
    slope = flops_per_seq / device.peak(dtype) - kv_per_seq / device.mem_bw  # seconds gained per extra sequence
    if slope <= 0:
        return None
    b = max(1, math.ceil(N * wbytes / device.mem_bw / slope))

    def bound(k: int) -> str:
        return decode_step_time(shape, device, ctx, batch=k, dtype=dtype, kv_bytes_per_elem=kvb).bound

    # The closed form can land one off through float rounding; settle it with the step's own verdict.
    while b > 1 and bound(b - 1) == "compute":
        b -= 1
    while bound(b) != "compute":
        b += 1
    return b


def decode_knee_context(
    shape,
    device: DeviceSpec | str,
    dtype: str | None = None,
    kv_bytes_per_elem: float | None = None,
) -> int | None:
    """The longest context at which some batch still turns a decode step compute-bound; None if every context does.

    :func:`decode_knee_batch` has a knee while one sequence adds more compute time than memory
    time: F/peak > C/bw, with F = 2N + 4·L·H·Q·ctx FLOPs and C = 2·L·K·Q·ctx·kvb bytes. Both grow
    with the context, so ctx·(2·L·K·Q·kvb/bw - 4·L·H·Q/peak) < 2N/peak. Each cached token brings
    4·L·H·Q FLOPs and 2·L·K·Q·kvb bytes, an intensity of 2H/(K·kvb) FLOP/byte (H/K in bf16); if
    that reaches the ridge point, the bracket is not positive and every context has a knee (None).
    Otherwise the answer is the largest whole context below 2N/peak over the bracket.
    """
    shape, device = as_shape(shape), as_device(device)
    dtype, _, kvb = dtype_and_bytes(device, dtype, kv_bytes_per_elem)
    peak, bw = device.peak(dtype), device.mem_bw
    N = matmul_params(shape)
    L, H, K, Q = shape.n_layer, shape.n_head, shape.n_kv_head, shape.head_dim
    bracket = 2.0 * L * K * Q * kvb / bw - 4.0 * L * H * Q / peak  # seconds lost per cached token per sequence
    if bracket <= 0:
        return None
    ctx = max(0, math.ceil(2.0 * N / peak / bracket) - 1)

    def has_knee(c: int) -> bool:
        return decode_knee_batch(shape, device, c, dtype=dtype, kv_bytes_per_elem=kvb) is not None

    # The closed form can land one off through float rounding; settle it with decode_knee_batch itself.
    while ctx > 0 and not has_knee(ctx):
        ctx -= 1
    while has_knee(ctx + 1):
        ctx += 1
    return ctx
