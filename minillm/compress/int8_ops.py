"""Integer kernels and quantized linear layers (lesson 04).

- :func:`int8_matmul`: int8 x int8 -> int32, exact for every shape.
- :class:`Int8Linear`: W8A8, int8 weights per output channel, int8 activations per
  token (dynamic) or per tensor (static, from calibration). Float in, float out.
- :func:`llm_int8_matmul` / :class:`LLMInt8Linear`: LLM.int8() mixed-precision
  decomposition (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for
  Transformers at Scale", Sec. 3.2).

Weight-only int4 (packing and :class:`WeightOnlyLinear`) is in int4.py.

Why the integer accumulator must be int32: one int8 x int8 product reaches
(-128)·(-128) = 2^14, so a dot product over K terms needs 15 + log2(K) bits with
the sign. int32 is exact up to K = (2^31 - 1) // 2^14 = 131071.

When float32 is exact too (the "fp32-exact" kernel). float32 has a 24-bit
significand, so it represents every integer n with |n| <= 2^24 exactly (IEEE 754,
binary32). Cast both int8 operands to float32 and multiply:

1. every product a_ik·b_kj is an integer with |a_ik·b_kj| <= 128·128 = 2^14, exact;
2. every partial sum, in *any* order or blocking a BLAS library picks (and with
   fused multiply-adds), is a sum of some of those products, so it is an integer
   with magnitude <= K·2^14;
3. if K·2^14 <= 2^24, i.e. **K <= 1024**, every intermediate result is a
   representable integer, so every float32 operation returns it exactly (rounding
   of a representable value is the identity). The final float32 result equals the
   integer dot product bit for bit.

The bound is tight: at K = 1025 a row of 1024 values -128 and one 1, against a
column of the same, sums to 2^24 + 1, which float32 cannot hold. (With operands
restricted to [-127, 127], as the course's symmetric quantizer produces, the
bound loosens to K·127² <= 2^24, K <= 1040; the kernel uses the bound that holds
for every int8 input.) The argument needs IEEE float32 arithmetic, so the path is
taken only on the CPU and only while torch has not been told to trade matmul
precision for speed (``torch.set_float32_matmul_precision("medium")`` lets oneDNN
use bfloat16). Above K = 1024 the kernel is *not* exact and is never used there:
``int8_matmul`` falls back to int32.

On a CPU without int8 dot-product instructions (no VNNI, no AMX) this fp32 path is
the fastest exact int8 GEMM we have: float32 BLAS is heavily optimised, an int32
matmul is not (measured about 3x slower) and torch._int_mm far slower still.
"""

from __future__ import annotations

import functools
import math
import platform

import torch
from torch import Tensor, nn

from minillm.compress.quantize import (
    EPS,
    check_bits,
    check_float_tensor,
    quantize,
    qrange,
    round_clamp,
)

__all__ = [
    "cpu_int8_features",
    "int8_matmul",
    "int8_kernel",
    "quantize_per_token",
    "vectorwise_int8_matmul",
    "llm_int8_matmul",
    "Int8Linear",
    "LLMInt8Linear",
]

MAX_EXACT_K = (2**31 - 1) // (128 * 128)  # 131071: beyond this even int32 can overflow
# float32 holds every integer up to 2^24 exactly; a K-term int8 dot product stays
# within K·2^14 (module docstring, steps 1-3), so K <= 2^24 / 2^14 = 1024 is exact.
FP32_EXACT_MAX_K = 2**24 // (128 * 128)  # 1024
FP32_EXACT = f"fp32-exact (K<={FP32_EXACT_MAX_K})"
KERNELS = ("auto", "torch._int_mm", "fp32-exact", "fallback")


# --------------------------------------------------------------------------- int8 GEMM


@functools.lru_cache(maxsize=1)
def cpu_int8_features() -> dict:
    """Which int8 dot-product instructions this x86 CPU advertises (Linux /proc/cpuinfo flags).

    ``vnni``: AVX512-VNNI or AVX-VNNI (``vpdpbusd``, 4 int8 products summed into an
    int32 in one instruction); ``amx``: AMX-INT8 tile matrix multiply (Sapphire Rapids+).
    ``known`` is False where the flags cannot be read (not Linux, not x86).
    """
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    known = bool(flags) and platform.machine().lower() in ("x86_64", "amd64")
    return {
        "known": known,
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
        "amx": "amx_int8" in flags,
        "avx2": "avx2" in flags,
    }


