"""Exact int8 GEMM: int8 x int8 -> int32, and the kernels that compute it (lesson 04).

- :func:`int8_matmul`: the public product, exact for every shape;
- :func:`int8_kernel`: which kernel "auto" picks here; :func:`cpu_int8_features`: what the CPU offers;
- :func:`onednn_pack` / :func:`onednn_scaled_matmul`: the same integer GEMM on a weight
  packed once, with the per-output-channel weight scales applied in the GEMM's epilogue
  (the fast path of :class:`~minillm.compress.int8_linear.Int8Linear` on CPUs with VNNI/AMX).

The layers built on it (Int8Linear, LLM.int8()) are in int8_linear.py.

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

Packing and fusing (the oneDNN path). ``torch._int_mm`` takes the weight as a plain
matrix, so each call reads it in that layout, and its int32 result needs a pass of
its own to be scaled. Production int8 linear layers instead reorder the weight once
into the blocked layout the GEMM's inner loop reads, and apply the scales while the
accumulators are still in registers. PyTorch exposes oneDNN's version of this for its
x86 quantization flow: ``torch.ops.onednn.qlinear_prepack`` (pack once) and
``torch.ops.onednn.qlinear_pointwise`` (GEMM + epilogue). With an activation scale of
1 and the weight's per-channel scales, it returns ``float(acc) · s_w``: the same int32
accumulation, converted and multiplied once. Integer sums are exact only if the
kernel neither saturates nor rescales (oneDNN's int8 code for CPUs without VNNI may
halve the weights to avoid 16-bit overflow), so :func:`onednn_pack` packs only after
checking, on inputs with extreme values, that the result equals ``torch._int_mm``'s
bit for bit, and returns None otherwise or where the operators are missing.
"""

from __future__ import annotations

import functools
import platform

import torch
from torch import Tensor

from minillm.validate import check_int

__all__ = [
    "cpu_int8_features",
    "int8_matmul",
    "int8_kernel",
    "fp32_matmul_is_ieee",
    "fp32_exact_applies",
    "fp32_exact_max_k",
    "onednn_pack",
    "onednn_scaled_matmul",
    "ONEDNN",
]


def fp32_exact_max_k(a_bits: int = 8, b_bits: int = 8, symmetric: bool = False, significand_bits: int = 24) -> int:
    """Largest inner size K for which a float GEMM of signed integer codes is exact, for every input.

    a_bits, b_bits: the codes' widths. ``symmetric=False`` allows the whole two's-complement
    range (largest magnitude ``2**(bits-1)``, e.g. -128); ``True`` the course's symmetric
    grid (``2**(bits-1) - 1``, e.g. 127). significand_bits: 24 for float32, 53 for float64,
    11 for float16, 8 for bfloat16. A float with a p-bit significand holds every integer of
    magnitude <= 2**p; every partial sum of a K-term dot product is at most K·|a|max·|b|max
    (module docstring), so K = floor(2**p / (|a|max·|b|max)); 0 when a single product
    does not fit. int8 x int8 in float32: 1024 (1040 on the symmetric grid).
    """
    for name, v in (("a_bits", a_bits), ("b_bits", b_bits)):
        check_int(name, v, minimum=2)
    check_int("significand_bits", significand_bits, minimum=1)
    if not isinstance(symmetric, bool):
        raise ValueError(f"symmetric={symmetric!r} must be True or False")
    largest = [2 ** (b - 1) - (1 if symmetric else 0) for b in (a_bits, b_bits)]
    return 2**significand_bits // (largest[0] * largest[1])


MAX_EXACT_K = (2**31 - 1) // (128 * 128)  # 131071: beyond this even int32 can overflow
# float32 holds every integer up to 2^24 exactly; a K-term int8 dot product stays
# within K·2^14 (module docstring, steps 1-3), so K <= 2^24 / 2^14 = 1024 is exact.
FP32_EXACT_MAX_K = fp32_exact_max_k(8, 8)  # 1024
FP32_EXACT = f"fp32-exact (K<={FP32_EXACT_MAX_K})"
ONEDNN = "oneDNN int8 (packed weight, scales fused)"
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


# --------------------------------------------------------------------------- packed weights


def onednn_scaled_matmul(qx: Tensor, packed: tuple, w_scale: Tensor) -> Tensor:
    """``float(qx @ W.T) · s_w`` on a weight packed by :func:`onednn_pack`.

    qx [M, K] int8 (contiguous), ``packed`` from ``onednn_pack(W)``, w_scale [N]
    float32 -> [M, N] float32: the int32 sums, converted and multiplied by the scale
    of their output channel, inside the GEMM (no check of the arguments: the hot path).
    """
    weight, zero_points = packed
    return _qlinear()(qx, 1.0, 0, weight, w_scale, zero_points, None, 1.0, 0, torch.float32, "none", [], "")


@functools.lru_cache(maxsize=1)
def _qlinear():
    """oneDNN's int8 linear, its one overload resolved once (an AttributeError where torch lacks it)."""
    return torch.ops.onednn.qlinear_pointwise.default


def onednn_pack(w: Tensor, rows: int = 64) -> tuple | None:
    """Pack an int8 weight w [N, K] for :func:`onednn_scaled_matmul`, if that is exact here.

    ``rows``: a typical number of input rows M (oneDNN picks its blocking for it; any M
    works). Returns the packed weight (an opaque tensor: it cannot be saved or copied)
    with its zero points, or None where the oneDNN operators are missing, fail, or do
    not reproduce ``torch._int_mm(qx, w.T) * s_w`` bit for bit on probe inputs: every
    row +127, every row -127, alternating signs, and random codes (module docstring).
    """
    if not (isinstance(w, Tensor) and w.dtype == torch.int8 and w.dim() == 2 and w.is_cpu) or 0 in w.shape:
        return None
    N, K = w.shape
    if K > MAX_EXACT_K or not hasattr(torch, "_int_mm"):
        return None
    g = torch.Generator().manual_seed(0)
    signs = torch.where(torch.arange(K) % 2 == 0, 127, -127).to(torch.int8)
    probe = torch.cat([
        torch.full((2, K), 127, dtype=torch.int8),
        torch.full((2, K), -127, dtype=torch.int8),
        signs.expand(2, K),
        torch.randint(-127, 128, (max(rows, 1), K), generator=g, dtype=torch.int8),
    ])
    scale = torch.rand(N, generator=g) + 0.5
    try:
        packed = (torch.ops.onednn.qlinear_prepack(w, [max(rows, 1), K]), torch.zeros(N, dtype=torch.long))
        for qx in (probe, probe[:1]):  # a wide product and a single row (oneDNN may pick another kernel)
            if not torch.equal(onednn_scaled_matmul(qx, packed, scale), torch._int_mm(qx, w.t()) * scale):
                return None
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return None
    return packed
