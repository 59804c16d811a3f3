"""Wrong answers to lesson 04's tasks, each a mistake a learner plausibly makes."""

from __future__ import annotations

import torch

EPS = torch.finfo(torch.float32).eps


# --------------------------------------------------------------------------- quantize_tensor


def _codes(x, scale, zp, qmin, qmax, dtype):
    return torch.clamp(torch.round(x / scale) + zp, qmin, qmax).to(dtype)


def quantize_torch_127_5(x, bits=8, scheme="symmetric"):
    """Uses torch's symmetric convention absmax / 127.5 (and the full [-128, 127] range)."""
    if scheme == "symmetric":
        scale = torch.clamp(x.abs().max() / ((2**bits - 1) / 2), min=EPS)
        return _codes(x, scale, 0, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, torch.int8), scale, 0
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((hi - lo) / (2**bits - 1), min=EPS)
    zp = int(torch.round(-lo / scale))
    return _codes(x, scale, zp, 0, 2**bits - 1, torch.uint8), scale, zp


def quantize_round_half_up(x, bits=8, scheme="symmetric"):
    """Rounds with floor(v + 0.5): halves go up instead of to even."""
    qmax = 2 ** (bits - 1) - 1
    if scheme == "symmetric":
        scale = torch.clamp(x.abs().max() / qmax, min=EPS)
        q = torch.clamp(torch.floor(x / scale + 0.5), -qmax, qmax)
        return q.to(torch.int8), scale, 0
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((hi - lo) / (2**bits - 1), min=EPS)
    zp = int(torch.round(-lo / scale))
    return torch.clamp(torch.floor(x / scale + 0.5) + zp, 0, 2**bits - 1).to(torch.uint8), scale, zp


def quantize_affine_range_without_zero(x, bits=8, scheme="symmetric"):
    """Affine range [min, max] that need not contain 0."""
    qmax = 2 ** (bits - 1) - 1
    if scheme == "symmetric":
        scale = torch.clamp(x.abs().max() / qmax, min=EPS)
        return _codes(x, scale, 0, -qmax, qmax, torch.int8), scale, 0
    lo, hi = x.min(), x.max()
    scale = torch.clamp((hi - lo) / (2**bits - 1), min=EPS)
    zp = int(torch.clamp(torch.round(-lo / scale), 0, 2**bits - 1))
    return _codes(x, scale, zp, 0, 2**bits - 1, torch.uint8), scale, zp


def quantize_no_eps(x, bits=8, scheme="symmetric"):
    """Divides by a zero scale for an all-zero tensor (no eps clamp)."""
    qmax = 2 ** (bits - 1) - 1
    if scheme == "symmetric":
        scale = x.abs().max() / qmax
        return _codes(x, scale, 0, -qmax, qmax, torch.int8), scale, 0
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / (2**bits - 1)
    zp = int(torch.nan_to_num(torch.round(-lo / scale)))
    return _codes(x, scale, zp, 0, 2**bits - 1, torch.uint8), scale, zp


def quantize_no_clamp(x, bits=8, scheme="symmetric"):
    """Forgets to clamp: the affine zero point can push codes past 2^b - 1."""
    qmax = 2 ** (bits - 1) - 1
    if scheme == "symmetric":
        scale = torch.clamp(x.abs().max() / qmax, min=EPS)
        return torch.round(x / scale).to(torch.int32), scale, 0
    lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((hi - lo) / (2**bits - 1), min=EPS)
    zp = int(torch.round(-lo / scale))
    return (torch.round(x / scale) + zp).to(torch.int32), scale, zp


# --------------------------------------------------------------------------- dequantize


def dequantize_uint8_wraps(q, scale, zero_point):
    """Subtracts the zero point in the codes' own dtype: uint8 wraps around."""
    return (q - zero_point).float() * scale


def dequantize_zero_point_after(q, scale, zero_point):
    """Scales first, then subtracts the zero point: q * scale - zero_point."""
    return q.float() * scale - zero_point


def dequantize_ignores_zero_point(q, scale, zero_point):
    """Forgets the zero point entirely."""
    return q.float() * scale


# --------------------------------------------------------------------------- per_channel_scales


