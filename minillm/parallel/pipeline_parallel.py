"""Pipeline parallelism: the GPT cut into stages, one per rank, running a schedule.

Huang et al. 2019 (GPipe, arXiv:1811.06965); Narayanan et al. 2021 (1F1B and
interleaving, arXiv:2104.04473). The schedules themselves live in
:mod:`minillm.parallel.pp_schedule`.

- :func:`split_into_stages` cuts a minillm GPT into contiguous blocks. Stage 0 also holds
  the embeddings, the last stage the final LayerNorm and the head. Parameter names stay
  the single-device model's ("h.3.ln_1.weight"), so stages compare with it directly.
- :func:`pipeline_train_step` runs one stage's schedule: it receives activations from the
  previous stage and sends its own to the next (forward), and receives gradients from
  the next stage and sends its input's gradient back (backward), with ``isend``/``irecv``
  so that neighbours sending to each other at the same moment cannot deadlock. The loss
  of every micro-batch is divided by m, so the accumulated gradients are the full
  batch's mean-loss gradients.
- The head shares its weight with the token embedding (GPT-2's tying). With more than
  one stage the first and the last stage each keep a copy; after the backward pass they
  exchange and add their gradients, so both copies take the same optimizer step and
  stay equal (as Megatron-LM does with an all-reduce over the embedding group).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from minillm.model import GPT
from minillm.validate import check_int

from .comm import Comm
from .pp_schedule import SCHEDULES, bubble_fraction, pipeline_schedule, schedule_timeline

__all__ = [
    "PipelineStage",
    "split_into_stages",
    "interleaved_chunks",
    "pipeline_train_step",
    "pipeline_schedule",
    "bubble_fraction",
    "schedule_timeline",
    "SCHEDULES",
]


class PipelineStage(nn.Module):
    """Blocks ``first_block … first_block + n − 1`` of a GPT, plus the embeddings and/or the head.

    forward: ids [B, T] (first stage) or activations [B, T, C] -> activations [B, T, C], or
    logits [B, T, V] on the last stage.
    """

    def __init__(self, model: GPT, blocks: range, is_first: bool, is_last: bool) -> None:
        super().__init__()
        self.config, self.is_first, self.is_last = model.config, is_first, is_last
        if is_first:
            self.wte, self.wpe = copy.deepcopy(model.wte), copy.deepcopy(model.wpe)
        self.h = nn.ModuleDict({str(i): copy.deepcopy(model.h[i]) for i in blocks})
        if is_last:
            self.ln_f = copy.deepcopy(model.ln_f)
            self.lm_head = copy.deepcopy(model.lm_head)
            if is_first and model.config.tie_weights:
                self.lm_head.weight = self.wte.weight  # one stage: keep the tie

    def forward(self, x: Tensor) -> Tensor:
        if self.is_first:
            T = x.shape[1]
            x = self.wte(x.long()) + self.wpe(torch.arange(T, device=x.device))
        for block in self.h.values():
            x = block(x)
        if self.is_last:
            x = self.lm_head(self.ln_f(x))
        return x


def split_into_stages(model: GPT, n_stages: int, balance: Sequence[int] | None = None) -> list[PipelineStage]:
    """Cut ``model`` into ``n_stages`` contiguous stages (copies; ``model`` is unchanged).

    ``balance``: blocks per stage (summing to n_layer); default as even as possible, the
    later stages taking the extra blocks (stage 0 also runs the embeddings).
    """
    p = check_int("n_stages", n_stages)
    L = model.config.n_layer
    if balance is None:
        if L < p:
            raise ValueError(f"n_layer={L} is too few for {p} stages: every stage needs at least one block")
        balance = [L // p + (1 if s >= p - L % p else 0) for s in range(p)]
    balance = [check_int("balance entry", b) for b in balance]
    if len(balance) != p or sum(balance) != L:
        raise ValueError(f"balance={list(balance)} must have {p} entries (one per stage) that sum to n_layer={L}")
    stages, start = [], 0
    for s, n in enumerate(balance):
        stages.append(PipelineStage(model, range(start, start + n), s == 0, s == p - 1))
        start += n
    return stages


def interleaved_chunks(model: GPT, n_stages: int, n_virtual: int) -> list[list[PipelineStage]]:
    """For interleaved 1F1B: cut ``model`` into ``n_stages · n_virtual`` stages; rank r holds
    virtual stages r, r + p, r + 2p, … (its chunks, in order). Returns one list per rank."""
    p, v = check_int("n_stages", n_stages), check_int("n_virtual", n_virtual)
    stages = split_into_stages(model, p * v)
    return [[stages[c * p + r] for c in range(v)] for r in range(p)]


def _sync_tied_embedding(chunks: list[PipelineStage], comm: Comm) -> None:
    """First and last stage add each other's gradient of the tied embedding/head weight."""
    p = comm.world_size
    first = next((c for c in chunks if c.is_first), None)
    last = next((c for c in chunks if c.is_last), None)
    if p == 1 or not chunks[0].config.tie_weights or (first is None and last is None):
        return
    w = first.wte.weight if first is not None else last.lm_head.weight
    mine = w.grad if w.grad is not None else torch.zeros_like(w)
    theirs = torch.empty_like(mine)
    peer = p - 1 if first is not None else 0
    work = comm.isend(mine.clone(), peer)
    comm.irecv(theirs, peer).wait()
    work.wait()
    w.grad = mine + theirs if first is not None else theirs + mine  # the same order on both: identical sums


