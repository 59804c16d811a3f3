"""Quantized linear layers on int8 GEMMs (lesson 04).

- :class:`Int8Linear`: W8A8, int8 weights per output channel, int8 activations per
  token (dynamic) or per tensor (static, from calibration). Float in, float out.
- :func:`llm_int8_matmul` / :class:`LLMInt8Linear`: LLM.int8() mixed-precision
  decomposition (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for
  Transformers at Scale", Sec. 3.2).

Both layers share :class:`Int8WeightLinear`: the int8 weight with one scale per
output channel, the float bias, the input check, the repr and the storage count.
Weight-only int4 (packing and :class:`WeightOnlyLinear`) is in int4.py; the integer
GEMM kernels themselves (int8 x int8 -> int32, and why float32 is exact for
K <= 1024) are in int8_gemm.py; the number format is in quant_core.py.

The forward of :class:`Int8Linear` is kept lean, because everything around the GEMM
is overhead that int8 must win back: one pass to find the per-token scales, one to
round, the GEMM, and a two-step scale epilogue. The kernel is chosen (and the
arguments checked) on the first call only; later calls with the same device and
kernel choice call it directly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minillm.compress.int8_gemm import (
    FP32_EXACT,
    ONEDNN,
    _int8_matmul,
    fp32_matmul_is_ieee,
    int8_matmul,
    onednn_pack,
    onednn_scaled_matmul,
)
from minillm.compress.quant_core import (
    EPS,
    check_float_tensor,
    check_weight,
    per_channel_weight,
    per_token_codes,
    per_token_int8,
    round_clamp,
)
from minillm.validate import check_choice, check_number, is_number

__all__ = [
    "vectorwise_int8_matmul",
    "llm_int8_matmul",
    "Int8WeightLinear",
    "Int8Linear",
    "LLMInt8Linear",
]

KERNEL_CHOICES = ("auto", "onednn", "torch._int_mm", "fp32-exact", "fallback")


# --------------------------------------------------------------------------- functions


def _check_pair(x: Tensor, w: Tensor) -> None:
    check_float_tensor(x, "x")
    check_float_tensor(w, "w")
    if w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"w must be [N, K] with K = x.shape[-1] = {x.shape[-1]}, got {tuple(w.shape)}")


def vectorwise_int8_matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` in int8: per-token x scales, per-output-channel w scales (LLM.int8() Sec. 3.1).

    x: [..., K] float, w: [N, K] float -> [..., N] float32.
    ``y[m, n] = s_x[m] · s_w[n] · Σ_k qx[m, k] · qw[n, k]`` with the sum in int32.
    """
    _check_pair(x, w)
    qw, sw = per_channel_weight(w.float())
    qx, sx = per_token_int8(x.reshape(-1, x.shape[-1]).float())
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
    _check_pair(x, w)
    threshold = _check_threshold(threshold)
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


def _check_threshold(threshold) -> float:
    """LLM.int8()'s outlier threshold: a number >= 0; inf is allowed (no outliers)."""
    if is_number(threshold) and threshold == math.inf:
        return math.inf
    return check_number("threshold", threshold, minimum=0.0)


# --------------------------------------------------------------------------- the shared base


