"""Quantization from scratch: how a float32 tensor becomes a few bits (lesson 04).

A quantized tensor stores small integers ``q`` and a float ``scale`` (and for the
affine scheme an integer ``zero_point``); the real value it stands for is
``(q - zero_point) * scale`` (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", Eq. 1).

Course conventions (every function here follows them)
-----------------------------------------------------
- **symmetric** (signed): ``scale = absmax / (2**(bits-1) - 1)``, zero point 0 and
  ``q`` in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``, e.g. [-127, 127] for int8. The
  grid is symmetric around 0, so -128 is never used. This is the scale of
  LLM.int8() (Dettmers et al. 2022) and SmoothQuant (Xiao et al. 2023); torch's
  symmetric observers divide by 127.5 instead.
- **affine** (unsigned): ``q`` in ``[0, 2**bits - 1]``. The range always contains
  0: ``min' = min(min(x), 0)``, ``max' = max(max(x), 0)``, so that 0.0 (padding, ReLU
  zeros) is represented exactly; ``scale = (max' - min') / (2**bits - 1)`` and
  ``zero_point = round(-min' / scale)``. This equals torch's ``MinMaxObserver``
  (quint8, per_tensor_affine).
- A scale is never below float32 eps (as torch's observers clamp it), so an
  all-zero tensor quantizes to its zero point instead of dividing by 0.
- **rounding** is round-half-to-even (``torch.round``, ``numpy.round``, and the
  kernels behind ``torch.quantize_per_tensor``). Like those kernels we compute
  ``x * (1 / scale)`` in float32, not ``x / scale``: the two differ in the last bit
  now and then, which can flip a value that sits on a .5 tie. Doing what torch does
  makes our integers equal torch's bit for bit.
- **granularity**: ``"tensor"`` (one scale), ``"channel"`` (one scale per index of
  ``axis``, like ``torch.quantize_per_channel``) or ``"group"`` (each channel is
  cut into groups of ``group_size`` consecutive elements, one scale per group,
  as in GPTQ/AWQ int4 weights). For a weight ``W`` [out, in] with ``axis=0`` a
  group is ``group_size`` neighbouring input columns of one output row.

This module is the core every other quantization file builds on, and it imports
none of them. The integer GEMM (int8_gemm.py), the int8 layers (int8_linear.py),
int4 packing (int4.py), SmoothQuant, fake quantization/QAT, whole-model
quantization (model_quant.py) and the lesson's widget (quant_widget.py) live in
sibling files; :mod:`minillm.compress.quantize` re-exports all of them for the lesson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from minillm.validate import check_choice, is_int

__all__ = [
    "SCHEMES",
    "GRANULARITIES",
    "EPS",
    "check_bits",
    "check_float_tensor",
    "check_weight",
    "qrange",
    "round_clamp",
    "quantize_with",
    "QTensor",
    "quantize",
    "dequantize",
    "quant_error",
    "quantize_per_token",
    "per_token_int8",
    "per_token_codes",
    "per_channel_weight",
]

SCHEMES = ("symmetric", "affine")
GRANULARITIES = ("tensor", "channel", "group")
# torch's observers clamp the scale at float32 eps (torch/ao/quantization/observer.py).
EPS = torch.finfo(torch.float32).eps
_QMAX8 = torch.tensor(127.0)  # the int8 symmetric maximum as a float32 tensor, for the hot path


# --------------------------------------------------------------------------- checks


def check_bits(bits: int, name: str = "bits") -> int:
    """Raise a ValueError unless ``bits`` is an int in 2..8."""
    if not is_int(bits):
        raise ValueError(f"{name}={bits!r} must be an int in 2..8; use {name}=8 for int8")
    if not 2 <= bits <= 8:
        raise ValueError(f"{name}={bits} is outside 2..8; use {name}=8 for int8 or {name}=4 for int4")
    return bits


def check_float_tensor(x: Tensor, name: str = "x") -> Tensor:
    """Raise a ValueError unless ``x`` is a non-empty, finite floating-point tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap it with torch.tensor(...)")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; use {name}.float()")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); quantize a tensor with at least one element")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; a scale cannot be computed, so clean the values first")
    return x


