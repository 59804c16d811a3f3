"""Data parallelism (DP): every rank holds the whole model and trains on its own slice of the batch.

One DP step on p ranks, each with a local batch of B/p sequences:

1. forward and backward on the local batch (in ``accum_steps`` micro-batches if it
   does not fit): every rank now has the gradient of *its* mean loss;
2. all-reduce the gradients with op='avg': every rank now has the mean over all
   ranks, which is exactly the gradient of the mean loss over the whole batch B
   (the mean of equal-sized means is the overall mean);
3. every rank takes the same optimizer step, so the replicas stay identical.

Two ways to all-reduce (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", Sec. 3.2): **naive**, one all-reduce per
parameter (many small, latency-bound messages), and **bucketed**, gradients
flattened into buckets of about ``bucket_bytes`` (few large, bandwidth-bound
messages). Buckets are filled in reverse parameter order, the order in which
backward produces the gradients, as DDP does.

Gradient accumulation: the loss of each micro-batch is divided by ``accum_steps``,
the gradients add up locally, and only after the *last* micro-batch are they
all-reduced: communication once per step, not once per micro-batch.

Whole training runs, for comparisons: :func:`train_replica` is the rank code (DP
or a ZeRO stage, on this rank's slice of every global batch), :func:`train_single`
the one-device reference on the whole batches, and :func:`max_abs_diff` compares
their weights.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from minillm.train import AdamW
from minillm.validate import check_int, check_number

from .comm import Comm
from .zero import ZeroOptimizer

__all__ = [
    "broadcast_parameters",
    "bucket_parameters",
    "allreduce_gradients",
    "shard_batch",
    "micro_batches",
    "dp_train_step",
    "saved_activation_bytes",
    "train_replica",
    "train_single",
    "max_abs_diff",
]


def broadcast_parameters(model: nn.Module, comm: Comm, src: int = 0) -> None:
    """Copy rank ``src``'s parameters to every rank, so all replicas start equal (DDP does this at construction)."""
    for p in model.parameters():
        comm.broadcast(p.data, src)


def bucket_parameters(params: Iterable[nn.Parameter], bucket_bytes: int) -> list[list[nn.Parameter]]:
    """Group parameters into buckets of at most ``bucket_bytes`` bytes, in reverse order.

    Reverse order is the order in which backward produces gradients (last layer
    first), so a real DDP can start all-reducing a full bucket while backward goes
    on. A parameter larger than ``bucket_bytes`` gets a bucket of its own.
    """
    check_number("bucket_bytes", bucket_bytes, strict=True)
    buckets: list[list[nn.Parameter]] = []
    current: list[nn.Parameter] = []
    size = 0
    for p in reversed(list(params)):
        nbytes = p.numel() * p.element_size()
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


def allreduce_gradients(params: Iterable[nn.Parameter], comm: Comm, bucket_bytes: int | None = None) -> int:
    """Average every parameter's ``.grad`` over the ranks, in place; returns the number of all-reduces.

    ``bucket_bytes`` None: naive, one all-reduce per parameter. Otherwise bucketed:
    each bucket is flattened into one buffer (counted as a 'comm' buffer in the
    memory ledger), all-reduced once, and copied back. A parameter without a
    gradient joins with zeros, so every rank calls the same all-reduces.
    """
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if bucket_bytes is None:
        for p in params:
            comm.all_reduce(p.grad, op="avg")
        return len(params)
    buckets = bucket_parameters(params, bucket_bytes)
    for bucket in buckets:
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        nbytes = flat.numel() * flat.element_size()
        comm.memory.alloc("comm", nbytes, "gradient bucket")
        comm.all_reduce(flat, op="avg")
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
        comm.memory.free("comm", nbytes, "gradient bucket")
    return len(buckets)


def shard_batch(x: Tensor, comm: Comm) -> Tensor:
    """This rank's contiguous slice of a global batch x [B, ...] -> [B / world_size, ...]."""
    p = comm.world_size
    if x.shape[0] % p:
        raise ValueError(
            f"a batch of {x.shape[0]} sequences does not split evenly over world_size={p}; "
            f"use a batch size that is a multiple of {p}"
        )
    return x.chunk(p)[comm.rank] if x.shape[0] else x


def micro_batches(x: Tensor, y: Tensor, accum_steps: int) -> list[tuple[Tensor, Tensor]]:
    """Split a local batch x, y [B, T] into ``accum_steps`` equal micro-batches [B / accum_steps, T]."""
    check_int("accum_steps", accum_steps)
    if x.shape[0] % accum_steps:
        raise ValueError(
            f"a local batch of {x.shape[0]} sequences does not split into accum_steps={accum_steps} equal "
            f"micro-batches; use a local batch that is a multiple of {accum_steps}"
        )
    return list(zip(x.chunk(accum_steps), y.chunk(accum_steps)))


@contextlib.contextmanager
def saved_activation_bytes(params: Iterable[Tensor] = ()) -> Iterator[list[int]]:
    """Count the bytes autograd saves for backward inside the block (the activations).

    Yields a one-element list whose value grows as tensors are saved. Parameters
    and tensors sharing a storage already counted are skipped; so are views of the
    tensors in ``params`` (e.g. a transposed weight ``w.t()``, which autograd saves
    by reference, not as a copy). Built on ``torch.autograd.graph.saved_tensors_hooks``
    (thread-local, so simulated ranks count separately).
    """
    total = [0]
    seen: set[int] = {p.untyped_storage().data_ptr() for p in params}

    def pack(t: Tensor) -> Tensor:
        if not isinstance(t, nn.Parameter):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def _train_flops(model: nn.Module, x: Tensor) -> float:
    """Training FLOPs of one forward+backward over x [B, T]: flops_per_token·B·T (6N + attention, PaLM)."""
    tokens = x.numel()
    if hasattr(model, "flops_per_token"):
        return float(model.flops_per_token(x.shape[1])) * tokens
    return 6.0 * sum(p.numel() for p in model.parameters()) * tokens


