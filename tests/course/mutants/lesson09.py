"""Wrong answers to lesson 09's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import math

from minillm.hardware.inference import kv_cache_bytes as _kv
from minillm.hardware.memory import inference_activation_bytes
from minillm.hardware.shapes import matmul_params, param_count

# --------------------------------------------------------------------------- KV-cache bytes


def kv_uses_query_heads(shape, seq_len, batch=1, bytes_per_elem=2):
    """Caches every query head (ignores grouped-query attention)."""
    return 2 * shape.n_layer * shape.n_head * shape.head_dim * seq_len * batch * bytes_per_elem


def kv_forgets_values(shape, seq_len, batch=1, bytes_per_elem=2):
    """Counts the keys only (no factor 2)."""
    return shape.n_layer * shape.n_kv_head * shape.head_dim * seq_len * batch * bytes_per_elem


def kv_head_dim_from_d_model(shape, seq_len, batch=1, bytes_per_elem=2):
    """Takes the head width as d_model // n_head (wrong for PaLM's 256-wide heads)."""
    return 2 * shape.n_layer * shape.n_kv_head * (shape.d_model // shape.n_head) * seq_len * batch * bytes_per_elem


def kv_counts_elements(shape, seq_len, batch=1, bytes_per_elem=2):
    """Returns elements, not bytes."""
    return 2 * shape.n_layer * shape.n_kv_head * shape.head_dim * seq_len * batch


def kv_forgets_batch(shape, seq_len, batch=1, bytes_per_elem=2):
    """One cache for the whole batch."""
    return 2 * shape.n_layer * shape.n_kv_head * shape.head_dim * seq_len * bytes_per_elem


def kv_fp32_default(shape, seq_len, batch=1, bytes_per_elem=4):
    """Right formula, but defaults to 4 bytes per element."""
    return 2 * shape.n_layer * shape.n_kv_head * shape.head_dim * seq_len * batch * bytes_per_elem


# --------------------------------------------------------------------------- MFU


def mfu_no_attention(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total):
    """6N only: leaves out PaLM's attention term."""
    return 6 * n_params * tokens_per_s / peak_flops_total


def mfu_forward_only(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total):
    """2N per token, as if inference."""
    return (2 * n_params + 12 * n_layer * n_head * head_dim * seq_len) * tokens_per_s / peak_flops_total


def mfu_percent(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total):
    """Returns a percentage."""
    return 100 * (6 * n_params + 12 * n_layer * n_head * head_dim * seq_len) * tokens_per_s / peak_flops_total


def mfu_half_attention(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total):
    """6·L·H·Q·T for the attention (forgets one of the two matmuls)."""
    return (6 * n_params + 6 * n_layer * n_head * head_dim * seq_len) * tokens_per_s / peak_flops_total


def mfu_quadratic_attention(tokens_per_s, n_params, n_layer, n_head, head_dim, seq_len, peak_flops_total):
    """Attention per token grows with T², not T."""
    return (6 * n_params + 12 * n_layer * n_head * head_dim * seq_len**2) * tokens_per_s / peak_flops_total


# --------------------------------------------------------------------------- training days


def days_in_seconds(n_params, n_tokens, n_devices, flops_per_device, recompute=False):
    """Returns seconds."""
    return (8 if recompute else 6) * n_params * n_tokens / (n_devices * flops_per_device)


def days_ignores_recompute(n_params, n_tokens, n_devices, flops_per_device, recompute=False):
    """Always 6ND."""
    return 6 * n_params * n_tokens / (n_devices * flops_per_device) / 86_400


def days_one_device(n_params, n_tokens, n_devices, flops_per_device, recompute=False):
    """Forgets to divide by the number of devices."""
    return (8 if recompute else 6) * n_params * n_tokens / flops_per_device / 86_400


def days_in_hours(n_params, n_tokens, n_devices, flops_per_device, recompute=False):
    """Divides by 3600 (hours)."""
    return (8 if recompute else 6) * n_params * n_tokens / (n_devices * flops_per_device) / 3600


def days_recompute_doubles(n_params, n_tokens, n_devices, flops_per_device, recompute=False):
    """Recompute doubles the cost (12ND) instead of adding one forward (8ND)."""
    return (12 if recompute else 6) * n_params * n_tokens / (n_devices * flops_per_device) / 86_400


# --------------------------------------------------------------------------- decode step


def _parts(shape, device, context, batch):
    N = matmul_params(shape)
    flops = batch * (2 * N + 4 * shape.n_layer * shape.n_head * shape.head_dim * context)
    return N, flops, device.peak("bf16"), device.mem_bw


def _verdict(t_compute, t_memory):
    return (t_compute, "compute") if t_compute >= t_memory else (t_memory, "memory")


def decode_sum_not_max(shape, device, context, batch=1):
    """Adds compute and memory time."""
    N, flops, peak, bw = _parts(shape, device, context, batch)
    tc, tm = flops / peak, (2 * N + _kv(shape, context, batch)) / bw
    return tc + tm, "compute" if tc >= tm else "memory"


def decode_weights_per_sequence(shape, device, context, batch=1):
    """Reads the weights once per sequence."""
    N, flops, peak, bw = _parts(shape, device, context, batch)
    return _verdict(flops / peak, (batch * 2 * N + _kv(shape, context, batch)) / bw)


def decode_no_kv_bytes(shape, device, context, batch=1):
    """Forgets the KV-cache reads."""
    N, flops, peak, bw = _parts(shape, device, context, batch)
    return _verdict(flops / peak, 2 * N / bw)


def decode_no_attention_flops(shape, device, context, batch=1):
    """Counts only the 2N weight FLOPs."""
    N, _, peak, bw = _parts(shape, device, context, batch)
    return _verdict(batch * 2 * N / peak, (2 * N + _kv(shape, context, batch)) / bw)


def decode_all_params(shape, device, context, batch=1):
    """Uses param_count (with the input embedding and positions) instead of matmul_params."""
    P = param_count(shape)
    flops = batch * (2 * P + 4 * shape.n_layer * shape.n_head * shape.head_dim * context)
    return _verdict(flops / device.peak("bf16"), (2 * P + _kv(shape, context, batch)) / device.mem_bw)


def decode_bound_flipped(shape, device, context, batch=1):
    """Right time, but calls the bound by the smaller term."""
    N, flops, peak, bw = _parts(shape, device, context, batch)
    tc, tm = flops / peak, (2 * N + _kv(shape, context, batch)) / bw
    return max(tc, tm), "memory" if tc >= tm else "compute"


# --------------------------------------------------------------------------- largest batch


def _fit_parts(shape, device, context, n_devices):
    capacity = n_devices * device.mem_bytes
    weights = 2 * param_count(shape)
    per_seq = _kv(shape, context) + inference_activation_bytes(shape, 1, context)
    return capacity, weights, per_seq


def batch_no_activations(shape, device, context, n_devices=1):
    """Leaves out the activations: only weights and KV cache."""
    capacity, weights, _ = _fit_parts(shape, device, context, n_devices)
    return max(0, math.floor((capacity - weights) / _kv(shape, context)))


def batch_one_device(shape, device, context, n_devices=1):
    """Ignores n_devices."""
    _, weights, per_seq = _fit_parts(shape, device, context, n_devices)
    return max(0, math.floor((device.mem_bytes - weights) / per_seq))


def batch_rounds(shape, device, context, n_devices=1):
    """round() instead of floor()."""
    capacity, weights, per_seq = _fit_parts(shape, device, context, n_devices)
    return max(0, round((capacity - weights) / per_seq))


def batch_negative(shape, device, context, n_devices=1):
    """Returns a negative batch when the weights alone do not fit."""
    capacity, weights, per_seq = _fit_parts(shape, device, context, n_devices)
    return math.floor((capacity - weights) / per_seq)


def batch_float(shape, device, context, n_devices=1):
    """Returns the float quotient."""
    capacity, weights, per_seq = _fit_parts(shape, device, context, n_devices)
    return max(0.0, (capacity - weights) / per_seq)


def batch_matmul_params(shape, device, context, n_devices=1):
    """Counts the weights with matmul_params (forgets the untied input embedding)."""
    capacity, _, per_seq = _fit_parts(shape, device, context, n_devices)
    return max(0, math.floor((capacity - 2 * matmul_params(shape)) / per_seq))


# --------------------------------------------------------------------------- stretch: where the knee disappears


def _ctx(shape, device, kv_heads=None, kv_bytes=2, attention_flops=True):
    L, H, Q = shape.n_layer, shape.n_head, shape.head_dim
    K = shape.n_kv_head if kv_heads is None else kv_heads
    peak, bw = device.peak("bf16"), device.mem_bw
    bracket = 2 * L * K * Q * kv_bytes / bw - (4 * L * H * Q / peak if attention_flops else 0)
    if bracket <= 0:
        return None
    return max(0, math.ceil(2 * matmul_params(shape) / peak / bracket) - 1)


def ctx_no_attention_flops(shape, device):
    """Leaves the attention FLOPs over the cache out of the compute time."""
    return _ctx(shape, device, attention_flops=False)


def ctx_query_heads(shape, device):
    """Sizes the cache with the query heads H instead of the key/value heads K."""
    return _ctx(shape, device, kv_heads=shape.n_head)


def ctx_one_byte(shape, device):
    """Counts one byte per cache element instead of two (bf16)."""
    return _ctx(shape, device, kv_bytes=1)


def ctx_first_without_knee(shape, device):
    """Returns the first context with no knee, one past the answer."""
    c = _ctx(shape, device)
    return None if c is None else c + 1


def ctx_never_none(shape, device):
    """Forgets that a cheap enough cache leaves a knee at every context."""
    L, H, K, Q = shape.n_layer, shape.n_head, shape.n_kv_head, shape.head_dim
    peak, bw = device.peak("bf16"), device.mem_bw
    return math.ceil(2 * matmul_params(shape) / peak / (4 * L * K * Q / bw - 4 * L * H * Q / peak)) - 1


MUTANTS = {
    "09.kv_cache_bytes": [
        kv_uses_query_heads,
        kv_forgets_values,
        kv_head_dim_from_d_model,
        kv_counts_elements,
        kv_forgets_batch,
        kv_fp32_default,
    ],
    "09.mfu": [mfu_no_attention, mfu_forward_only, mfu_percent, mfu_half_attention, mfu_quadratic_attention],
    "09.training_days": [days_in_seconds, days_ignores_recompute, days_one_device, days_in_hours, days_recompute_doubles],
    "09.decode_time": [
        decode_sum_not_max,
        decode_weights_per_sequence,
        decode_no_kv_bytes,
        decode_no_attention_flops,
        decode_all_params,
        decode_bound_flipped,
    ],
    "09.max_batch": [
        batch_no_activations,
        batch_one_device,
        batch_rounds,
        batch_negative,
        batch_float,
        batch_matmul_params,
    ],
    "09.knee_context": [ctx_no_attention_flops, ctx_query_heads, ctx_one_byte, ctx_first_without_knee, ctx_never_none],
}

#: mutant -> a phrase its verdict's hint must contain (tests/course/test_course_hints.py).
HINTS = {
    "ctx_no_attention_flops": "cached tokens cost FLOPs too",
    "ctx_query_heads": "only the K key/value heads",
    "ctx_one_byte": "takes 2 bytes",
    "ctx_first_without_knee": "return the LAST context",
    "ctx_never_none": "return None",
}
