"""Quantization-aware training (QAT): train through the rounding (lesson 04).

Post-training quantization (PTQ) rounds trained weights once and hopes. QAT keeps
float weights but runs every forward pass with their fake-quantized copy, so the
loss sees the rounding error and the optimizer moves the weights to where rounding
hurts least; the straight-through estimator lets gradients pass the rounding
(Jacob et al. 2018, Sec. 3; Krishnamoorthi 2018, "Quantizing deep convolutional
networks for efficient inference: A whitepaper"). At 4 bits a short QAT
fine-tune usually recovers much of what PTQ loses.

    qat = qat_prepare(model, bits=4, group_size=32)   # float weights, fake-quant forward
    ... train qat for a few hundred steps ...
    int4 = qat_convert(qat)                            # real packed int4 weights, same outputs
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from minillm.compress.int4 import WeightOnlyLinear
from minillm.compress.model_quant import linear_sites
from minillm.compress.quant_core import EPS, check_bits, qrange

__all__ = ["fake_quantize", "fake_quant_weight", "FakeQuantLinear", "qat_prepare", "qat_convert"]


class _FakeQuantSTE(torch.autograd.Function):
    """Quantize-then-dequantize with the straight-through estimator (Bengio et al. 2013).

    Backward passes the gradient through unchanged where the value landed inside
    [qmin, qmax] and zeroes it where it was clamped, as torch's
    ``fake_quantize_per_tensor_affine`` does (Jacob et al. 2018, Sec. 3).
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
        q = torch.round(x * (1.0 / scale)) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(q, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (inside,) = ctx.saved_tensors
        grad_x = grad_out * inside.to(grad_out.dtype)
        return grad_x, None, None, None, None  # scale and zero point are not learned here


def fake_quantize(x: Tensor, scale: Tensor | float, zero_point: Tensor | int, qmin: int, qmax: int) -> Tensor:
    """Round x onto the integer grid and straight back to float: ``(clamp(round(x/s)+z) - z) * s``.

    x: any shape, float32. scale/zero_point broadcast against x. The gradient is 1
    where ``round(x/s)+z`` lies in [qmin, qmax] and 0 where it was clamped (the
    straight-through estimator), matching ``torch.fake_quantize_per_tensor_affine``.
    Used for quantization-aware training: the forward pass sees the rounding error,
    the backward pass still updates the float weights.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be smaller than qmax={qmax}")
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    if bool((scale <= 0).any()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("scale must be finite and > 0 everywhere")
    zp = torch.as_tensor(zero_point, device=x.device).to(x.dtype)
    return _FakeQuantSTE.apply(x, scale, zp, int(qmin), int(qmax))


def fake_quant_weight(weight: Tensor, bits: int = 4, group_size: int | None = 32) -> Tensor:
    """Symmetric fake-quant of a weight [out, in]: per group of ``group_size`` inputs (None: per row).

    The scale ``absmax / qmax`` is recomputed from the current weight each call and
    treated as a constant (no gradient); gradients reach the weight through
    :func:`fake_quantize`'s straight-through estimator. Same numbers as
    ``quantize(weight, bits, "symmetric", "group", 0, group_size).dequantize()``.
    """
    out, inp = weight.shape
    g = inp if group_size is None else group_size
    qmin, qmax = qrange(bits)
    wg = weight.reshape(out, inp // g, g)
    scale = torch.clamp(wg.detach().abs().amax(dim=-1, keepdim=True) / qmax, min=EPS)
    return fake_quantize(wg, scale, 0, qmin, qmax).reshape(out, inp)


class FakeQuantLinear(nn.Module):
    """A Linear whose forward uses ``fake_quant_weight(weight)``; weight and bias stay float and trainable."""

    def __init__(self, weight: Tensor, bias: Tensor | None, bits: int = 4, group_size: int | None = 32) -> None:
        super().__init__()
        check_bits(bits)
        out, inp = weight.shape
        if group_size is not None and (not isinstance(group_size, int) or group_size <= 0 or inp % group_size):
            raise ValueError(f"group_size={group_size!r} must divide in_features={inp}; use e.g. 32 or None")
        self.in_features, self.out_features, self.bits, self.group_size = inp, out, bits, group_size
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ fake_quant_weight(self.weight, self.bits, self.group_size).t()
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, group_size={self.group_size}"


def qat_prepare(model: nn.Module, bits: int = 4, group_size: int | None = 32) -> nn.Module:
    """A copy of ``model`` with every untied :class:`minillm.model.Linear` replaced by a :class:`FakeQuantLinear`.

    The copy trains like the original (same parameters, same optimizer code); the
    original is untouched. An output layer tied to the token embedding stays float.
    """
    check_bits(bits)
    new = copy.deepcopy(model)
    for _, parent, attr, lin in linear_sites(new):
        setattr(parent, attr, FakeQuantLinear(lin.weight, lin.bias, bits, group_size))
    return new


def qat_convert(model: nn.Module) -> nn.Module:
    """A copy of a QAT model with each :class:`FakeQuantLinear` turned into a real :class:`WeightOnlyLinear`.

    The converted layers store integer codes (int4 packed two per byte; other bit
    widths one code per int8 byte) and give the same outputs as the fake-quant
    forward, up to float rounding.
    """
    new = copy.deepcopy(model)
    sites = [(n, m) for n, m in new.named_modules() if isinstance(m, FakeQuantLinear)]
    if not sites:
        raise ValueError("model has no FakeQuantLinear layers; prepare it with qat_prepare(model, bits, group_size) first")
    for name, m in sites:
        parent_name, _, attr = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, attr, WeightOnlyLinear.from_float(m.weight, m.bias, m.bits, m.group_size))
    return new
