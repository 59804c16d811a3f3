"""3D parallelism: data × tensor × pipeline parallel training of a minillm GPT on one ``ProcessGrid``.

Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
Using Megatron-LM" (arXiv:2104.04473), Sec. 3 ("PTD-P"). Every rank holds one *stage*
of the model (pipeline axis), and within it one tensor-parallel *slice* of every
weight (TP axis); the data-parallel axis replicates that shard and splits the batch.

One training step on rank (pp_rank, dp_rank, tp_rank):

1. take this DP rank's contiguous slice of the global batch and cut it into ``n_micro``
   micro-batches (:func:`~minillm.parallel.data_parallel.shard_batch`,
   :func:`~minillm.parallel.data_parallel.micro_batches`);
2. run the pipeline schedule (:func:`~minillm.parallel.pipeline_parallel.pipeline_train_step`)
   over the PP group; inside each stage the blocks are Megatron's column/row-parallel
   layers (:mod:`~minillm.parallel.tensor_parallel`), whose f and g all-reduce over the
   TP group, and the last stage computes the vocabulary-parallel cross-entropy;
3. average the gradients over the DP group: an all-reduce (``zero_stage=0``) or ZeRO-1's
   reduce-scatter, sharded AdamW and all-gather (``zero_stage=1``;
   :class:`~minillm.parallel.zero.ZeroOptimizer`).

Because the global batch's mean loss is the mean of the DP ranks' means, which are the
means of their micro-batches, the trained weights equal one device's (AdamW on the whole
batch) up to float rounding; :func:`gather_3d_parameters` puts the full weights back
together to check it. On the simulator every rank's clock is charged the GEMMs'
roofline time, so ``RunResult.traces`` are per-rank timelines, and the memory ledger
records parameters, gradients, optimizer state and live activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from minillm.model import GPT
from minillm.validate import check_choice, check_int, check_number

from .data_parallel import allreduce_gradients, micro_batches, saved_activation_bytes, shard_batch
from .grid import ProcessGrid
from .pipeline_parallel import pipeline_train_step
from .pp_schedule import pipeline_schedule
from .tensor_parallel import charged, copy_to_tp, gather_tp_tensors, tensor_parallel_gpt, vocab_parallel_cross_entropy
from .zero import ZeroOptimizer

__all__ = ["Stage3D", "Shard3D", "stage_blocks", "build_3d_stage", "train_3d", "gather_3d_parameters"]

SCHEDULES_3D = ("gpipe", "1f1b")


def stage_blocks(n_layer: int, pp: int) -> list[range]:
    """The blocks of each pipeline stage: as even as possible, later stages taking the extra ones
    (the same split as :func:`~minillm.parallel.pipeline_parallel.split_into_stages`)."""
    L, p = check_int("n_layer", n_layer), check_int("pp", pp)
    if L < p:
        raise ValueError(f"n_layer={L} is too few for pp={p} stages: every stage needs at least one block")
    sizes = [L // p + (1 if s >= p - L % p else 0) for s in range(p)]
    starts = [sum(sizes[:s]) for s in range(p)]
    return [range(a, a + n) for a, n in zip(starts, sizes)]


class _FreeOnBackward(torch.autograd.Function):
    """Identity; its backward tells the memory ledger this micro-batch's activations are released."""

    @staticmethod
    def forward(ctx, x: Tensor, ledger, nbytes: int) -> Tensor:
        ctx.ledger, ctx.nbytes = ledger, nbytes
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy: Tensor):
        ctx.ledger.free("activations", ctx.nbytes, "backward")
        return dy, None, None


class _VocabHead(nn.Module):
    """The tied output layer with the vocabulary split over TP: x [B, T, C] -> local logits [B, T, V/tp]."""

    def __init__(self, weight: nn.Parameter, comm) -> None:
        super().__init__()
        self.weight, self.comm = weight, comm

    def forward(self, x: Tensor) -> Tensor:
        x = copy_to_tp(x, self.comm)  # f: every rank needs all of x; backward sums the input gradients
        return charged(x @ self.weight.t(), self.comm, 2 * x[..., 0].numel() * self.weight.numel())


