"""What tensor and sequence parallelism cost: bytes on the wire and activation memory.

Pure functions, no communication. Units: bytes (GB = 1e9 bytes where printed).

- :func:`tp_comm_bytes`: per transformer layer, each rank sends what the ring collectives
  of Megatron's f and g send. Without sequence parallelism a layer runs 2 all-reduces
  forward and 2 backward, each sending 2(p−1)/p of the [B, T, C] activation; with it,
  each all-reduce becomes a reduce-scatter plus an all-gather, (p−1)/p each: the same
  bytes (Korthikanti et al. 2022, Sec. 4.2.2).
- :func:`activation_memory_bytes`: Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models" (arXiv:2205.05198), Sec. 4 and Table 2,
  with 16-bit activations (2 bytes) and 1-byte dropout masks, per layer × layers.
"""

from __future__ import annotations

from minillm.validate import check_choice, check_int, check_number

__all__ = ["tp_comm_bytes", "activation_memory_bytes", "RECOMPUTE"]

RECOMPUTE = ("none", "selective", "full")


def tp_comm_bytes(shape: tuple[int, int, int], tp: int, sequence_parallel: bool = False, bytes_per_elem: float = 4) -> dict:
    """Bytes one rank sends per transformer layer under ``tp``-way tensor parallelism.

    shape: the activation (batch, seq_len, hidden); ``bytes_per_elem`` 4 for fp32 (the
    simulator's tensors), 2 for bf16. Returns ``forward``, ``backward`` and ``total``
    bytes, and ``collectives``: the calls per direction, e.g. {"all_reduce": 2}.
    """
    B, T, C = (check_int(n, v) for n, v in zip(("batch", "seq_len", "hidden"), shape))
    tp = check_int("tp", tp)
    bytes_per_elem = check_number("bytes_per_elem", bytes_per_elem, strict=True)
    n = B * T * C * bytes_per_elem
    frac = (tp - 1) / tp
    if sequence_parallel:
        per_direction = 2 * frac * n + 2 * frac * n  # 2 all-gathers + 2 reduce-scatters
        calls = {"all_gather": 2, "reduce_scatter": 2}
    else:
        per_direction = 2 * (2 * frac * n)  # 2 ring all-reduces
        calls = {"all_reduce": 2}
    return {"forward": per_direction, "backward": per_direction, "total": 2 * per_direction, "collectives": calls}


def activation_memory_bytes(
    seq_len: int,
    batch: int,
    hidden: int,
    n_heads: int,
    n_layers: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
) -> float:
    """Activation bytes a rank stores for the backward pass (Korthikanti et al. 2022, Table 2).

    Per layer, with s = seq_len, b = batch, h = hidden, a = n_heads, t = tp:

    | | none | selective | full |
    |---|---|---|---|
    | no parallelism (t = 1) | sbh(34 + 5as/h) | 34sbh | 2sbh |
    | tensor parallel | sbh(10 + 24/t + 5as/(ht)) | sbh(10 + 24/t) | 2sbh |
    | tensor + sequence parallel | sbh(34/t + 5as/(ht)) | 34sbh/t | 2sbh/t |

    The 10sbh that tensor parallelism alone cannot split are the LayerNorm inputs, the
    dropout masks and outputs and the residual stream; sequence parallelism splits them.
    Selective recomputation drops the 5as²b attention term (softmax, its dropout mask,
    scores); full recomputation keeps only each layer's input. Bytes, times ``n_layers``.
    """
    s, b, h = check_int("seq_len", seq_len), check_int("batch", batch), check_int("hidden", hidden)
    a, L, t = check_int("n_heads", n_heads), check_int("n_layers", n_layers), check_int("tp", tp)
    check_choice("recompute", recompute, RECOMPUTE)
    sbh = s * b * h
    sp = sequence_parallel and t > 1
    if recompute == "full":
        per_layer = 2 * sbh / (t if sp else 1)
    else:
        attention = 0.0 if recompute == "selective" else 5 * a * s / (h * t)
        linear = 34 / t if sp else 10 + 24 / t
        per_layer = sbh * (linear + attention)
    return per_layer * L
