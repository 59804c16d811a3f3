"""Quantized linear layers on int8 GEMMs (lesson 04).

- :class:`Int8Linear`: W8A8, int8 weights per output channel, int8 activations per
  token (dynamic) or per tensor (static, from calibration). Float in, float out.
- :func:`llm_int8_matmul` / :class:`LLMInt8Linear`: LLM.int8() mixed-precision
  decomposition (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for
  Transformers at Scale", Sec. 3.2).

Weight-only int4 (packing and :class:`WeightOnlyLinear`) is in int4.py.

The integer GEMM kernels themselves (int8 x int8 -> int32, and why float32 is
exact for K <= 1024) are in int8_gemm.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minillm.compress.int8_gemm import _int8_matmul, cpu_int8_features, int8_kernel, int8_matmul
from minillm.compress.quantize import (
    EPS,
    check_bits,
    check_float_tensor,
    quantize,
    qrange,
    round_clamp,
)

__all__ = [
    "cpu_int8_features",  # re-exported from int8_gemm
    "int8_matmul",
    "int8_kernel",
    "quantize_per_token",
    "vectorwise_int8_matmul",
    "llm_int8_matmul",
    "Int8Linear",
    "LLMInt8Linear",
]


# --------------------------------------------------------------------------- activations


def quantize_per_token(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Dynamic symmetric quantization with one scale per token (row of the last dim).

    x: [..., K] float -> (q [..., K] int8, scale [..., 1] float32), scale = absmax/(2**(bits-1)-1).
    "Per token" is LLM.int8()'s row-wise / ZeroQuant's token-wise activation scale.
    """
    check_float_tensor(x, "x")
    check_bits(bits)
    return _per_token(x.float(), qrange(bits)[1])


def _check_input(x: Tensor, in_features: int) -> Tensor:
    """x [..., in_features] -> x2 [M, in_features] float32, or a ValueError naming the mismatch."""
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must have shape [..., {in_features}] (in_features), got {tuple(getattr(x, 'shape', ()))}")
    return x.reshape(-1, in_features).float()


def _per_token(x: Tensor, qmax: int) -> tuple[Tensor, Tensor]:
    """x [M, K] float32 -> (q [M, K] int8, scale [M, 1]): the same arithmetic as
    :func:`round_clamp` (``round(x * (1/scale))``, clamped), with in-place steps to
    spare temporaries on the hot path of every int8 layer."""
    scale = x.abs().amax(dim=-1, keepdim=True).div_(qmax).clamp_(min=EPS)
    return torch.round(x * (1.0 / scale)).clamp_(-qmax, qmax).to(torch.int8), scale


