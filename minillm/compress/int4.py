"""Weight-only int4: two values per byte, one scale per group (lesson 04).

At 4 bits a weight matrix shrinks 8x before scales. One scale per output row is
too coarse at 16 levels, so weights are quantized in groups of ``group_size``
neighbouring input columns (Frantar et al. 2023, GPTQ; Lin et al. 2024, AWQ; both
use groups of 128 for LLMs, the course uses 32 for its small model). Storage is
``bits + 32 / group_size`` bits per weight with float32 scales.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minillm.compress.quant_core import check_bits, check_weight, quantize

__all__ = ["pack_int4", "unpack_int4", "WeightOnlyLinear"]


def pack_int4(q: Tensor) -> Tensor:
    """Pack signed 4-bit values two to a byte: q [..., 2n] int in [-8, 7] -> uint8 [..., n].

    Element 2i goes into the low nibble and 2i+1 into the high nibble, each in
    4-bit two's complement.
    """
    if not isinstance(q, Tensor) or q.is_floating_point() or q.dtype == torch.bool:
        raise ValueError(f"q must be an integer tensor, got {getattr(q, 'dtype', type(q).__name__)}; use q.to(torch.int8)")
    if q.dim() == 0 or q.shape[-1] % 2 != 0:
        raise ValueError(f"q's last dimension must be even to pair values, got shape {tuple(q.shape)}; pad it with a 0")
    if q.numel() and (int(q.min()) < -8 or int(q.max()) > 7):
        raise ValueError(f"q holds values in [{int(q.min())}, {int(q.max())}], outside int4's [-8, 7]; quantize with bits=4")
    nib = q.to(torch.int16) & 0xF  # two's-complement nibble, 0..15
    return (nib[..., 0::2] | (nib[..., 1::2] << 4)).to(torch.uint8)


def unpack_int4(packed: Tensor) -> Tensor:
    """Inverse of :func:`pack_int4`: uint8 [..., n] -> int8 [..., 2n] in [-8, 7]."""
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor from pack_int4, got {getattr(packed, 'dtype', type(packed).__name__)}")
    p = packed.to(torch.int16)
    nibbles = torch.stack([p & 0xF, p >> 4], dim=-1)  # [..., n, 2]
    signed = nibbles - ((nibbles & 0x8) << 1)  # 8..15 -> -8..-1 (sign extension)
    return signed.reshape(*packed.shape[:-1], 2 * packed.shape[-1]).to(torch.int8)


# --------------------------------------------------------------------------- layer


class WeightOnlyLinear(nn.Module):
    """Weight-only quantized linear (e.g. W4A32): int weights, float activations.

    Weights are symmetric ``bits``-bit, one scale per group of ``group_size`` input
    columns of each output row (per output channel when ``group_size`` is None).
    At 4 bits two values share a byte (:func:`pack_int4`), so with float32 scales
    a weight costs ``4 + 32/group_size`` bits (5 bits at group 32, 0.156x of float32).
    The forward dequantizes the whole weight and runs a float matmul: this saves
    memory, not compute. Weight-only int4 therefore helps where the matmul is
    memory-bound, as in small-batch decoding on a GPU or a CPU (Frantar et al. 2023,
    GPTQ; Lin et al. 2024, AWQ; llama.cpp's 4-bit formats), and not in a
    compute-bound GEMM over many tokens. Bit widths other than 4 keep one code per
    int8 byte.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 4, group_size: int | None = 32):
        super().__init__()
        check_bits(bits)
        g = in_features if group_size is None else group_size
        if in_features % g != 0:
            raise ValueError(f"group_size={group_size} does not divide in_features={in_features}; use e.g. 32 or None")
        if bits == 4 and in_features % 2 != 0:
            raise ValueError(f"in_features={in_features} must be even to pack int4 two to a byte")
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        cols = in_features // 2 if bits == 4 else in_features
        dtype = torch.uint8 if bits == 4 else torch.int8
        self.register_buffer("q_weight", torch.zeros(out_features, cols, dtype=dtype))
        self.register_buffer("scale", torch.ones(out_features, in_features // g))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(
        cls, weight: Tensor, bias: Tensor | None = None, bits: int = 4, group_size: int | None = 32
    ) -> "WeightOnlyLinear":
        check_weight(weight, bias)
        check_bits(bits)
        m = cls(weight.shape[1], weight.shape[0], bias is not None, bits, group_size)
        if group_size is None:
            qt = quantize(weight.detach().float(), bits, "symmetric", "channel", axis=0)
        else:
            qt = quantize(weight.detach().float(), bits, "symmetric", "group", axis=0, group_size=group_size)
        m.q_weight = pack_int4(qt.q) if bits == 4 else qt.q
        m.scale = qt.scale.reshape(weight.shape[0], -1).clone()
        if bias is not None:
            m.bias = bias.detach().float().clone()
        return m

    @property
    def weight(self) -> Tensor:
        """The dequantized float weight [out, in]."""
        q = unpack_int4(self.q_weight) if self.bits == 4 else self.q_weight
        G = self.scale.shape[1]
        w = q.float().reshape(self.out_features, G, -1) * self.scale.unsqueeze(-1)
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight.t()
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, bias={self.bias is not None}"
        )
