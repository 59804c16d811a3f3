"""Tensor parallelism (Megatron-LM) and sequence parallelism, on the course's ``Comm``.

Shoeybi et al. 2019, "Megatron-LM" (arXiv:1909.08053), Sec. 3; Korthikanti et al. 2022,
"Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198).

A weight matrix is split across the ``tp`` ranks of a group, so each rank stores and
multiplies 1/tp of it:

- **column-parallel** ``Y = X Aᵀ`` with A split by output rows: every rank needs all of X
  and produces a slice of Y's features. Its input goes through **f** = :func:`copy_to_tp`
  (identity forward, all-reduce backward).
- **row-parallel** ``Z = Y Bᵀ`` with B split by input columns: every rank holds a slice
  of Y's features and produces a *partial* Z; **g** = :func:`reduce_from_tp` (all-reduce
  forward, identity backward) sums them.

An MLP is column then row: one all-reduce forward, one backward. Attention is split by
*heads*: each rank keeps whole heads of Q, K and V (never raw column slices, which
would cut heads apart) and the row-parallel output projection sums their outputs.

**Sequence parallelism** replaces each all-reduce by a reduce-scatter along the sequence
(:func:`reduce_scatter_to_sp`) and the matching f by an all-gather
(:func:`all_gather_from_sp`): the same bytes on the wire, but LayerNorm, dropout and the
residual stream hold only T/tp positions per rank. The LayerNorm (and position-embedding)
gradients are then partial sums: :func:`sync_sequence_parallel_grads` all-reduces them.

Shapes: activations are [B, T, C] (T/tp under sequence parallelism), weights [out, in].
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from minillm import kernels
from minillm.model import GPT, MLP, Block, CausalSelfAttention, Linear

from .comm import Comm
from .tp_comm import (
    all_gather_from_sp,
    copy_to_tp,
    gather_from_tp,
    reduce_from_tp,
    reduce_scatter_to_sp,
    scatter_to_tp,
    split_dim,
)

__all__ = [
    "copy_to_tp",
    "reduce_from_tp",
    "scatter_to_tp",
    "gather_from_tp",
    "reduce_scatter_to_sp",
    "all_gather_from_sp",  # from .tp_comm, re-exported: the lesson meets them here
    "ColumnParallelLinear",
    "RowParallelLinear",
    "ParallelAttention",
    "ParallelMLP",
    "VocabParallelEmbedding",
    "vocab_parallel_cross_entropy",
    "tensor_parallel_gpt",
    "TensorParallelGPT",
    "sync_sequence_parallel_grads",
    "gather_tp_tensors",
]


# --------------------------------------------------------------------------- sharded layers


def _shard(param: Tensor, index: Tensor, dim: int, full_name: str | None = None) -> nn.Parameter:
    """A Parameter holding ``param`` restricted to ``index`` along ``dim``, remembering where it came from."""
    p = nn.Parameter(param.detach().index_select(dim, index).clone())
    p.tp_shard = (dim, full_name)  # type: ignore[attr-defined]
    return p


def _chunk_index(n: int, comm: Comm) -> Tensor:
    if n % comm.world_size:
        raise ValueError(f"{n} rows or columns cannot be split evenly over tp={comm.world_size} ranks")
    k = n // comm.world_size
    return torch.arange(comm.rank * k, (comm.rank + 1) * k)


class _ChargeCompute(torch.autograd.Function):
    """Identity that charges ``flops`` to the simulator's clock forward and twice that backward."""

    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm, flops: float) -> Tensor:
        ctx.comm, ctx.flops = comm, flops
        comm.compute(flops=flops, label="forward")
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy: Tensor):
        ctx.comm.compute(flops=2 * ctx.flops, label="backward")  # input and weight gradients: 2 GEMMs
        return dy, None, None


def charged(y: Tensor, comm: Comm, flops: float) -> Tensor:
    """``y`` unchanged; on the simulator the rank's clock advances by the GEMM's roofline time
    (real backends ignore it), so simulated timelines show compute between the collectives."""
    return _ChargeCompute.apply(y, comm, float(flops))