class Int8WeightLinear(nn.Module):
    """The part every int8-weight linear layer shares: ``y = x @ W.T + b`` with W stored in int8.

    Buffers: ``q_weight`` [out, in] int8 (symmetric, one scale per output channel),
    ``w_scale`` [out] float32 and ``bias`` [out] float32 or None. Subclasses add the
    forward. ``kernel`` names the GEMM that ran in the last forward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("q_weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("w_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.kernel = "not run yet"

    def _set_weight(self, weight: Tensor, bias: Tensor | None) -> None:
        """Quantize a float weight [out, in] per output channel; keep bias [out] in float32."""
        self.q_weight, self.w_scale = per_channel_weight(weight.detach().float())
        if bias is not None:
            self.bias = bias.detach().float().clone()

    @property
    def weight(self) -> Tensor:
        """The dequantized float weight [out, in] (for inspection; storage is ``q_weight``)."""
        return self.q_weight.float() * self.w_scale[:, None]

    @property
    def format_bits(self) -> int:
        """Bits a packed file format needs for the weight: 8 per value + a float32 per scale."""
        return 8 * self.q_weight.numel() + 32 * self.w_scale.numel()

    @property
    def weight_nbytes(self) -> int:
        """Bytes stored for the weight: the int8 codes and the float32 scales (bias not counted)."""
        return self.q_weight.numel() + 4 * self.w_scale.numel()

    def _flat_input(self, x: Tensor) -> Tensor:
        """x [..., in] -> [M, in] float32; a ValueError naming the mismatch.

        Cheap on purpose (it runs in every forward): Python-side shape and dtype checks,
        no pass over the values; a float32 [M, in] input is returned as it is.
        """
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape [..., {self.in_features}] (in_features), got {tuple(getattr(x, 'shape', ()))}"
            )
        if x.dtype != torch.float32:
            if not x.is_floating_point():
                raise ValueError(f"x must be a floating-point tensor, got {x.dtype}; use x.float()")
            x = x.float()
        return x if x.dim() == 2 else x.reshape(-1, self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


# --------------------------------------------------------------------------- W8A8


class Int8Linear(Int8WeightLinear):
    """W8A8 linear layer: ``y = x @ W.T + b`` computed with an int8 x int8 -> int32 GEMM.

    Weights: int8, symmetric, one scale per output channel (``q_weight`` [out, in],
    ``w_scale`` [out]). Activations: int8 symmetric per token, computed on the fly
    (``activations="dynamic"``), or one fixed per-tensor scale from calibration data
    (``"static"``; values beyond the calibrated range are clipped). Because both
    scales factor out of the dot product, ``y = s_x[m] · s_w[n] · (qx @ qw.T)[m, n] + b``
    (Jacob et al. 2018, Eq. 4; LLM.int8() Sec. 3.1). Float in, float out, so it can
    replace a :class:`minillm.model.Linear` anywhere. ``kernel`` names the GEMM that
    ran in the last forward (ONEDNN, "torch._int_mm", "fp32-exact (K<=1024)" or an
    int32 fallback; every one gives the same exact integers, see :func:`int8_matmul`
    and :func:`onednn_pack`); ``kernel_choice`` forces one ("auto" picks by device,
    CPU features and K, and on CPUs with VNNI/AMX oneDNN's GEMM on a packed weight
    wherever it is exact).

    Memory beyond the stored int8 weight, built on first use, outside the state dict
    (the saved model stays int8): on the oneDNN path the packed weight, one more byte
    per weight; on the fp32-exact path (CPUs without int8 dot-product instructions run
    the integer codes through a float32 GEMM) a float32 copy of the codes, because
    converting the int8 weight on every call would cost about a fifth of the GEMM
    itself (1024 x 1024): there the running model is not smaller than float32.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activations: str = "dynamic") -> None:
        super().__init__(in_features, out_features, bias)
        self.activations = check_choice("activations", activations, ("dynamic", "static"))
        self.register_buffer("x_scale", torch.ones(()) if activations == "static" else None)
        self.kernel_choice = "auto"  # one of KERNEL_CHOICES; see int8_matmul and onednn_pack
        self._plan: tuple | None = None  # set by _plan_gemm once a CPU kernel is known
        self._codes_f32: tuple | None = None  # (key, float32 codes [in, out]) for the fp32-exact kernel

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
        check_choice("activations", activations, ("dynamic", "static"))
        if activations == "static":
            if calibration is None:
                raise ValueError("activations='static' needs calibration=<example inputs [..., in_features]>")
            check_float_tensor(calibration, "calibration")
        elif calibration is not None:
            raise ValueError("calibration is only used with activations='static'; drop it for dynamic scales")
        m = cls(weight.shape[1], weight.shape[0], bias is not None, activations)
        m._set_weight(weight, bias)
        if activations == "static":
            m.x_scale = torch.clamp(calibration.detach().abs().max().float() / 127.0, min=EPS)
        return m

    def _float_codes(self) -> Tensor:
        """The int8 weight codes as float32 [in, out] (a transposed view), cached until q_weight changes."""
        w = self.q_weight
        key = (w.data_ptr(), w._version, w.device)
        if self._codes_f32 is None or self._codes_f32[0] != key:
            self._codes_f32 = (key, w.t().float())
        return self._codes_f32[1]

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the caches (oneDNN's packed weight cannot be copied);
        the copy rebuilds them on its first forward."""
        state = self.__dict__.copy()
        state["_plan"] = state["_codes_f32"] = None
        return state

    def _plan_gemm(self, qx: Tensor) -> None:
        """After a checked first call on the CPU, remember how to run the GEMM directly.

        qx [M, in] int8 is that call's input (its M guides oneDNN's blocking). The plan
        is (kernel_choice, q_weight, its version, kernel name, operand): with "auto" and
        torch._int_mm, the weight packed for oneDNN where that is exact here (see
        :func:`onednn_pack`), else torch._int_mm on the transposed view; fp32-exact needs no
        operand. Changing kernel_choice or q_weight (even in place) makes the next call plan again.
        """
        w = self.q_weight
        self._plan = None
        if self.kernel_choice == "onednn" and not (qx.is_cpu and w.is_cpu):
            raise ValueError(f"kernel_choice='onednn' runs on the CPU only (this layer is on {w.device}); use 'auto'")
        if not (qx.is_cpu and w.is_cpu) or self.kernel not in ("torch._int_mm", FP32_EXACT):
            return
        operand = w.t() if self.kernel == "torch._int_mm" else None  # fp32-exact reads _float_codes()
        if self.kernel == "torch._int_mm" and self.kernel_choice in ("auto", "onednn"):
            packed = onednn_pack(w, rows=qx.shape[0])
            if packed is not None:
                self.kernel, operand = ONEDNN, packed
            elif self.kernel_choice == "onednn":
                raise ValueError(
                    "kernel_choice='onednn': oneDNN's packed int8 GEMM is missing here or not exact "
                    "on this CPU (it needs VNNI or AMX); use kernel_choice='auto'"
                )
        self._plan = (self.kernel_choice, w, w._version, self.kernel, operand)

    def _planned(self, codes: Tensor, w_scale: Tensor) -> Tensor | None:
        """The planned GEMM times the weight scales: codes [M, in] (whole numbers held in
        float32) -> float(sums) · s_w [M, out]; None when there is no valid plan."""
        plan, w = self._plan, self._buffers["q_weight"]
        if plan is None or plan[0] != self.kernel_choice or plan[1] is not w or plan[2] != w._version:
            return None
        if plan[3] is ONEDNN:
            return onednn_scaled_matmul(codes.to(torch.int8), plan[4], w_scale)
        if plan[3] == "torch._int_mm":
            return torch.mul(torch._int_mm(codes.to(torch.int8), plan[4]), w_scale)
        if fp32_matmul_is_ieee():  # FP32_EXACT: exact only with IEEE float32 matmuls
            return (codes @ self._float_codes()).mul_(w_scale)
        return None

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in] float -> [..., out] float32.

        The direct path: once a first call on the CPU has planned the GEMM, a float32
        [M, in] input with dynamic scales goes straight to the per-token codes, the planned
        GEMM (which applies the weight scales) and one fused multiply-add for the token
        scales and the bias, after checks that cost no pass over x. Everything else (other
        shapes and dtypes, static scales, the first call, other devices) takes the general
        path below, whose first CPU call checks the arguments and picks the kernel.
        """
        buffers = self._buffers  # nn.Module.__getattr__ is slow on a hot path
        if (
            self._plan is not None
            and type(x) is Tensor
            and x.dtype is torch.float32
            and x.is_cpu
            and len(shape := x.shape) == 2
            and shape[1] == self.in_features
            and shape[0] > 0
            and self.activations == "dynamic"
        ):
            codes, sx = per_token_codes(x)
            y = self._planned(codes, buffers["w_scale"])
            if y is not None:
                return self._add_token_scale(y, sx, buffers["bias"])
        x2 = self._flat_input(x)
        if self.activations == "dynamic":
            codes, sx = per_token_codes(x2)
        else:
            sx = self.x_scale
            codes = round_clamp(x2.detach(), sx, 0, -127, 127)
        y = self._planned(codes, buffers["w_scale"]) if codes.shape[0] > 0 and codes.is_cpu else None
        if y is None:
            qx = codes.to(torch.int8)
            acc, self.kernel = _int8_matmul(qx, self.q_weight.t(), self._dispatch_choice(), out_float=True)
            self._plan_gemm(qx)
            y = acc.mul_(buffers["w_scale"])
        y = self._add_token_scale(y, sx, buffers["bias"])
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)

    def _dispatch_choice(self) -> str:
        """The kernel_choice as :func:`int8_matmul` understands it ("onednn" first runs torch._int_mm)."""
        choice = check_choice("kernel_choice", self.kernel_choice, KERNEL_CHOICES)
        return "torch._int_mm" if choice == "onednn" else choice

    @staticmethod
    def _add_token_scale(y: Tensor, sx: Tensor, bias: Tensor | None) -> Tensor:
        """y · s_x + b, in place: y [M, out] = float(sums) · s_w, s_x [M, 1] (or a scalar
        tensor), b [out] or None. The epilogue in two roundings, weight scale first:
        ``(float(acc) · s_w) · s_x + b``, the same on every kernel."""
        return torch.addcmul(bias, y, sx, out=y) if bias is not None else y.mul_(sx)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activations={self.activations!r}, kernel={self.kernel!r}"