def check_weight(weight: Tensor, bias: Tensor | None) -> None:
    """Raise a ValueError unless weight is a finite float [out, in] and bias None or [out]."""
    check_float_tensor(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must be [out_features, in_features], got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape [{weight.shape[0]}] (out_features), got {tuple(bias.shape)}")


def qrange(bits: int, scheme: str = "symmetric") -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of the course convention.

    symmetric: ``(-(2**(bits-1) - 1), 2**(bits-1) - 1)``, e.g. (-127, 127);
    affine: ``(0, 2**bits - 1)``, e.g. (0, 255).
    """
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _int_dtype(qmin: int, qmax: int) -> torch.dtype:
    """The smallest torch integer dtype that holds [qmin, qmax]."""
    if -128 <= qmin and qmax <= 127:
        return torch.int8
    if 0 <= qmin and qmax <= 255:
        return torch.uint8
    return torch.int32


# --------------------------------------------------------------------------- the formula


def round_clamp(x: Tensor, scale: Tensor, zero_point: Tensor | int, qmin: int, qmax: int) -> Tensor:
    """``clamp(round(x * (1/scale)) + zero_point, qmin, qmax)`` as float, without input checks.

    The hot path of the int8 layers; :func:`quantize_with` is the checked version.
    """
    inv_scale = 1.0 / scale  # float32 reciprocal, as torch's quantize kernels compute it
    return torch.clamp(torch.round(x * inv_scale) + zero_point, qmin, qmax)


def quantize_with(
    x: Tensor, scale: Tensor | float, zero_point: Tensor | int, qmin: int, qmax: int
) -> Tensor:
    """The bare quantization formula ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    x: any shape, float. ``scale`` and ``zero_point`` broadcast against x (a scalar
    per tensor, e.g. shape [C, 1] per channel of a [C, K] matrix). Rounding is half to
    even; ``x / scale`` is computed as ``x * (1 / scale)`` in float32, as torch does
    (see the module docstring). Returns the integers in the smallest integer dtype
    holding [qmin, qmax] (int8, uint8 or int32), same shape as the broadcast.
    """
    check_float_tensor(x, "x")
    for name, v in (("qmin", qmin), ("qmax", qmax)):
        if not is_int(v):
            raise ValueError(f"{name}={v!r} must be an int, e.g. qmin=-127, qmax=127 for int8")
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be smaller than qmax={qmax}; e.g. qmin=0, qmax=255 for uint8")
    scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    if scale.numel() == 0 or not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise ValueError("scale must be finite and > 0 everywhere; compute it as absmax / qmax (clamped at eps)")
    zp = torch.as_tensor(zero_point, device=x.device)
    if zp.is_floating_point() and not bool((zp == torch.round(zp)).all()):
        raise ValueError("zero_point must hold whole numbers; round it first with torch.round(...)")
    if bool(((zp < qmin) | (zp > qmax)).any()):
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}]")
    try:
        q = round_clamp(x.float(), scale, zp.to(torch.float32), qmin, qmax)
    except RuntimeError as e:  # shapes that do not broadcast
        raise ValueError(
            f"scale {tuple(scale.shape)} / zero_point {tuple(zp.shape)} do not broadcast against x {tuple(x.shape)}; "
            "for per-channel scales of a [C, K] tensor use shape [C, 1]"
        ) from e
    return q.to(_int_dtype(qmin, qmax))


# --------------------------------------------------------------------------- QTensor


def _grouped(x: Tensor, granularity: str, axis: int, group_size: int | None) -> Tensor:
    """View x as [C, G, n]: C channels, G groups per channel, n elements per group."""
    if granularity == "tensor":
        return x.reshape(1, 1, -1)
    xc = x.movedim(axis, 0).reshape(x.shape[axis], -1)  # [C, elements per channel]
    if granularity == "channel":
        return xc.unsqueeze(1)
    return xc.reshape(xc.shape[0], -1, group_size)


def _ungrouped(xg: Tensor, shape: torch.Size, granularity: str, axis: int) -> Tensor:
    """Inverse of :func:`_grouped`."""
    if granularity == "tensor":
        return xg.reshape(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return xg.reshape(moved).movedim(0, axis)


@dataclass
class QTensor:
    """A quantized tensor: integers ``q`` plus ``scale`` and ``zero_point``.

    q: same shape as the original x (int8 for symmetric, uint8 for affine).
    scale (float32) and zero_point (int32) have shape [] per tensor, [C] per channel
    (C = x.shape[axis]) and [C, G] per group (G groups per channel).
    """

    q: Tensor
    scale: Tensor
    zero_point: Tensor
    bits: int
    scheme: str = "symmetric"
    granularity: str = "tensor"
    axis: int = 0
    group_size: int | None = None

    def _expand(self, t: Tensor) -> Tensor:
        """scale/zero_point [.., G] -> [C, G, 1], broadcastable against the grouped q."""
        if self.granularity == "tensor":
            return t.reshape(1, 1, 1)
        if self.granularity == "channel":
            return t.reshape(-1, 1, 1)
        return t.unsqueeze(-1)

    def dequantize(self) -> Tensor:
        """float32 values ``(q - zero_point) * scale``, same shape as q."""
        qg = _grouped(self.q, self.granularity, self.axis, self.group_size).float()
        xg = (qg - self._expand(self.zero_point).float()) * self._expand(self.scale)
        return _ungrouped(xg, self.q.shape, self.granularity, self.axis)

    @property
    def nbytes(self) -> int:
        """Bytes a packed file format needs: ``bits`` per value, a float32 per scale, one byte per zero point.

        The in-memory ``q`` uses a whole byte per value; packing (e.g. :func:`pack_int4`)
        brings it down to ``bits``. Symmetric tensors store no zero point.
        Group quantization therefore costs ``bits + 32/group_size`` bits per value.
        """
        n = math.ceil(self.q.numel() * self.bits / 8) + 4 * self.scale.numel()
        if self.scheme == "affine":
            n += self.zero_point.numel()
        return n

    def __repr__(self) -> str:
        return (
            f"QTensor(shape={tuple(self.q.shape)}, bits={self.bits}, scheme={self.scheme!r}, "
            f"granularity={self.granularity!r}, scales={self.scale.numel()}, nbytes={self.nbytes})"
        )


def _check_layout(x: Tensor, granularity: str, axis: int, group_size: int | None) -> int:
    """Validate granularity/axis/group_size against x; returns axis made non-negative."""
    check_choice("granularity", granularity, GRANULARITIES)
    if granularity == "tensor":
        return 0
    if not is_int(axis) or not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis={axis!r} is not a dimension of x with shape {tuple(x.shape)}; use 0..{x.dim() - 1}")
    axis = axis % x.dim()
    if granularity == "group":
        per_channel = x.numel() // x.shape[axis]
        if not is_int(group_size) or group_size <= 0:
            raise ValueError(f"group_size={group_size!r} must be a positive int for granularity='group', e.g. 32")
        if per_channel % group_size != 0:
            divisors = [g for g in (16, 32, 64, 128) if per_channel % g == 0] or [1]
            raise ValueError(
                f"group_size={group_size} does not divide the {per_channel} elements per channel along "
                f"axis {axis}; use a divisor such as {divisors[0]}"
            )
    elif group_size is not None:
        raise ValueError(f"group_size={group_size} is only used with granularity='group'; drop it or switch")
    return axis


def quantize(
    x: Tensor,
    bits: int = 8,
    scheme: str = "symmetric",
    granularity: str = "tensor",
    axis: int = 0,
    group_size: int | None = None,
) -> QTensor:
    """Quantize x to ``bits``-bit integers with the course convention (module docstring).

    x: any shape, float (computed in float32). Per channel, ``axis`` is the channel
    dimension (axis=0: one scale per output row of a weight [out, in]); per group,
    each channel is cut into groups of ``group_size`` consecutive elements.

    >>> qt = quantize(torch.tensor([-1.0, 0.0, 0.5, 1.0]))
    >>> qt.q.tolist(), float(qt.scale) == 1 / 127
    ([-127, 0, 64, 127], True)
    """
    check_float_tensor(x, "x")
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    axis = _check_layout(x, granularity, axis, group_size)
    qmin, qmax = qrange(bits, scheme)
    xg = _grouped(x.float(), granularity, axis, group_size)  # [C, G, n]
    if scheme == "symmetric":
        scale = torch.clamp(xg.abs().amax(dim=-1) / qmax, min=EPS)  # [C, G]
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo = torch.clamp(xg.amin(dim=-1), max=0.0)  # min' = min(min, 0)
        hi = torch.clamp(xg.amax(dim=-1), min=0.0)  # max' = max(max, 0)
        scale = torch.clamp((hi - lo) / float(qmax - qmin), min=EPS)
        zero_point = torch.clamp(torch.round(-lo / scale), qmin, qmax).to(torch.int32)
    q = round_clamp(xg, scale.unsqueeze(-1), zero_point.unsqueeze(-1).float(), qmin, qmax)
    q = _ungrouped(q, x.shape, granularity, axis).to(_int_dtype(qmin, qmax))
    if granularity == "tensor":
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    elif granularity == "channel":
        scale, zero_point = scale.reshape(-1), zero_point.reshape(-1)
    return QTensor(q, scale, zero_point, bits, scheme, granularity, axis, group_size)


def dequantize(qt: QTensor) -> Tensor:
    """``(q - zero_point) * scale`` as float32; the same as ``qt.dequantize()``."""
    if not isinstance(qt, QTensor):
        raise ValueError(f"qt must be a QTensor from quantize(...), got {type(qt).__name__}")
    return qt.dequantize()


# --------------------------------------------------------------------------- error analysis


def quant_error(
    x: Tensor,
    bits: int = 8,
    scheme: str = "symmetric",
    granularity: str = "tensor",
    axis: int = 0,
    group_size: int | None = None,
) -> dict:
    """How much quantizing x costs: the data for an error histogram.

    Returns a dict with ``error`` (dequantized - x, flattened, float32),
    ``mse``, ``max_abs``, ``sqnr_db`` (signal-to-quantization-noise ratio,
    ``10·log10(Σx² / Σe²)``; with rounding noise uniform in ±scale/2, variance
    scale²/12 (Bennett 1948, "Spectra of quantized signals"), each extra bit halves
    the step and adds 20·log10(2) ≈ 6.02 dB), ``max_scale`` (the
    largest step; rounding error inside the range is at most half of it) and
    ``nbytes`` (see :attr:`QTensor.nbytes`).
    """
    qt = quantize(x, bits, scheme, granularity, axis, group_size)
    err = (qt.dequantize() - x.float()).flatten()
    signal = float((x.float() ** 2).sum())
    noise = float((err**2).sum())
    sqnr = math.inf if noise == 0 else 10.0 * math.log10(max(signal, 1e-30) / noise)
    return {
        "error": err,
        "mse": noise / err.numel(),
        "max_abs": float(err.abs().max()),
        "sqnr_db": sqnr,
        "max_scale": float(qt.scale.max()),
        "nbytes": qt.nbytes,
    }


# --------------------------------------------------------------------------- int8 layers' formats


def per_token_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """The hot path of the int8 layers: x [M, K] float32 -> (q [M, K] int8, scale [M, 1] float32).

    :func:`per_token_codes` followed by the cast to int8.
    """
    codes, scale = per_token_codes(x)
    return codes.to(torch.int8), scale


def per_token_codes(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token int8 codes held in float32: x [M, K] float32 -> (codes [M, K], scale [M, 1]).

    The codes are whole numbers in [-127, 127], exact in float32, so the fp32-exact GEMM
    can use them without a round trip through int8 (two passes fewer).

    Symmetric int8 with one scale per row, ``scale = max(absmax / 127, eps)`` and
    ``q = round(x * (1/scale))`` (half to even), the arithmetic of :func:`round_clamp`
    without its clamp and without input checks. The clamp is redundant here:
    ``|x| <= absmax <= 127 * scale``, so ``|x * (1/scale)|`` exceeds 127 by a few
    float32 ulps at most and rounds to at most 127. Non-finite inputs are not
    checked (that would cost a pass over x); they give meaningless codes, as a
    float layer would give NaN. Rounding has no useful gradient, so x is detached
    (a free view): the in-place steps then also work on inputs that require grad.
    """
    if x.requires_grad:  # detach only when needed: even a free view is one more operator call
        x = x.detach()
    # Every small step is a separate operator call, and inside a model each one starts with
    # cold caches (the previous layer's weights went through them), so calls count more than
    # passes over x: |x| then its row max is two calls, where max x, min x and their
    # combination took four; and the divisor is a stored 127 (a Python number is wrapped
    # into a new tensor on every call).
    scale = x.abs().amax(dim=-1, keepdim=True).div_(_QMAX8).clamp_(min=EPS)
    return torch.mul(x, scale.reciprocal()).round_(), scale


def quantize_per_token(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Dynamic symmetric quantization with one scale per token (row of the last dim).

    x: [..., K] float -> (q [..., K] int8, scale [..., 1] float32), scale = absmax/(2**(bits-1)-1).
    "Per token" is LLM.int8()'s row-wise / ZeroQuant's token-wise activation scale.
    """
    check_float_tensor(x, "x")
    check_bits(bits)
    qmax = qrange(bits)[1]
    scale = torch.clamp(x.float().abs().amax(dim=-1, keepdim=True) / qmax, min=EPS)
    return round_clamp(x.float(), scale, 0, -qmax, qmax).to(torch.int8), scale


def per_channel_weight(w: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Symmetric per output channel: w [N, K] float -> (q [N, K] int8, scale [N] float32)."""
    qt = quantize(w, bits=bits, scheme="symmetric", granularity="channel", axis=0)
    return qt.q, qt.scale