def dp_train_step(
    model: nn.Module,
    optimizer,
    comm: Comm,
    x: Tensor,
    y: Tensor,
    accum_steps: int = 1,
    bucket_bytes: int | None = None,
) -> float:
    """One data-parallel training step on this rank's local batch; returns the mean loss over *all* ranks.

    x, y: this rank's batch [B_local, T] (token ids and targets; see :func:`shard_batch`).
    The model must return ``(logits, loss)`` with the mean loss, as minillm's GPT.
    Gradients are all-reduced once, after the last micro-batch (naive, or bucketed
    when ``bucket_bytes`` is given), then ``optimizer.step()`` and ``zero_grad()``.
    An optimizer with ``syncs_gradients = True`` (:class:`~minillm.parallel.zero.ZeroOptimizer`)
    does its own gradient communication, so the all-reduce is skipped.

    On the simulator the rank's clock is charged for forward+backward (training
    FLOPs) and the ledger records the activations while they are alive.
    """
    parts = micro_batches(x, y, accum_steps)
    total = 0.0
    for xb, yb in parts:
        with saved_activation_bytes() as saved:
            _, loss = model(xb, yb)
        comm.memory.alloc("activations", saved[0], "forward")
        (loss / accum_steps).backward()  # gradients add up locally: no communication yet
        comm.memory.free("activations", saved[0], "backward done")
        comm.compute(flops=_train_flops(model, xb), label="forward+backward")
        total += loss.item()
    if not getattr(optimizer, "syncs_gradients", False):
        allreduce_gradients(model.parameters(), comm, bucket_bytes)  # once, after the last micro-batch
    optimizer.step()
    optimizer.zero_grad()
    mean_loss = torch.tensor([total / accum_steps], dtype=torch.float64, device=comm.device)
    comm.all_reduce(mean_loss, op="avg")
    return float(mean_loss.item())


# --------------------------------------------------------------------------- whole training runs


def train_replica(
    comm: Comm,
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    stage: int | None = None,
    accum_steps: int = 1,
    bucket_bytes: int | None = None,
    optimizer: Callable[..., object] | None = None,
    **hyper,
) -> tuple[list[float], dict[str, Tensor]]:
    """Rank code: train a copy of ``model`` on this rank's slice of every global batch; return (losses, weights).

    batches: the *global* batches ``(x, y)``, each [B, T], the same list on every rank;
    each rank trains on its slice (:func:`shard_batch`, B / world_size sequences) with
    one :func:`dp_train_step` per batch (``accum_steps`` micro-batches, gradients
    all-reduced once per step, naive or in buckets of ``bucket_bytes``).
    stage: None for plain DP, every rank stepping the whole model with
    ``optimizer(params, **hyper)`` (default: minillm's :class:`~minillm.train.AdamW`);
    0-3 for :class:`~minillm.parallel.zero.ZeroOptimizer` (AdamW with ``**hyper``,
    which does its own gradient communication).
    Returns ``losses`` (the mean loss over all ranks before each step, one float
    per batch) and a detached copy of the trained ``state_dict``; under stage 3 the
    parameters are all-gathered first (a collective: every rank takes part).
    ``model`` itself is not modified.
    """
    m = copy.deepcopy(model)  # every rank holds the whole model...
    if stage is None:  # plain DP: every rank steps every parameter
        opt = (optimizer or AdamW)(m.parameters(), **hyper)
    else:  # ZeRO: sharded AdamW state (and gradients, parameters); it syncs the gradients itself
        if optimizer is not None:
            raise ValueError(f"optimizer= applies to plain DP (stage=None) only; ZeRO stage {stage} uses ZeroOptimizer (AdamW)")
        opt = ZeroOptimizer(m if stage == 3 else m.parameters(), comm, stage=stage, **hyper)
    losses = []
    for x, y in batches:  # ...and trains on its own slice of every global batch
        losses.append(dp_train_step(m, opt, comm, shard_batch(x, comm), shard_batch(y, comm), accum_steps, bucket_bytes))
    if stage == 3:
        opt.gather_full_parameters()  # stage 3 keeps only a shard of each parameter: gather them all
    return losses, {k: v.detach().clone() for k, v in m.state_dict().items()}


def train_single(
    model: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    optimizer: Callable[..., object] | None = None,
    **hyper,
) -> tuple[list[float], dict[str, Tensor]]:
    """The one-device reference: train a copy of ``model`` on the whole batches; return (losses, weights).

    batches: ``(x, y)`` pairs, each [B, T]; one step each with ``optimizer(params, **hyper)``
    (default: minillm's :class:`~minillm.train.AdamW`). The model must return
    ``(logits, loss)`` with the mean loss. Returns the loss before each step and a
    detached copy of the trained ``state_dict``; ``model`` itself is not modified.
    """
    m = copy.deepcopy(model)
    opt = (optimizer or AdamW)(m.parameters(), **hyper)
    losses = []
    for x, y in batches:
        _, loss = m(x, y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return losses, {k: v.detach().clone() for k, v in m.state_dict().items()}


def max_abs_diff(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Largest |a[k] - b[k]| over every entry of two state dicts with the same keys (0.0 if empty)."""
    if a.keys() != b.keys():
        raise ValueError(f"the state dicts differ in their keys: only in a {sorted(a.keys() - b.keys())}, "
                         f"only in b {sorted(b.keys() - a.keys())}")
    return max(((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()), default=0.0)