# --------------------------------------------------------------------------- LLM.int8()


class LLMInt8Linear(Int8WeightLinear):
    """LLM.int8() linear layer: int8 weights per output channel, outlier input features in float.

    Like bitsandbytes, only the int8 weight is stored; the outlier columns are
    multiplied with their dequantized weights in float (Dettmers et al. 2022, Sec. 3.2),
    so storage stays at one byte per weight. ``n_outliers`` counts the outlier
    features seen in the last forward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: float = 6.0) -> None:
        super().__init__(in_features, out_features, bias)
        self.threshold = _check_threshold(threshold)
        self.n_outliers = 0

    @classmethod
    def from_float(cls, weight: Tensor, bias: Tensor | None = None, threshold: float = 6.0) -> "LLMInt8Linear":
        check_weight(weight, bias)
        m = cls(weight.shape[1], weight.shape[0], bias is not None, _check_threshold(threshold))
        m._set_weight(weight, bias)
        return m

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., in] float -> [..., out] float32."""
        x2 = self._flat_input(x)
        is_out = (x2.abs() >= self.threshold).any(dim=0)
        self.n_outliers = int(is_out.sum())
        y = x2.new_zeros(x2.shape[0], self.out_features)
        if self.n_outliers < self.in_features:
            reg = (~is_out).nonzero().flatten()
            qx, sx = per_token_int8(x2[:, reg])
            acc, self.kernel = _int8_matmul(qx, self.q_weight[:, reg].t(), out_float=True)
            y = y + acc.mul_(sx).mul_(self.w_scale)
        if self.n_outliers:
            out = is_out.nonzero().flatten()
            y = y + x2[:, out] @ (self.q_weight[:, out].float() * self.w_scale[:, None]).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, threshold={self.threshold}"