def _matmul(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    y = torch.addmm(b, x2, w.t()) if b is not None else x2 @ w.t()
    return y.view(*x.shape[:-1], w.shape[0])


class ColumnParallelLinear(nn.Module):
    """``Linear`` split by output rows: x [..., in] (whole) -> y [..., out/tp] (this rank's slice).

    ``gather_output=True`` all-gathers y back to [..., out]. Under ``sequence_parallel``
    the input is [B, T/tp, in] and is all-gathered along the sequence first.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, comm: Comm, gather_output: bool, sequence_parallel: bool):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.comm, self.gather_output, self.sequence_parallel = comm, gather_output, sequence_parallel

    @classmethod
    def from_linear(
        cls,
        linear: Linear,
        comm: Comm,
        gather_output: bool = False,
        sequence_parallel: bool = False,
        rows: Tensor | None = None,
        name: str | None = None,
    ) -> "ColumnParallelLinear":
        """This rank's shard of ``linear``: rows ``rows`` (default: the rank's contiguous chunk)."""
        rows = _chunk_index(linear.out_features, comm) if rows is None else rows
        w = _shard(linear.weight, rows, 0, name and f"{name}.weight")
        b = _shard(linear.bias, rows, 0, name and f"{name}.bias") if linear.bias is not None else None
        return cls(w, b, comm, gather_output, sequence_parallel)

    def forward(self, x: Tensor) -> Tensor:
        x = all_gather_from_sp(x, self.comm) if self.sequence_parallel else copy_to_tp(x, self.comm)
        y = _matmul(x, self.weight, self.bias)
        y = charged(y, self.comm, 2 * x[..., 0].numel() * self.weight.numel())
        return gather_from_tp(y, self.comm) if self.gather_output else y


class RowParallelLinear(nn.Module):
    """``Linear`` split by input columns: x [..., in/tp] (this rank's slice) -> y [..., out] (summed).

    ``input_is_parallel=False`` takes the whole x and keeps this rank's slice first. The
    partial products are all-reduced (or reduce-scattered along the sequence under
    ``sequence_parallel``); the bias, replicated, is added once after the sum.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, comm: Comm, input_is_parallel: bool, sequence_parallel: bool):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.comm, self.input_is_parallel, self.sequence_parallel = comm, input_is_parallel, sequence_parallel
        if bias is not None and sequence_parallel:
            bias.sequence_parallel = True  # type: ignore[attr-defined]  # its gradient is a partial sum

    @classmethod
    def from_linear(
        cls,
        linear: Linear,
        comm: Comm,
        input_is_parallel: bool = True,
        sequence_parallel: bool = False,
        cols: Tensor | None = None,
        name: str | None = None,
    ) -> "RowParallelLinear":
        """This rank's shard of ``linear``: columns ``cols`` (default: the rank's contiguous chunk)."""
        cols = _chunk_index(linear.in_features, comm) if cols is None else cols
        w = _shard(linear.weight, cols, 1, name and f"{name}.weight")
        b = nn.Parameter(linear.bias.detach().clone()) if linear.bias is not None else None
        return cls(w, b, comm, input_is_parallel, sequence_parallel)

    def forward(self, x: Tensor) -> Tensor:
        if not self.input_is_parallel:
            x = scatter_to_tp(x, self.comm)
        y = charged(_matmul(x, self.weight, None), self.comm, 2 * x[..., 0].numel() * self.weight.numel())
        y = reduce_scatter_to_sp(y, self.comm) if self.sequence_parallel else reduce_from_tp(y, self.comm)
        return y + self.bias if self.bias is not None else y


def _head_rows(n_head: int, head_dim: int, comm: Comm) -> tuple[Tensor, Tensor]:
    """Rows of c_attn (Q, K, V of this rank's heads) and columns of c_proj (their outputs)."""
    if n_head % comm.world_size:
        raise ValueError(
            f"n_head={n_head} cannot be split over tp={comm.world_size} ranks: each rank keeps whole heads; "
            f"choose tp among the divisors of {n_head}"
        )
    inner, per = n_head * head_dim, n_head // comm.world_size
    cols = torch.arange(comm.rank * per * head_dim, (comm.rank + 1) * per * head_dim)
    rows = torch.cat([cols, cols + inner, cols + 2 * inner])  # Q, K, V blocks of c_attn's output
    return rows, cols


class ParallelAttention(nn.Module):
    """Causal self-attention with ``n_head / tp`` whole heads per rank: [B, T(/tp), C] -> same."""

    def __init__(self, attn: CausalSelfAttention, comm: Comm, sequence_parallel: bool = False, name: str = "") -> None:
        super().__init__()
        rows, cols = _head_rows(attn.n_head, attn.head_dim, comm)
        self.n_head = attn.n_head // comm.world_size
        self.head_dim = attn.head_dim
        self.c_attn = ColumnParallelLinear.from_linear(
            attn.c_attn, comm, sequence_parallel=sequence_parallel, rows=rows, name=f"{name}c_attn"
        )
        self.c_proj = RowParallelLinear.from_linear(
            attn.c_proj, comm, sequence_parallel=sequence_parallel, cols=cols, name=f"{name}c_proj"
        )

    def forward(self, x: Tensor) -> Tensor:
        qkv = self.c_attn(x)  # [B, T, 3 · local C]: the sequence is whole here
        B, T, _ = qkv.shape
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        y = kernels.causal_attention_core(q, k, v).transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.c_proj(y)


