"""Shared fixtures for tests/parallel: the tiny GPT, its data, the single-device reference, rank functions.

Rank functions live at module level so they also work with the 'spawn' start method.
The training itself is minillm.parallel's (train_single, train_replica), with
torch.optim.AdamW for plain DP and the reference, so that the DP runs are checked
against PyTorch's optimizer (ZeRO's sharded AdamW against it too).
"""

from __future__ import annotations

import torch

from minillm.model import GPT, GPTConfig
from minillm.parallel import max_abs_diff, train_replica, train_single
from minillm.threads import one_thread

__all__ = ["TINY", "BATCH", "STEPS", "HYPER", "VARIANTS", "tiny_model", "tiny_data", "reference_state",
           "reference_losses", "train_variant", "train_all_variants", "max_abs_diff"]

TINY = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
BATCH = 8  # sequences per global batch: splits over 1, 2 and 4 ranks and 2 micro-batches
STEPS = 3
# eps=1e-6 rather than torch's 1e-8: the key bias of attention has a gradient that is
# exactly zero in exact arithmetic (softmax ignores a per-row constant), so what
# autograd returns is float noise of about 1e-12. Adam divides it by (|g| + eps):
# with eps=1e-8 the noise alone moves that bias by ~lr·1e-4, and any change in
# summation order (two AdamW implementations, or p ranks' partial sums) shows up
# at ~5e-6 after 3 steps. With eps=1e-6 the noise stays ~100x below the tolerance.
HYPER = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
# The variants every backend is checked on: (name, ZeRO stage or None for DP, accum_steps, bucket_bytes)
VARIANTS = [
    ("dp naive", None, 1, None),
    ("dp bucketed + accumulation", None, 2, 2000),
    ("zero-1", 1, 1, None),
    ("zero-2 + accumulation", 2, 2, None),
    ("zero-3 + accumulation", 3, 2, None),
]


def tiny_model(seed: int = 0, config: GPTConfig = TINY) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def tiny_data(steps: int = STEPS, batch: int = BATCH, seed: int = 1, config: GPTConfig = TINY) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    V, T = config.vocab_size, config.block_size
    return [(torch.randint(0, V, (batch, T), generator=g), torch.randint(0, V, (batch, T), generator=g)) for _ in range(steps)]


@one_thread()
def reference_state(model: GPT, data) -> dict[str, torch.Tensor]:
    """Plain single-device training with torch.optim.AdamW on the full batch: the reference."""
    return train_single(model, data, optimizer=torch.optim.AdamW, **HYPER)[1]


@one_thread()
def reference_losses(model: GPT, data) -> list[float]:
    return train_single(model, data, optimizer=torch.optim.AdamW, **HYPER)[0]


def train_variant(comm, model, data, stage, accum_steps, bucket_bytes):
    """Rank code: train a copy of ``model`` with DP (stage None) or ZeRO; return its state and losses."""
    optimizer = torch.optim.AdamW if stage is None else None  # ZeRO stages: ZeroOptimizer's own AdamW
    losses, state = train_replica(comm, model, data, stage, accum_steps, bucket_bytes, optimizer=optimizer, **HYPER)
    return state, losses


def train_all_variants(comm, model, data):
    """Rank code: every variant of VARIANTS in one run (one process launch on gloo)."""
    return [train_variant(comm, model, data, stage, accum, bucket) for _, stage, accum, bucket in VARIANTS]