class Stage3D(nn.Module):
    """One rank's piece of a GPT: the blocks of its pipeline stage, each TP-sharded.

    forward: ids [b, T] (first stage) or activations [b, T, C] -> activations [b, T, C],
    or local logits [b, T, V/tp] on the last stage. Parameter names are the single-device
    model's ("h.3.attn.c_attn.weight"); sharded ones carry ``tp_shard = (dim, full name)``.
    Attributes ``config``, ``is_first``, ``is_last``, ``blocks`` (a range), ``wte`` /
    ``lm_head`` (first / last stage) as :func:`pipeline_train_step` expects.
    """

    def __init__(self, model: GPT, blocks: range, is_first: bool, is_last: bool, tp_comm, ledger=None) -> None:
        super().__init__()
        tp_model = tensor_parallel_gpt(model, tp_comm)  # every layer TP-sharded; keep this stage's
        self.config, self.is_first, self.is_last, self.blocks = model.config, is_first, is_last, blocks
        self.ledger, self.tp_comm = ledger, tp_comm
        if is_first:
            self.wte, self.wpe = tp_model.wte, tp_model.wpe
        self.h = nn.ModuleDict({str(i): tp_model.h[i] for i in blocks})
        if is_last:
            self.ln_f = tp_model.ln_f
            if is_first:
                head = tp_model.wte.weight  # one stage: the tie is one Parameter
            else:  # the last stage keeps its own copy of the tied weight (synced by pipeline_train_step)
                head = nn.Parameter(tp_model.wte.weight.detach().clone())
                head.tp_shard = (0, "lm_head.weight")  # type: ignore[attr-defined]
            self.lm_head = _VocabHead(head, tp_comm)

    def forward(self, x: Tensor) -> Tensor:
        with saved_activation_bytes(self.parameters()) as saved:  # weights are saved by reference
            if self.is_first:
                x = self.wte(x.long()) + self.wpe(torch.arange(x.shape[1], device=x.device))
            for block in self.h.values():
                b, T, C = x.shape  # the attention core (QKᵀ and AV, 4·b·T²·C FLOPs) is not a TP layer: charge it here
                x = block(charged(x, self.tp_comm, 4 * b * T * T * C / self.tp_comm.world_size))
            if self.is_last:
                x = self.lm_head(self.ln_f(x))
        if self.ledger is None:
            return x
        self.ledger.alloc("activations", saved[0], "forward")
        return _FreeOnBackward.apply(x, self.ledger, saved[0])


def build_3d_stage(model: GPT, grid: ProcessGrid, track_memory: bool = True) -> Stage3D:
    """This rank's :class:`Stage3D` of ``model`` (copied; ``model`` is unchanged)."""
    if not model.config.tie_weights:
        raise ValueError("train_3d expects tied embeddings (GPTConfig.tie_weights=True), as tensor_parallel_gpt does")
    ranges = stage_blocks(model.config.n_layer, grid.pp_size)
    s = grid.pp_rank
    ledger = grid.world.memory if track_memory else None
    return Stage3D(model, ranges[s], s == 0, s == grid.pp_size - 1, grid.tp, ledger)


@dataclass
class Shard3D:
    """What :func:`train_3d` returns on each rank: its trained stage, the losses, and where it sits."""

    stage: Stage3D
    losses: list[float]
    grid: ProcessGrid
    full_shapes: dict[str, tuple[int, ...]] = field(repr=False)

    @property
    def coords(self) -> tuple[int, int, int]:
        """(pp_rank, dp_rank, tp_rank)."""
        return self.grid.pp_rank, self.grid.dp_rank, self.grid.tp_rank


