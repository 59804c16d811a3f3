"""The operations of one transformer block, to place on a roofline (lessons 07 and 09)."""

from __future__ import annotations

from minillm.validate import check_int, check_number
from .roofline import Op, gemm_op
from .shapes import as_shape

__all__ = ["layer_ops"]


def layer_ops(shape, batch: int, seq_len: int, context: int | None = None, bytes_per_elem: float = 2) -> list[Op]:
    """The operations of one transformer block's forward pass, to place on a roofline.

    ``batch`` sequences of ``seq_len`` new tokens attend to ``context`` positions
    (default ``seq_len``: a prefill; ``seq_len=1`` with a long context is a decode step).
    Each op reads its inputs from memory and writes its output (no fusion), so the
    byte counts are what an unfused implementation such as minillm's moves.
    Elementwise FLOP counts are rough: ~8 per element for a LayerNorm, ~5 for softmax,
    ~8 for GELU/SwiGLU.
    """
    shape = as_shape(shape)
    b, s = check_int("batch", batch), check_int("seq_len", seq_len)
    ctx = s if context is None else check_int("context", context)
    e = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    tok = b * s
    d, f, H, Q = shape.d_model, shape.d_ff, shape.n_head, shape.head_dim
    up = 2 * f if shape.gated_mlp else f
    scores = b * H * s * ctx
    return [
        Op("layernorm", 8.0 * tok * d, e * (2 * tok * d + 2 * d)),
        gemm_op("qkv", tok, d, shape.q_dim + 2 * shape.kv_dim, e),
        Op("attn scores", 2.0 * scores * Q, e * (tok * shape.q_dim + b * ctx * shape.kv_dim + scores)),
        Op("softmax", 5.0 * scores, e * 2 * scores),
        Op("attn x values", 2.0 * scores * Q, e * (scores + b * ctx * shape.kv_dim + tok * shape.q_dim)),
        gemm_op("attn proj", tok, shape.q_dim, d, e),
        gemm_op("mlp up", tok, d, up, e),
        Op("swiglu" if shape.gated_mlp else "gelu", 8.0 * tok * f, e * tok * (up + f)),
        gemm_op("mlp down", tok, f, d, e),
    ]