class ParallelMLP(nn.Module):
    """c_fc column-parallel, GELU on the local slice, c_proj row-parallel: one all-reduce each way."""

    def __init__(self, mlp: MLP, comm: Comm, sequence_parallel: bool = False, name: str = "") -> None:
        super().__init__()
        self.c_fc = ColumnParallelLinear.from_linear(mlp.c_fc, comm, sequence_parallel=sequence_parallel, name=f"{name}c_fc")
        self.c_proj = RowParallelLinear.from_linear(mlp.c_proj, comm, sequence_parallel=sequence_parallel, name=f"{name}c_proj")

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(kernels.gelu(self.c_fc(x)))


class VocabParallelEmbedding(nn.Module):
    """Token embedding with the vocabulary split over ranks: ids [B, T] -> [B, T, C].

    Each rank looks up the ids in its own rows and writes zeros for the others; the sum
    over ranks (an all-reduce, or a reduce-scatter along the sequence under sequence
    parallelism) is the full embedding.
    """

    def __init__(self, weight: Tensor, comm: Comm, sequence_parallel: bool = False) -> None:
        super().__init__()
        self.weight, self.comm, self.sequence_parallel = weight, comm, sequence_parallel
        self.start = comm.rank * weight.shape[0]

    @classmethod
    def from_embedding(cls, weight: Tensor, comm: Comm, sequence_parallel: bool = False, name: str = "wte.weight"):
        if weight.shape[0] % comm.world_size:
            raise ValueError(
                f"vocab_size={weight.shape[0]} cannot be split over tp={comm.world_size} ranks; "
                f"use a vocabulary size divisible by {comm.world_size} (Megatron pads it)"
            )
        return cls(_shard(weight, _chunk_index(weight.shape[0], comm), 0, name), comm, sequence_parallel)

    def forward(self, idx: Tensor) -> Tensor:
        local = idx - self.start
        outside = (local < 0) | (local >= self.weight.shape[0])
        out = self.weight[local.clamp(0, self.weight.shape[0] - 1)] * (~outside).unsqueeze(-1).to(self.weight.dtype)
        return reduce_scatter_to_sp(out, self.comm) if self.sequence_parallel else reduce_from_tp(out, self.comm)


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, comm: Comm, ignore_index: int) -> Tensor:
        V_local = logits.shape[-1]
        z = logits.reshape(-1, V_local).float()
        t = targets.reshape(-1)
        m = z.amax(dim=-1)
        comm.all_reduce(m, op="max")  # the global max, for a stable exp
        e = torch.exp(z - m.unsqueeze(-1))
        s = e.sum(-1)
        comm.all_reduce(s, op="sum")
        start = comm.rank * V_local
        local_t = t - start
        mine = (local_t >= 0) & (local_t < V_local)
        picked = torch.where(mine, z.gather(-1, local_t.clamp(0, V_local - 1).unsqueeze(-1)).squeeze(-1), 0.0)
        comm.all_reduce(picked, op="sum")  # the target's logit, from the rank that holds it
        keep = (t != ignore_index).to(z.dtype)
        n = keep.sum().clamp(min=1)
        nll = (torch.log(s) + m - picked) * keep
        ctx.save_for_backward(e / s.unsqueeze(-1), local_t, mine, keep, n)
        ctx.shape = logits.shape
        return nll.sum() / n

    @staticmethod
    def backward(ctx, dloss: Tensor):
        p, local_t, mine, keep, n = ctx.saved_tensors
        grad = p.clone()
        rows = torch.nonzero(mine).squeeze(-1)
        grad[rows, local_t[rows]] -= 1.0  # softmax - one-hot, on the rank that holds the target
        grad *= (keep / n * dloss).unsqueeze(-1)
        return grad.view(ctx.shape), None, None, None


def vocab_parallel_cross_entropy(local_logits: Tensor, targets: Tensor, comm: Comm, ignore_index: int = -1) -> Tensor:
    """Mean cross-entropy of logits split by vocabulary, without gathering them.

    local_logits: [..., V/tp] (this rank's columns, rank r holds ids r·V/tp …), targets:
    [...] global ids. Three all-reduces of one number per token (max, sum of exp, the
    target's logit) replace an all-gather of [..., V].
    """
    if targets.shape != local_logits.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} must match the logits' leading shape {tuple(local_logits.shape[:-1])}")
    return _VocabParallelCrossEntropy.apply(local_logits, targets.long(), comm, ignore_index)


# --------------------------------------------------------------------------- the whole GPT