def scales_wrong_axis(w, bits=8, group_size=None):
    """Takes absmax over the output rows (dim 0): one scale per input column."""
    qmax = 2 ** (bits - 1) - 1
    if group_size is None:
        return torch.clamp(w.abs().amax(dim=0) / qmax, min=EPS)
    return torch.clamp(w.reshape(w.shape[0], -1, group_size).abs().amax(-1) / qmax, min=EPS)


def scales_max_not_absmax(w, bits=8, group_size=None):
    """Uses max(w) instead of max(|w|)."""
    qmax = 2 ** (bits - 1) - 1
    if group_size is None:
        return torch.clamp(w.amax(dim=1) / qmax, min=EPS)
    return torch.clamp(w.reshape(w.shape[0], -1, group_size).amax(-1) / qmax, min=EPS)


def scales_strided_groups(w, bits=8, group_size=None):
    """Builds groups from every (in/g)-th input instead of g consecutive ones."""
    qmax = 2 ** (bits - 1) - 1
    if group_size is None:
        return torch.clamp(w.abs().amax(dim=1) / qmax, min=EPS)
    out, inp = w.shape
    return torch.clamp(w.reshape(out, group_size, inp // group_size).abs().amax(1) / qmax, min=EPS)


def scales_levels_not_codes(w, bits=8, group_size=None):
    """Divides by 2^b - 1 (the number of affine steps) instead of 2^(b-1) - 1."""
    if group_size is None:
        return torch.clamp(w.abs().amax(dim=1) / (2**bits - 1), min=EPS)
    return torch.clamp(w.reshape(w.shape[0], -1, group_size).abs().amax(-1) / (2**bits - 1), min=EPS)


# --------------------------------------------------------------------------- int8_linear


def _per_token(x2):
    s = torch.clamp(x2.abs().amax(dim=-1, keepdim=True) / 127, min=EPS)
    return torch.clamp(torch.round(x2 / s), -127, 127).to(torch.int8), s


def int8_linear_wraps(x, q_weight, w_scale, bias=None):
    """Multiplies int8 by int8 in torch, which keeps int8 and wraps around."""
    x2 = x.reshape(-1, x.shape[-1])
    q, s = _per_token(x2)
    y = (q @ q_weight.t()).float() * s * w_scale
    y = y if bias is None else y + bias
    return y.reshape(*x.shape[:-1], q_weight.shape[0])


def int8_linear_per_tensor(x, q_weight, w_scale, bias=None):
    """One activation scale for the whole batch instead of one per token."""
    x2 = x.reshape(-1, x.shape[-1])
    s = torch.clamp(x2.abs().max() / 127, min=EPS)
    q = torch.clamp(torch.round(x2 / s), -127, 127).to(torch.int32)
    y = (q @ q_weight.to(torch.int32).t()).float() * s * w_scale
    y = y if bias is None else y + bias
    return y.reshape(*x.shape[:-1], q_weight.shape[0])


def int8_linear_float_activations(x, q_weight, w_scale, bias=None):
    """Dequantizes the weight and multiplies float activations (W8A32, no activation rounding)."""
    y = x @ (q_weight.float() * w_scale[:, None]).t()
    return y if bias is None else y + bias


def int8_linear_forgets_weight_scale(x, q_weight, w_scale, bias=None):
    """Rescales the int32 sums by the activation scale only."""
    x2 = x.reshape(-1, x.shape[-1])
    q, s = _per_token(x2)
    y = (q.to(torch.int32) @ q_weight.to(torch.int32).t()).float() * s
    y = y if bias is None else y + bias
    return y.reshape(*x.shape[:-1], q_weight.shape[0])


# --------------------------------------------------------------------------- smoothquant_scales


def smooth_swapped_exponents(act_absmax, weight, alpha=0.5):
    """Gives the activation the exponent 1 - alpha and the weight alpha."""
    a, w = act_absmax.clamp(min=1e-5), weight.abs().amax(0).clamp(min=1e-5)
    return a ** (1 - alpha) / w**alpha


def smooth_weight_rows(act_absmax, weight, alpha=0.5):
    """Takes the weight absmax per output row (dim 1) instead of per input column."""
    a, w = act_absmax.clamp(min=1e-5), weight.abs().amax(1).clamp(min=1e-5)
    return a**alpha / w ** (1 - alpha) if w.shape == a.shape else a**alpha / w.mean() ** (1 - alpha)


def smooth_no_clamp(act_absmax, weight, alpha=0.5):
    """No clamp: a dead channel gets s = 0, a zero weight column s = inf."""
    return act_absmax**alpha / weight.abs().amax(0) ** (1 - alpha)


def smooth_reference_code_clamps(act_absmax, weight, alpha=0.5):
    """Clamps only the weight statistic and s, as the authors' smooth.py does: a dead channel gets s = 1e-5."""
    w = weight.abs().amax(0).clamp(min=1e-5)
    return (act_absmax**alpha / w ** (1 - alpha)).clamp(min=1e-5)


def smooth_ignores_alpha(act_absmax, weight, alpha=0.5):
    """Always uses alpha = 0.5."""
    return act_absmax.clamp(min=1e-5).sqrt() / weight.abs().amax(0).clamp(min=1e-5).sqrt()


# --------------------------------------------------------------------------- pack_int4


def pack_high_nibble_first(q):
    """Puts element 2i in the high nibble."""
    nib = q.to(torch.int16) & 0xF
    return ((nib[..., 0::2] << 4) | nib[..., 1::2]).to(torch.uint8)


def pack_offset_binary(q):
    """Stores q + 8 (offset binary) instead of two's complement."""
    u = q.to(torch.int16) + 8
    return (u[..., 0::2] | (u[..., 1::2] << 4)).to(torch.uint8)


def pack_no_mask(q):
    """Forgets & 0xF, so a negative low value sign-extends into the high nibble."""
    v = q.to(torch.int16)
    return ((v[..., 0::2] | (v[..., 1::2] << 4)) & 0xFF).to(torch.uint8)


def pack_int8_dtype(q):
    """Right bits, but returned as int8 instead of uint8 bytes."""
    nib = q.to(torch.int16) & 0xF
    return (nib[..., 0::2] | (nib[..., 1::2] << 4)).to(torch.uint8).view(torch.int8)


MUTANTS = {
    "04.quantize_tensor": [
        quantize_torch_127_5,
        quantize_round_half_up,
        quantize_affine_range_without_zero,
        quantize_no_eps,
        quantize_no_clamp,
    ],
    "04.dequantize": [dequantize_uint8_wraps, dequantize_zero_point_after, dequantize_ignores_zero_point],
    "04.per_channel_scales": [scales_wrong_axis, scales_max_not_absmax, scales_strided_groups, scales_levels_not_codes],
    "04.int8_linear": [
        int8_linear_wraps,
        int8_linear_per_tensor,
        int8_linear_float_activations,
        int8_linear_forgets_weight_scale,
    ],
    "04.smoothquant_scales": [
        smooth_swapped_exponents,
        smooth_weight_rows,
        smooth_no_clamp,
        smooth_reference_code_clamps,
        smooth_ignores_alpha,
    ],
    "04.pack_int4": [pack_high_nibble_first, pack_offset_binary, pack_no_mask, pack_int8_dtype],
}


# --------------------------------------------------------------------------- fp32_exact_max_k (stretch)


def _largest(bits, symmetric):
    return 2 ** (bits - 1) - (1 if symmetric else 0)


def exact_k_always_symmetric(a_bits, b_bits, symmetric=False, significand_bits=24):
    """Takes 2^(bits-1) - 1 as the largest code even for the full range (forgets -128)."""
    return 2**significand_bits // (_largest(a_bits, True) * _largest(b_bits, True))


def exact_k_mantissa_field(a_bits, b_bits, symmetric=False, significand_bits=24):
    """Uses 2^(p-1): forgets the implicit leading bit of the significand."""
    return 2 ** (significand_bits - 1) // (_largest(a_bits, symmetric) * _largest(b_bits, symmetric))


def exact_k_strict(a_bits, b_bits, symmetric=False, significand_bits=24):
    """Requires K * |a| * |b| < 2^p strictly: one short whenever the product divides 2^p."""
    return (2**significand_bits - 1) // (_largest(a_bits, symmetric) * _largest(b_bits, symmetric))


def exact_k_unsigned(a_bits, b_bits, symmetric=False, significand_bits=24):
    """Treats the codes as unsigned: largest magnitude 2^bits - 1."""
    return 2**significand_bits // ((2**a_bits - 1) * (2**b_bits - 1))


MUTANTS["04.fp32_exact_max_k"] = [exact_k_always_symmetric, exact_k_mantissa_field, exact_k_strict, exact_k_unsigned]