def pipeline_train_step(
    stage: PipelineStage | Sequence[PipelineStage],
    comm: Comm,
    micro_batches: Sequence[tuple[Tensor, Tensor]],
    schedule: Sequence[tuple],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    simulate_times: tuple[float, float] | None = None,
) -> float:
    """Run one training step's forwards and backwards on this stage; returns the mean loss.

    comm: the pipeline group, rank r running stage r. stage: this rank's
    :class:`PipelineStage`, or under interleaving its list of chunks
    (:func:`interleaved_chunks`). micro_batches: every micro-batch (x [b, T], y [b, T]),
    the same list on every rank (the first stage reads x, the last y). schedule: this
    rank's actions from :func:`pipeline_schedule`. loss_fn(logits, y) -> scalar.
    Gradients accumulate in the stage's parameters (call the optimizer afterwards); the
    mean loss over micro-batches is broadcast from the last stage, so every rank returns it.
    simulate_times: (t_forward, t_backward) seconds to charge this rank's clock per chunk
    forward and backward (``comm.compute``), so the simulator's timeline shows the schedule.
    """
    r, p, m = comm.rank, comm.world_size, len(micro_batches)
    chunks = [stage] if isinstance(stage, PipelineStage) else list(stage)
    v = len(chunks)
    actions = [a if len(a) == 3 else (a[0], a[1], 0) for a in schedule]
    expected = sorted((i, c) for i in range(m) for c in range(v))
    if sorted((i, c) for op, i, c in actions if op == "F") != expected or sorted(
        (i, c) for op, i, c in actions if op == "B"
    ) != expected:
        raise ValueError(
            f"rank {r}: the schedule must run every one of the {m} micro-batches on each of its {v} chunk(s) once "
            "forward and once backward; build it with pipeline_schedule(kind, n_stages, len(micro_batches), stage)"
        )
    C = chunks[0].config.n_embd
    inputs: dict[tuple[int, int], Tensor] = {}
    outputs: dict[tuple[int, int], Tensor] = {}
    pending = []  # isend Works: their buffers must live until they complete
    total = torch.zeros(())
    nxt, prv = (r + 1) % p, (r - 1) % p
    for op, i, c in actions:
        chunk = chunks[c]
        x, y = micro_batches[i]
        act_shape = (*x.shape, C)
        if op == "F":
            if chunk.is_first:
                inp = x
            else:
                inp = torch.empty(act_shape)
                comm.irecv(inp, prv).wait()
                inp.requires_grad_(True)
            out = chunk(inp)
            if simulate_times:
                comm.compute(seconds=simulate_times[0], label=f"F{i}")
            if chunk.is_last:
                loss = loss_fn(out, y) / m
                total += loss.detach()
                out = loss
            else:
                pending.append(comm.isend(out.detach().contiguous(), nxt))
            inputs[i, c], outputs[i, c] = inp, out
        else:
            out = outputs.pop((i, c))
            if chunk.is_last:
                out.backward()
            else:
                grad = torch.empty(act_shape)
                comm.irecv(grad, nxt).wait()
                out.backward(grad)
            if simulate_times:
                comm.compute(seconds=simulate_times[1], label=f"B{i}")
            inp = inputs.pop((i, c))
            if not chunk.is_first:
                pending.append(comm.isend(inp.grad.contiguous(), prv))
    for work in pending:
        work.wait()
    _sync_tied_embedding(chunks, comm)
    comm.broadcast(total, src=p - 1)
    return float(total)
