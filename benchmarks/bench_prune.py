"""Pruning: does it make the model faster? Structured pruning against the dense teacher, and CSR
sparse matmul against dense float32 (issue targets: structured >= 1.6x; CSR ratios reported).

Everything on one thread, timed in interleaved rounds (minillm.timing.interleaved_best).
"""

from __future__ import annotations

import torch

from minillm import zoo
from minillm.compress.prune import magnitude_mask
from minillm.compress.sparse import csr_matmul, to_csr
from minillm.compress.structured import prune_heads, prune_neurons
from minillm.threads import one_thread
from minillm.timing import interleaved_best


@torch.no_grad()
def structured_speedup(quick: bool = False) -> dict:
    with one_thread():
        teacher, _ = zoo.load("teacher")
        small = prune_neurons(prune_heads(teacher, 0.5), 0.5)
        x = torch.randint(0, teacher.config.vocab_size, (4, 256), generator=torch.Generator().manual_seed(0))
        best = interleaved_best({"dense": lambda: teacher(x), "pruned": lambda: small(x)}, rounds=3 if quick else 7)
    ratio = best["dense"] / best["pruned"]
    return {
        "name": "structured pruning, 50% of heads and MLP neurons: forward speed-up over the dense teacher",
        "value": ratio,
        "target": ">= 1.6",
        "passed": ratio >= 1.6,
        "note": f"{teacher.num_params():,} -> {small.num_params():,} parameters; batch 4x256, 1 thread; "
        "embeddings and the output head are not pruned",
    }


@torch.no_grad()
def csr_vs_dense(sparsity: float, quick: bool = False) -> dict:
    with one_thread():
        g = torch.Generator().manual_seed(0)
        w = torch.randn(1024, 1024, generator=g)
        w = w * magnitude_mask(w, sparsity)
        x = torch.randn(64, 1024, generator=g)
        csr = to_csr(w)
        best = interleaved_best({"dense": lambda: x @ w.t(), "csr": lambda: csr_matmul(x, csr)}, rounds=3 if quick else 7)
    ratio = best["dense"] / best["csr"]
    return {
        "name": f"CSR matmul (from scratch) speed-up over dense float32 at {sparsity:.0%} sparsity",
        "value": ratio,
        "target": "report",
        "passed": None,
        "note": f"64x1024 @ 1024x1024, 1 thread; CSR {csr.nbytes / 1e6:.2f} MB vs dense {w.numel() * 4 / 1e6:.2f} MB",
    }


def run(quick: bool = False) -> list[dict]:
    return [structured_speedup(quick), csr_vs_dense(0.9, quick), csr_vs_dense(0.99, quick)]
