"""Megatron's conjugate communication functions for tensor and sequence parallelism.

Each is an autograd function whose backward is the *conjugate* of its forward
(Shoeybi et al. 2019, Sec. 3; Korthikanti et al. 2022, Sec. 4.2.2):

| function | forward | backward |
|---|---|---|
| :func:`copy_to_tp` (**f**) | identity | all-reduce |
| :func:`reduce_from_tp` (**g**) | all-reduce | identity |
| :func:`scatter_to_tp` | keep this rank's chunk of the last dim | all-gather it |
| :func:`gather_from_tp` | all-gather along the last dim | keep this rank's chunk |
| :func:`reduce_scatter_to_sp` | reduce-scatter along the sequence (dim 1) | all-gather along it |
| :func:`all_gather_from_sp` | all-gather along the sequence | reduce-scatter along it |

All run on the course's ``Comm`` (simulator, gloo or torchrun), over the TP group.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .comm import Comm

__all__ = [
    "copy_to_tp",
    "reduce_from_tp",
    "scatter_to_tp",
    "gather_from_tp",
    "reduce_scatter_to_sp",
    "all_gather_from_sp",
    "split_dim",
]


# --------------------------------------------------------------------------- collectives along a dimension


def _all_gather_dim(x: Tensor, comm: Comm, dim: int) -> Tensor:
    """Concatenate every rank's ``x`` along ``dim`` (rank order)."""
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(comm.world_size)]
    comm.all_gather(parts, x)
    return torch.cat(parts, dim=dim)


def split_dim(x: Tensor, comm: Comm, dim: int) -> Tensor:
    """This rank's chunk of ``x`` along ``dim`` (equal chunks; no communication)."""
    n = x.shape[dim]
    if n % comm.world_size:
        raise ValueError(f"dimension {dim} has size {n}, which {comm.world_size} tensor-parallel ranks cannot split evenly")
    return x.chunk(comm.world_size, dim=dim)[comm.rank].contiguous()


def _reduce_scatter_dim(x: Tensor, comm: Comm, dim: int) -> Tensor:
    """Sum ``x`` over ranks and keep this rank's chunk along ``dim``."""
    if x.shape[dim] % comm.world_size:
        raise ValueError(
            f"dimension {dim} has size {x.shape[dim]}, which {comm.world_size} ranks cannot split evenly; "
            "under sequence parallelism the sequence length must divide by tp"
        )
    chunks = [c.contiguous() for c in x.chunk(comm.world_size, dim=dim)]
    out = torch.empty_like(chunks[0])
    comm.reduce_scatter(out, chunks, op="sum")
    return out


def _all_reduce(x: Tensor, comm: Comm) -> Tensor:
    out = x.clone()
    comm.all_reduce(out, op="sum")
    return out


# --------------------------------------------------------------------------- the conjugate functions


class _CopyToTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return _all_reduce(dy, ctx.comm), None


class _ReduceFromTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        return _all_reduce(x, comm)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return dy, None


class _ScatterToTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return split_dim(x, comm, -1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return _all_gather_dim(dy, ctx.comm, -1), None


class _GatherFromTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return _all_gather_dim(x, comm, -1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return split_dim(dy, ctx.comm, -1), None


class _ReduceScatterToSP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return _reduce_scatter_dim(x, comm, 1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return _all_gather_dim(dy, ctx.comm, 1), None


class _AllGatherFromSP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, comm: Comm) -> Tensor:
        ctx.comm = comm
        return _all_gather_dim(x, comm, 1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        return _reduce_scatter_dim(dy, ctx.comm, 1), None


def copy_to_tp(x: Tensor, comm: Comm) -> Tensor:
    """Megatron's **f**: identity forward, all-reduce (sum) of the gradient backward."""
    return _CopyToTP.apply(x, comm)


def reduce_from_tp(x: Tensor, comm: Comm) -> Tensor:
    """Megatron's **g**: all-reduce (sum) forward, identity backward."""
    return _ReduceFromTP.apply(x, comm)


def scatter_to_tp(x: Tensor, comm: Comm) -> Tensor:
    """Keep this rank's chunk of the last dimension; the backward all-gathers it."""
    return _ScatterToTP.apply(x, comm)


def gather_from_tp(x: Tensor, comm: Comm) -> Tensor:
    """All-gather along the last dimension; the backward keeps this rank's chunk."""
    return _GatherFromTP.apply(x, comm)


def reduce_scatter_to_sp(x: Tensor, comm: Comm) -> Tensor:
    """Sum [B, T, C] over ranks and keep this rank's T/tp positions; the backward all-gathers."""
    return _ReduceScatterToSP.apply(x, comm)


def all_gather_from_sp(x: Tensor, comm: Comm) -> Tensor:
    """All-gather [B, T/tp, C] into [B, T, C]; the backward reduce-scatters along the sequence."""
    return _AllGatherFromSP.apply(x, comm)