class _ParallelBlock(nn.Module):
    def __init__(self, block: Block, comm: Comm, sequence_parallel: bool, name: str) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = copy.deepcopy(block.ln_1), copy.deepcopy(block.ln_2)
        if sequence_parallel:
            for p in (*self.ln_1.parameters(), *self.ln_2.parameters()):
                p.sequence_parallel = True  # type: ignore[attr-defined]
        self.attn = ParallelAttention(block.attn, comm, sequence_parallel, f"{name}attn.")
        self.mlp = ParallelMLP(block.mlp, comm, sequence_parallel, f"{name}mlp.")

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TensorParallelGPT(nn.Module):
    """One rank's shard of a minillm GPT; ``forward(idx, targets)`` -> (local logits [B, T, V/tp], loss)."""

    def __init__(self, model: GPT, comm: Comm, sequence_parallel: bool = False) -> None:
        super().__init__()
        cfg = model.config
        if cfg.dropout:
            raise ValueError("tensor_parallel_gpt needs dropout=0: dropout under TP needs per-rank RNG streams")
        if not cfg.tie_weights:
            raise ValueError("tensor_parallel_gpt expects tied embeddings (GPTConfig.tie_weights=True)")
        self.config, self.comm, self.sequence_parallel = cfg, comm, sequence_parallel
        self.wte = VocabParallelEmbedding.from_embedding(model.wte.weight, comm, sequence_parallel)
        self.wpe = copy.deepcopy(model.wpe)
        self.h = nn.ModuleList(
            _ParallelBlock(b, comm, sequence_parallel, f"h.{i}.") for i, b in enumerate(model.h)
        )
        self.ln_f = copy.deepcopy(model.ln_f)
        if sequence_parallel:
            for p in (*self.wpe.parameters(), *self.ln_f.parameters()):
                p.sequence_parallel = True  # type: ignore[attr-defined]

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.config.block_size}")
        if self.sequence_parallel and T % self.comm.world_size:
            raise ValueError(
                f"sequence length {T}: under sequence parallelism the sequence length must divide by tp={self.comm.world_size}"
            )
        pos = torch.arange(T, device=idx.device)
        if self.sequence_parallel:
            pos = split_dim(pos.unsqueeze(0), self.comm, 1).squeeze(0)  # this rank's positions
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        x = all_gather_from_sp(x, self.comm) if self.sequence_parallel else copy_to_tp(x, self.comm)
        logits = _matmul(x, self.wte.weight, None)  # tied head: this rank's vocabulary rows
        loss = vocab_parallel_cross_entropy(logits, targets, self.comm) if targets is not None else None
        return logits, loss


def tensor_parallel_gpt(model: GPT, comm: Comm, sequence_parallel: bool = False) -> TensorParallelGPT:
    """This rank's shard of ``model`` (copied; ``model`` is unchanged) for a TP group ``comm``.

    Its loss equals the single-device loss; after backward, its gradients gathered with
    :func:`gather_tp_tensors` equal the single-device gradients (call
    :func:`sync_sequence_parallel_grads` first under sequence parallelism).
    """
    return TensorParallelGPT(model, comm, sequence_parallel)


def sync_sequence_parallel_grads(model: nn.Module, comm: Comm) -> None:
    """All-reduce (sum) the gradients of the parameters that only saw T/tp positions."""
    for p in model.parameters():
        if getattr(p, "sequence_parallel", False) and p.grad is not None:
            comm.all_reduce(p.grad, op="sum")


def _full_names(tp_model: TensorParallelGPT) -> dict[str, str]:
    """TP parameter name -> the single-device GPT's name."""
    out = {}
    for name, p in tp_model.named_parameters():
        shard = getattr(p, "tp_shard", None)
        out[name] = shard[1] if shard is not None and shard[1] else name
    return out


def gather_tp_tensors(tp_model: TensorParallelGPT, comm: Comm, grads: bool = False) -> dict[str, Tensor]:
    """Full tensors under the single-device GPT's parameter names (``named_parameters``, so the
    tied head appears as ``wte.weight``): parameters, or their gradients.

    Sharded ones are all-gathered and put back in their original row/column order
    (c_attn's Q, K and V heads included); replicated ones are returned as they are. A
    collective: every rank of the TP group must call it.
    """
    names = _full_names(tp_model)
    out = {}
    for name, p in tp_model.named_parameters():
        t = p.grad if grads else p.detach()
        if t is None:
            t = torch.zeros_like(p)
        full_name = names[name]
        shard = getattr(p, "tp_shard", None)
        if shard is None:
            out[full_name] = t.detach().clone()
            continue
        dim = shard[0]
        parts = [torch.empty_like(t) for _ in range(comm.world_size)]
        comm.all_gather(parts, t.detach().contiguous())
        if full_name.endswith("c_attn.weight") or full_name.endswith("c_attn.bias"):
            # each rank holds [Q_r; K_r; V_r]: regroup as [Q; K; V]
            per = [pt.chunk(3, dim=0) for pt in parts]
            full = torch.cat([torch.cat([q[i] for q in per], dim=0) for i in range(3)], dim=0)
        else:
            full = torch.cat(parts, dim=dim)
        out[full_name] = full
    return out