def _per_row_weight(w: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: w [N, K] -> (q [N, K] int8, scale [N] float32)."""
    qt = quantize(w, bits=bits, scheme="symmetric", granularity="channel", axis=0)
    return qt.q, qt.scale


def vectorwise_int8_matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` in int8: per-token x scales, per-output-channel w scales (LLM.int8() Sec. 3.1).

    x: [..., K] float, w: [N, K] float -> [..., N] float32.
    ``y[m, n] = s_x[m] · s_w[n] · Σ_k qx[m, k] · qw[n, k]`` with the sum in int32.
    """
    check_float_tensor(x, "x")
    check_float_tensor(w, "w")
    if w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be [N, K] with K = x.shape[-1] = {x.shape[-1]}, got {tuple(w.shape)}")
    qw, sw = _per_row_weight(w.float())
    x2 = x.reshape(-1, x.shape[-1]).float()
    qx, sx = _per_token(x2, 127)
    y = int8_matmul(qx, qw.t()).float() * sx * sw
    return y.reshape(*x.shape[:-1], w.shape[0])


def llm_int8_matmul(x: Tensor, w: Tensor, threshold: float = 6.0, return_outliers: bool = False):
    """LLM.int8(): ``x @ w.T`` with outlier features in float and the rest in int8.

    x: [..., K] float, w: [N, K] float -> [..., N] float32. A feature (column k of x)
    is an outlier when any token has ``|x[:, k]| >= threshold`` (6.0 in Dettmers et
    al. 2022, Sec. 3.2). Those columns are multiplied in float; the other columns go
    through :func:`vectorwise_int8_matmul`. ``threshold=inf`` is plain vector-wise
    int8; ``threshold=0`` makes every column an outlier, i.e. the float product.
    With ``return_outliers`` also returns the outlier column indices [n_outliers].
    """
    check_float_tensor(x, "x")
    check_float_tensor(w, "w")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or math.isnan(threshold) or threshold < 0:
        raise ValueError(f"threshold={threshold!r} must be a number >= 0 (6.0 in the paper; inf turns outliers off)")
    if w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be [N, K] with K = x.shape[-1] = {x.shape[-1]}, got {tuple(w.shape)}")
    x2 = x.reshape(-1, x.shape[-1]).float()
    w = w.float()
    is_out = (x2.abs() >= threshold).any(dim=0)  # [K]
    outliers = is_out.nonzero().flatten()
    regular = (~is_out).nonzero().flatten()
    y = x2.new_zeros(x2.shape[0], w.shape[0])
    if regular.numel():
        y = y + vectorwise_int8_matmul(x2[:, regular], w[:, regular])
    if outliers.numel():
        y = y + x2[:, outliers] @ w[:, outliers].t()
    y = y.reshape(*x.shape[:-1], w.shape[0])
    return (y, outliers) if return_outliers else y


# --------------------------------------------------------------------------- layers


def check_weight(weight: Tensor, bias: Tensor | None) -> None:
    """Raise a ValueError unless weight is a finite float [out, in] and bias None or [out]."""
    check_float_tensor(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must be [out_features, in_features], got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float_tensor(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape [{weight.shape[0]}] (out_features), got {tuple(bias.shape)}")


class Int8Linear(nn.Module):
    """W8A8 linear layer: ``y = x @ W.T + b`` computed with an int8 x int8 -> int32 GEMM.

    Weights: int8, symmetric, one scale per output channel (``q_weight`` [out, in],
    ``w_scale`` [out]). Activations: int8 symmetric per token, computed on the fly
    (``activations="dynamic"``), or one fixed per-tensor scale from calibration data
    (``"static"``; values beyond the calibrated range are clipped). Because both
    scales factor out of the dot product, ``y = s_x[m] · s_w[n] · (qx @ qw.T)[m, n] + b``
    (Jacob et al. 2018, Eq. 4; LLM.int8() Sec. 3.1). Float in, float out, so it can
    replace a :class:`minillm.model.Linear` anywhere. ``kernel`` names the GEMM that
    ran in the last forward ("torch._int_mm", "fp32-exact (K<=1024)" or an int32
    fallback; every one gives the same exact integers, see :func:`int8_matmul`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activations: str = "dynamic") -> None:
        super().__init__()
        if activations not in ("dynamic", "static"):
            raise ValueError(f"activations={activations!r} is unknown; use 'dynamic' or 'static' (with calibration)")
        self.in_features, self.out_features, self.activations = in_features, out_features, activations
        self.register_buffer("q_weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("x_scale", torch.ones(()) if activations == "static" else None)
        self.kernel = "not run yet"
        self.kernel_choice = "auto"  # "auto" | "torch._int_mm" | "fp32-exact" | "fallback", see int8_matmul

    @classmethod
    def from_float(
        cls,
        weight: Tensor,
        bias: Tensor | None = None,
        activations: str = "dynamic",
        calibration: Tensor | None = None,
    ) -> "Int8Linear":
        """Quantize a float weight [out, in] (and keep bias [out] in float32).

        ``calibration`` (static only): example inputs [..., in], or per-channel
        absmax [in], or a scalar; its largest |value| fixes the activation scale.
        """
        check_weight(weight, bias)
        if activations == "static":
            if calibration is None:
                raise ValueError("activations='static' needs calibration=<example inputs [..., in_features]>")
            check_float_tensor(calibration, "calibration")
        elif calibration is not None and activations == "dynamic":
            raise ValueError("calibration is only used with activations='static'; drop it for dynamic scales")
        m = cls(weight.shape[1], weight.shape[0], bias is not None, activations)
        m.q_weight, m.w_scale = _per_row_weight(weight.detach().float())
        if bias is not None:
            m.bias = bias.detach().float().clone()
        if activations == "static":
            m.x_scale = torch.clamp(calibration.detach().abs().max().float() / 127.0, min=EPS)
        return m

    @property
    def weight(self) -> Tensor:
        """The dequantized float weight [out, in] (for inspection; storage is ``q_weight``)."""
        return self.q_weight.float() * self.w_scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in] float -> [..., out] float32."""
        x2 = _check_input(x, self.in_features)
        if self.activations == "dynamic":
            qx, sx = _per_token(x2, 127)
        else:
            sx = self.x_scale
            qx = round_clamp(x2, sx, 0, -127, 127).to(torch.int8)
        # The int32 sums (held as float32: exact either way, see int8_matmul), then the
        # float epilogue y = acc · s_x · s_w + b, in place.
        acc, self.kernel = _int8_matmul(qx, self.q_weight.t(), self.kernel_choice, out_float=True)
        y = acc.mul_(sx).mul_(self.w_scale)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, activations={self.activations!r}, kernel={self.kernel!r}"
        )


class LLMInt8Linear(nn.Module):
    """LLM.int8() linear layer: int8 weights per output channel, outlier input features in float.

    Like bitsandbytes, only the int8 weight is stored; the outlier columns are
    multiplied with their dequantized weights in float (Dettmers et al. 2022, Sec. 3.2),
    so storage stays at one byte per weight. ``n_outliers`` counts the outlier
    features seen in the last forward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: float = 6.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.threshold = in_features, out_features, float(threshold)
        self.register_buffer("q_weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.n_outliers = 0
        self.kernel = "not run yet"

    @classmethod
    def from_float(cls, weight: Tensor, bias: Tensor | None = None, threshold: float = 6.0) -> "LLMInt8Linear":
        check_weight(weight, bias)
        if not isinstance(threshold, (int, float)) or math.isnan(threshold) or threshold < 0:
            raise ValueError(f"threshold={threshold!r} must be a number >= 0, e.g. 6.0")
        m = cls(weight.shape[1], weight.shape[0], bias is not None, threshold)
        m.q_weight, m.w_scale = _per_row_weight(weight.detach().float())
        if bias is not None:
            m.bias = bias.detach().float().clone()
        return m

    @property
    def weight(self) -> Tensor:
        return self.q_weight.float() * self.w_scale[:, None]

    def forward(self, x: Tensor) -> Tensor:
        x2 = _check_input(x, self.in_features)
        is_out = (x2.abs() >= self.threshold).any(dim=0)
        self.n_outliers = int(is_out.sum())
        y = x2.new_zeros(x2.shape[0], self.out_features)
        if self.n_outliers < self.in_features:
            reg = (~is_out).nonzero().flatten()
            qx, sx = _per_token(x2[:, reg], 127)
            acc, self.kernel = _int8_matmul(qx, self.q_weight[:, reg].t(), out_float=True)
            y = y + acc.mul_(sx).mul_(self.w_scale)
        if self.n_outliers:
            out = is_out.nonzero().flatten()
            y = y + x2[:, out] @ (self.q_weight[:, out].float() * self.w_scale[:, None]).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, threshold={self.threshold}"