def _prefer_int_mm_on_cpu() -> bool:
    """torch._int_mm on the CPU is fast only with VNNI/AMX. On an AVX2-only x86 CPU we
    measured it 15-20x slower than an exact int32 matmul (and ~50x slower than fp32),
    so "auto" takes the exact float32 path there (K <= 1024) or the int32 one; all give identical integers."""
    f = cpu_int8_features()
    return not f["known"] or f["vnni"] or f["amx"]


def _pad_for_cuda_int_mm(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Zero-pad to the shapes cuBLASLt's int8 GEMM accepts on CUDA builds of torch._int_mm.

    torch checks M > 16 and K, N multiples of 8 there (aten/src/ATen/native/cuda/Blas.cpp,
    ``_int_mm_out_cuda``). Zero rows/columns add 0 to every dot product, so the
    slice of the padded product is exactly the product.
    """
    M, K = a.shape
    N = b.shape[1]
    up8 = lambda n: (n + 7) // 8 * 8  # noqa: E731
    Mp, Kp, Np = max(up8(M), 24), max(up8(K), 16), max(up8(N), 16)
    if (Mp, Kp, Np) != (M, K, N):
        a = torch.nn.functional.pad(a, (0, Kp - K, 0, Mp - M))
        b = torch.nn.functional.pad(b, (0, Np - N, 0, Kp - K))
    return a.contiguous(), b.contiguous()


def fp32_matmul_is_ieee() -> bool:
    """True unless torch has been allowed to run float32 matmuls in lower precision on the CPU.

    ``torch.set_float32_matmul_precision("medium"/"high")`` or
    ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"/"tf32"`` let oneDNN round
    the inputs to bfloat16/TF32; then float32 results are no longer exact integers.
    """
    try:
        mkldnn = torch.backends.mkldnn.matmul.fp32_precision  # torch >= 2.9
        return mkldnn in ("none", "ieee")
    except (AttributeError, RuntimeError):
        pass
    try:
        return torch.get_float32_matmul_precision() == "highest"
    except RuntimeError:  # legacy and new precision APIs mixed: do not trust float32
        return False


def fp32_exact_applies(a: Tensor, b: Tensor) -> bool:
    """Whether the float32 path gives the exact integer product of a [M, K] and b [K, N]:
    on the CPU, K <= 1024 and IEEE float32 matmuls (see the module docstring)."""
    return a.device.type == "cpu" and a.shape[1] <= FP32_EXACT_MAX_K and fp32_matmul_is_ieee()


def _fp32_exact_matmul(a: Tensor, b: Tensor, out_float: bool = False) -> tuple[Tensor, str]:
    """int8 [M, K] @ int8 [K, N] through a float32 GEMM; exact only where :func:`fp32_exact_applies`.

    The float32 result holds integers of magnitude <= K·2^14 <= 2^24, so the cast
    to int32 is exact as well (``out_float`` skips it for a float epilogue).
    """
    acc = a.float() @ b.float()
    return (acc if out_float else acc.to(torch.int32)), FP32_EXACT


def _exact_integer_matmul(a: Tensor, b: Tensor) -> tuple[Tensor, str]:
    """int32 accumulation without torch._int_mm: an int32 matmul on the CPU, an int32
    broadcast-multiply-and-sum (in row chunks of at most ~64 MB) elsewhere."""
    if a.device.type == "cpu":
        return a.to(torch.int32) @ b.to(torch.int32), "fallback (int32 matmul)"
    M, K = a.shape
    N = b.shape[1]
    rows = max(1, (1 << 24) // max(1, K * N))
    b32 = b.to(torch.int32).unsqueeze(0)
    out = torch.empty(M, N, dtype=torch.int32, device=a.device)
    for i in range(0, M, rows):
        out[i : i + rows] = (a[i : i + rows].to(torch.int32).unsqueeze(2) * b32).sum(1, dtype=torch.int32)
    return out, "fallback (int32 sum)"


def _int8_matmul(a: Tensor, b: Tensor, kernel: str = "auto", out_float: bool = False) -> tuple[Tensor, str]:
    """:func:`int8_matmul` that also returns the name of the kernel that ran.

    ``out_float`` returns the accumulators as float32 (for a layer's float epilogue):
    the fp32-exact kernel then skips a round trip through int32; the others cast.
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor) or t.dtype != torch.int8 or t.dim() != 2:
            raise ValueError(
                f"{name} must be a 2-D int8 tensor, got {getattr(t, 'dtype', type(t).__name__)} "
                f"with shape {tuple(getattr(t, 'shape', ()))}; quantize it first (e.g. quantize(x).q)"
            )
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {tuple(a.shape)} and b is {tuple(b.shape)}: inner sizes differ; b must be [K, N]")
    if a.device != b.device:
        raise ValueError(f"a is on {a.device} and b on {b.device}; move both to one device")
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; use one of {KERNELS}")
    M, K = a.shape
    N = b.shape[1]
    if K > MAX_EXACT_K:
        raise ValueError(f"K={K} can overflow int32 (exact up to K={MAX_EXACT_K}); split K and add the int64 partial sums")
    if M == 0 or N == 0 or K == 0:
        return torch.zeros(M, N, dtype=torch.float32 if out_float else torch.int32, device=a.device), "empty"
    if kernel == "fp32-exact":
        if not fp32_exact_applies(a, b):
            raise ValueError(
                f"kernel='fp32-exact' is exact only on the CPU for K <= {FP32_EXACT_MAX_K} with IEEE float32 "
                f"matmuls (got K={K} on {a.device}, float32 matmuls IEEE: {fp32_matmul_is_ieee()}); use kernel='auto'"
            )
        return _fp32_exact_matmul(a, b, out_float)
    acc = None
    use_int_mm = kernel == "torch._int_mm" or (kernel == "auto" and (a.device.type != "cpu" or _prefer_int_mm_on_cpu()))
    if use_int_mm and hasattr(torch, "_int_mm"):
        try:
            if a.is_cuda:
                ap, bp = _pad_for_cuda_int_mm(a, b)
                acc, name = torch._int_mm(ap, bp)[:M, :N], "torch._int_mm"
            else:
                acc, name = torch._int_mm(a, b), "torch._int_mm"
        except RuntimeError:
            if kernel == "torch._int_mm":
                raise
    elif kernel == "torch._int_mm":
        raise ValueError("kernel='torch._int_mm' was asked for, but this torch has no torch._int_mm; use kernel='auto'")
    if acc is None:
        if kernel == "auto" and fp32_exact_applies(a, b):
            return _fp32_exact_matmul(a, b, out_float)
        acc, name = _exact_integer_matmul(a, b)
    return (acc.float() if out_float else acc), name


def int8_matmul(a: Tensor, b: Tensor, kernel: str = "auto") -> Tensor:
    """Exact integer matrix product: a [M, K] int8 @ b [K, N] int8 -> [M, N] int32.

    Kernels (all return the same integers; the result is exact for every shape):

    - ``"torch._int_mm"``: int8 GEMM with int32 accumulation; fast on CPUs with
      AVX512-VNNI/AMX and on GPUs, very slow on CPUs without them;
    - ``"fp32-exact"``: a float32 GEMM on int8 values cast to float, allowed only on
      the CPU for K <= 1024, where it is provably bit-exact (module docstring);
    - ``"fallback"``: an int32 matmul (CPU) or int32 multiply-and-sum (elsewhere).

    ``"auto"`` picks torch._int_mm on GPUs and on CPUs with VNNI/AMX; otherwise
    fp32-exact when K <= 1024 and the integer fallback above. No path ever uses
    float32 where it could round. Note ``a @ b`` on int8 tensors in torch returns
    int8 and wraps on overflow: 127·127 = 16129 comes back as 16129 - 63·256 = 1.
    """
    return _int8_matmul(a, b, kernel)[0]


def int8_kernel(device: str | torch.device = "cpu", K: int = 32) -> str:
    """Name of the kernel ``int8_matmul(kernel="auto")`` uses on ``device`` for inner size K.

    Probed on a small [16, K] @ [K, 16] product: the choice depends on the device,
    the CPU's instructions and K (fp32-exact only up to K = 1024).
    """
    a = torch.ones(16, K, dtype=torch.int8, device=device)
    return _int8_matmul(a, a.t())[1]


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