def train_3d(
    model: GPT,
    comm,
    grid: ProcessGrid,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    steps: int,
    schedule: str = "1f1b",
    zero_stage: int = 0,
    lr: float = 1e-3,
    n_micro: int | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> Shard3D:
    """Rank code: train this rank's 3D shard of ``model`` for ``steps`` steps; returns it (a :class:`Shard3D`).

    comm: the world communicator; grid: its :class:`ProcessGrid` (tp, dp, pp). batches:
    global batches ``(x, y)``, each [B, T], the same list on every rank, used in turn
    (step i takes ``batches[i % len(batches)]``); B must divide by dp·n_micro.
    n_micro: micro-batches per DP rank and step (default: pp, the fewest that fill the
    pipeline). schedule: "1f1b" or "gpipe". zero_stage: 0 (all-reduce, replicated AdamW)
    or 1 (ZeRO-1 over the DP axis). AdamW with ``lr``, ``betas``, ``eps``, ``weight_decay``.
    ``losses`` are the global batch's mean loss before each step, on every rank.
    """
    check_int("steps", steps)
    check_choice("schedule", schedule, SCHEDULES_3D)
    if zero_stage not in (0, 1) or isinstance(zero_stage, bool):
        raise ValueError(f"zero_stage={zero_stage!r} must be 0 (all-reduce) or 1 (ZeRO-1 over the DP axis)")
    check_number("lr", lr, strict=True)
    if comm.world_size != grid.world.world_size or comm.rank != grid.world.rank:
        raise ValueError("grid must be the ProcessGrid built on comm: ProcessGrid(comm, tp=..., pp=...)")
    if not batches:
        raise ValueError("batches is empty; pass a list of global (x, y) batches")
    m = check_int("n_micro", grid.pp_size if n_micro is None else n_micro)
    stage = build_3d_stage(model, grid)
    opt = ZeroOptimizer(stage.parameters(), grid.dp, stage=zero_stage, lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay)
    actions = pipeline_schedule(schedule, grid.pp_size, m, grid.pp_rank)

    def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
        return vocab_parallel_cross_entropy(logits, y, grid.tp)

    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        parts = micro_batches(shard_batch(x, grid.dp), shard_batch(y, grid.dp), m)
        loss = pipeline_train_step([stage], grid.pp, parts, actions, loss_fn)
        if not opt.syncs_gradients:
            allreduce_gradients(stage.parameters(), grid.dp)
        opt.step()
        opt.zero_grad()
        mean = torch.tensor([loss], dtype=torch.float64)
        grid.dp.all_reduce(mean, op="avg")
        losses.append(float(mean))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    return Shard3D(stage, losses, grid, shapes)


def _owned(name: str, blocks: range, is_first: bool, is_last: bool) -> bool:
    if name.startswith("h."):
        return int(name.split(".")[1]) in blocks
    if name.startswith(("wte.", "wpe.")):
        return is_first
    return is_last  # ln_f


def gather_3d_parameters(shard: Shard3D) -> dict[str, Tensor]:
    """The full single-device parameters (``named_parameters`` names) on every rank; a collective.

    All-gathers each TP shard over the TP group (:func:`gather_tp_tensors`), then every
    pipeline stage broadcasts the tensors it owns over the PP group. The DP replicas hold
    the same weights, so the DP axis takes no part.
    """
    grid, stage = shard.grid, shard.stage
    mine = gather_tp_tensors(stage, grid.tp)  # full tensors of this stage's parameters
    ranges = stage_blocks(stage.config.n_layer, grid.pp_size)
    out: dict[str, Tensor] = {}
    for s, blocks in enumerate(ranges):
        for name, shape in shard.full_shapes.items():
            if not _owned(name, blocks, s == 0, s == grid.pp_size - 1):
                continue
            t = mine[name].contiguous() if s == grid.pp_rank else torch.empty(shape)
            grid.pp.broadcast(t, src=s)
            out[name] = t
    return out
