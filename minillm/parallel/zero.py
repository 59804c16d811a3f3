"""ZeRO: shard the optimizer state, the gradients and the parameters across data-parallel ranks.

Rajbhandari, Rasley, Ruwase & He 2020, "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models" (SC'20). Plain DP replicates everything on every rank;
ZeRO removes the redundancy in stages (Sec. 5, Figure 1), with N_d data-parallel ranks:

- stage 1 (P_os): each rank keeps the optimizer state of 1/N_d of the parameters;
- stage 2 (P_os+g): ... and only the reduced gradients of that shard;
- stage 3 (P_os+g+p): ... and only that shard of the parameters, all-gathered
  just before each layer uses them and dropped right after.

One class per stage, each adding one idea to the one before, so ``step()`` never
asks which stage it is in:

- :class:`ReplicatedAdamW` (stage 0): AdamW on whole parameters, nothing sharded;
  the DP step (:func:`~minillm.parallel.data_parallel.dp_train_step`) all-reduces
  the gradients, as for any optimizer;
- :class:`ZeroStage1`: sharded AdamW state; ``step()`` is :func:`zero1_step` per
  parameter (reduce-scatter, AdamW on the shard, all-gather);
- :class:`ZeroStage2`: gradients too; a hook reduce-scatters each gradient as soon
  as backward produces it and keeps only this rank's shard;
- :class:`ZeroStage3`: parameters too; hooks gather each layer's parameters just
  before it runs (forward and backward) and release them after.

``ZeroOptimizer(params, comm, stage=s)`` builds the class of stage ``s``. AdamW is
applied per shard, so the trained parameters equal single-device AdamW. Each
parameter is flattened, zero-padded to a multiple of N_d and cut into N_d equal
shards; rank r owns shard r of every parameter. The memory and communication
formulas are in :mod:`minillm.parallel.costs`.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from minillm.train import adamw_update
from minillm.validate import check_fraction, check_number

from .comm import Comm
# The ZeRO formulas moved to .costs; these names stay importable from here.
from .costs import STAGES, ModelStateBytes, zero_comm_volume, zero_memory_bytes, zero_step_estimate

__all__ = [
    "zero1_step",
    "ZeroOptimizer",
    "ReplicatedAdamW",
    "ZeroStage1",
    "ZeroStage2",
    "ZeroStage3",
    "STAGES",
    "ModelStateBytes",
    "zero_memory_bytes",
    "zero_comm_volume",
    "zero_step_estimate",
]


# --------------------------------------------------------------------------- one ZeRO-1 step


def zero1_step(
    comm: Comm,
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> Tensor:
    """One ZeRO-1 AdamW step for one flat parameter; returns the updated parameter [n].

    param: [n], the same on every rank. grad: [n], this rank's own (local) gradient.
    m, v: [s] with s = ceil(n / world_size), this rank's shard of the AdamW state,
    updated in place. The three moves of ZeRO-1 (Rajbhandari et al. 2020, Sec. 5.1):

    1. reduce-scatter the gradients (mean over ranks): rank r gets elements
       [r·s, (r+1)·s) of the averaged gradient, zero-padded past n;
    2. AdamW on that shard only, with the shard of m and v this rank keeps;
    3. all-gather the updated shards, so every rank has the whole new parameter.
    """
    p, r = comm.world_size, comm.rank
    n, s = param.numel(), m.numel()
    if param.dim() != 1 or grad.shape != param.shape:
        raise ValueError(f"param and grad must be flat tensors of one shape, got {tuple(param.shape)} and {tuple(grad.shape)}")
    if s != math.ceil(n / p) or v.shape != m.shape:
        raise ValueError(f"m and v must hold this rank's shard: {math.ceil(n / p)} elements (ceil(n / world_size)), got {s}")
    pad = s * p - n
    padded = lambda t: torch.cat([t, t.new_zeros(pad)]) if pad else t.contiguous()  # noqa: E731
    g_shard = grad.new_empty(s)
    comm.reduce_scatter_tensor(g_shard, padded(grad), op="avg")
    w_shard = padded(param)[r * s : (r + 1) * s]
    new_w, new_m, new_v = adamw_update(w_shard, g_shard, m, v, step, lr, betas, eps, weight_decay)
    m.copy_(new_m)
    v.copy_(new_v)
    full = new_w.new_empty(s * p)
    comm.all_gather_into_tensor(full, new_w.contiguous())
    return full[:n]


# --------------------------------------------------------------------------- the optimizers


class ZeroOptimizer:
    """AdamW whose state, gradients and parameters are sharded over ``comm`` as far as ``stage`` says.

    ``ZeroOptimizer(params, comm, stage=s)`` returns the class of stage ``s``
    (:class:`ReplicatedAdamW`, :class:`ZeroStage1`, :class:`ZeroStage2`,
    :class:`ZeroStage3`); this class holds what they share.

    params: ``model.parameters()`` or, for stage 3, the model itself (its modules
    get hooks that gather parameters just before use). All ranks must hold the same
    initial parameters (see :func:`~minillm.parallel.data_parallel.broadcast_parameters`).
    The AdamW update is torch's: decoupled weight decay ``p -= lr·wd·p``, then Adam
    (Loshchilov & Hutter 2019), applied to each shard.

    Usage per step: ``loss.backward()`` on each rank's own micro-batches (divide by
    the number of micro-batches), then ``step()``, then ``zero_grad()``. Stages 1-3
    do all gradient communication themselves (``syncs_gradients = True``); stage 0
    leaves it to the DP step. The memory ledger of ``comm`` records what the rank
    keeps: 'parameters', 'gradients', 'optimizer' (m and v), and transient 'comm' buffers.
    """

    stage: int = -1
    syncs_gradients = True
    #: Which model states this class keeps only a 1/N_d shard of.
    SHARDED: dict[str, bool] = {"parameters": False, "gradients": False, "optimizer": False}

    def __new__(cls, params=None, comm=None, stage: int | None = None, *args, **kwargs):
        if cls is ZeroOptimizer:
            stage = 1 if stage is None else stage
            if stage not in _BY_STAGE:
                raise ValueError(f"stage={stage!r} is not a ZeRO stage; use 1, 2 or 3 (or 0 for plain DP)")
            cls = _BY_STAGE[stage]
        return super().__new__(cls)

    def __init__(
        self,
        params: nn.Module | Iterable[nn.Parameter],
        comm: Comm,
        stage: int | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        if stage is not None and stage != self.stage:
            raise ValueError(f"{type(self).__name__} is ZeRO stage {self.stage}, not stage={stage!r}; "
                             f"use ZeroOptimizer(params, comm, stage={stage!r})")
        for name, v in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            check_number(name, v)
        for b in betas:
            check_fraction("betas", b)
        module = params if isinstance(params, nn.Module) else None
        self.params: list[nn.Parameter] = [p for p in (module.parameters() if module else params) if p.requires_grad]
        if not self.params:
            raise ValueError("ZeroOptimizer got no trainable parameters; pass model.parameters() (or the model)")
        self.comm = comm
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        P, r = comm.world_size, comm.rank
        self.numels = [p.numel() for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.shard = [math.ceil(n / P) for n in self.numels]  # s: padded shard length
        self.owned = [(min(r * s, n), min((r + 1) * s, n)) for s, n in zip(self.shard, self.numels)]  # real elements
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self._hooks: list = []
        kept = {c: (self.shard if sharded else self.numels) for c, sharded in self.SHARDED.items()}
        self.m = [torch.zeros(n, dtype=p.dtype, device=p.device) for n, p in zip(kept["optimizer"], self.params)]
        self.v = [torch.zeros(n, dtype=p.dtype, device=p.device) for n, p in zip(kept["optimizer"], self.params)]
        es = [p.element_size() for p in self.params]
        mem = comm.memory
        mem.alloc("parameters", sum(n * e for n, e in zip(kept["parameters"], es)), "model")
        mem.alloc("gradients", sum(n * e for n, e in zip(kept["gradients"], es)), "gradients")
        mem.alloc("optimizer", sum(2 * n * e for n, e in zip(kept["optimizer"], es)), "AdamW m and v")
        self._attach(module)

    def _attach(self, module: nn.Module | None) -> None:
        """Install the hooks this stage needs (none before stage 2)."""

    # ------------------------------------------------------------------ sharding helpers

    def _padded(self, t: Tensor, i: int) -> Tensor:
        """t flattened and zero-padded to world_size · shard elements."""
        flat = t.reshape(-1)
        pad = self.shard[i] * self.comm.world_size - flat.numel()
        return torch.cat([flat, flat.new_zeros(pad)]) if pad else flat.clone()

    def _my_shard(self, t: Tensor, i: int) -> Tensor:
        s, r = self.shard[i], self.comm.rank
        return self._padded(t, i)[r * s : (r + 1) * s].clone()

    def _all_gather(self, shard: Tensor, i: int) -> Tensor:
        """Every rank's shard of parameter i -> the full parameter, shaped."""
        full = shard.new_empty(self.shard[i] * self.comm.world_size)
        self.comm.all_gather_into_tensor(full, shard)
        return full[: self.numels[i]].view(self.shapes[i])

    def _adamw(self, w: Tensor, g: Tensor, i: int) -> Tensor:
        """Torch's AdamW on one flat tensor (a shard, or a whole parameter); updates m[i], v[i]; returns the new w."""
        new_w, self.m[i], self.v[i] = adamw_update(w, g, self.m[i], self.v[i], self.t, self.lr, self.betas, self.eps,
                                                   self.weight_decay)
        return new_w

    def _charge(self, n_local: int) -> None:
        """AdamW is memory-bound: it reads p, g, m, v and writes p, m, v (7 tensors of n_local elements)."""
        self.comm.compute(nbytes=7 * n_local * self.params[0].element_size(), label="optimizer step")

    # ------------------------------------------------------------------ the optimizer API

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def gather_full_parameters(self) -> None:
        """Stage 3: all-gather every parameter into the model (e.g. to evaluate or save); a collective.

        Other stages already hold every parameter: nothing to do.
        """

    def remove_hooks(self) -> None:
        """Detach the stage-2/3 hooks from the model (after gather_full_parameters() for stage 3)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self) -> dict:
        """This rank's shard of the optimizer state (each rank saves its own)."""
        return {"t": self.t, "stage": self.stage, "rank": self.comm.rank, "world_size": self.comm.world_size,
                "m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v], "lr": self.lr}


class ReplicatedAdamW(ZeroOptimizer):
    """Stage 0, plain DP: every rank keeps and updates every parameter with whole AdamW state.

    It communicates nothing (``syncs_gradients = False``): the DP step all-reduces
    the gradients first (:func:`~minillm.parallel.data_parallel.allreduce_gradients`).
    """

    stage = 0
    syncs_gradients = False

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for i, p in enumerate(self.params):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            p.data.copy_(self._adamw(p.data.reshape(-1), g.reshape(-1), i).view_as(p))
        self._charge(sum(self.numels))


class ZeroStage1(ZeroOptimizer):
    """ZeRO-1 (P_os): rank r keeps AdamW's m and v for shard r of every parameter only.

    ``step()`` runs :func:`zero1_step` on each parameter: reduce-scatter the
    gradient, AdamW on the shard, all-gather the updated shards.
    """

    stage = 1
    SHARDED = {"parameters": False, "gradients": False, "optimizer": True}

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        comm = self.comm
        for i, p in enumerate(self.params):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            nbytes = g.numel() * g.element_size()
            comm.memory.alloc("comm", nbytes, "padded gradient")
            new_p = zero1_step(comm, p.data.reshape(-1), g.reshape(-1), self.m[i], self.v[i], self.t,
                               self.lr, self.betas, self.eps, self.weight_decay)
            comm.memory.free("comm", nbytes, "padded gradient")
            p.data.copy_(new_p.view_as(p))
        self._charge(sum(self.shard))


class ZeroStage2(ZeroStage1):
    """ZeRO-2 (P_os+g): ... and only shard r of each averaged gradient.

    A hook reduce-scatters each gradient the moment backward completes it, adds
    this rank's shard to ``grad_shard`` and frees the full gradient. ``step()``
    updates the shard and all-gathers the parameter.
    """

    stage = 2
    SHARDED = {"parameters": False, "gradients": True, "optimizer": True}

    def _attach(self, module: nn.Module | None) -> None:
        self.grad_shard = [torch.zeros(s, dtype=p.dtype, device=p.device) for s, p in zip(self.shard, self.params)]
        for p in self.params:
            self._hooks.append(p.register_post_accumulate_grad_hook(self._reduce_scatter_hook))

    def _reduce_scatter_hook(self, p: nn.Parameter) -> None:
        """Runs as soon as p's gradient is complete in backward: keep only my shard of the mean."""
        i = self._index[id(p)]
        nbytes = p.grad.numel() * p.grad.element_size()
        self.comm.memory.alloc("comm", nbytes, "unsharded gradient")
        out = p.grad.new_empty(self.shard[i])
        self.comm.reduce_scatter_tensor(out, self._padded(p.grad, i), op="avg")
        with torch.no_grad():
            self.grad_shard[i] += out
        p.grad = None
        self.comm.memory.free("comm", nbytes, "unsharded gradient")
        self._gradient_done(i)

    def _gradient_done(self, i: int) -> None:
        """After parameter i's gradient is sharded (stage 3 releases the parameter here)."""

    def _weight_shard(self, i: int) -> Tensor:
        """This rank's shard of parameter i, zero-padded to the shard length."""
        lo, hi = self.owned[i]
        p = self.params[i]
        w = torch.zeros(self.shard[i], dtype=p.dtype, device=p.device)
        w[: hi - lo] = p.data.reshape(-1)[lo:hi]
        return w

    def _store(self, i: int, new_w: Tensor) -> None:
        """Every rank needs the whole updated parameter: all-gather the shards into it."""
        self.params[i].data.copy_(self._all_gather(new_w, i))

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for i in range(len(self.params)):
            self._store(i, self._adamw(self._weight_shard(i), self.grad_shard[i], i))
        self._charge(sum(self.shard))

    def zero_grad(self) -> None:
        super().zero_grad()
        for g in self.grad_shard:
            g.zero_()


class ZeroStage3(ZeroStage2):
    """ZeRO-3 (P_os+g+p): ... and only shard r of each parameter.

    Hooks all-gather a module's parameters just before its forward, release them
    after (a weight used by several modules, such as tied embeddings, stays until
    its gradient is done), gather them again just before its backward, and release
    them once their gradient is sharded. ``step()`` updates the shard in place of
    the parameter; the next forward gathers it.
    """

    stage = 3
    SHARDED = {"parameters": True, "gradients": True, "optimizer": True}

    def _attach(self, module: nn.Module | None) -> None:
        if module is None:
            raise ValueError(
                "stage=3 gathers parameters just before each layer runs, so it needs the model itself; "
                "pass ZeroOptimizer(model, comm, stage=3)"
            )
        super()._attach(module)
        self.param_shard = [self._my_shard(p.detach(), i) for i, p in enumerate(self.params)]
        self._empty = [torch.empty(0, dtype=p.dtype, device=p.device) for p in self.params]
        users: dict[int, int] = {}
        for mod in module.modules():
            for p in mod.parameters(recurse=False):
                users[id(p)] = users.get(id(p), 0) + 1
        self._shared = {i for i, p in enumerate(self.params) if users.get(id(p), 0) > 1}
        for i in range(len(self.params)):
            self._release(i, count=False)
        for mod in module.modules():
            idx = [self._index[id(p)] for p in mod.parameters(recurse=False) if id(p) in self._index]
            if idx:
                self._hooks.append(mod.register_forward_pre_hook(self._make_pre_hook(idx)))
                self._hooks.append(mod.register_forward_hook(self._make_post_hook(idx)))

    def _gradient_done(self, i: int) -> None:
        self._release(i)

    def _weight_shard(self, i: int) -> Tensor:
        return self.param_shard[i]

    def _store(self, i: int, new_w: Tensor) -> None:
        self.param_shard[i] = new_w  # the next forward gathers it

    def _gather(self, i: int) -> None:
        p = self.params[i]
        if p.numel() == self.numels[i]:
            return  # already gathered
        with torch.no_grad():
            p.data = self._all_gather(self.param_shard[i], i)
        self.comm.memory.alloc("comm", p.numel() * p.element_size(), "gathered parameter")

    def _release(self, i: int, count: bool = True) -> None:
        p = self.params[i]
        if p.numel() == 0:
            return
        if count:
            self.comm.memory.free("comm", p.numel() * p.element_size(), "gathered parameter")
        p.data = self._empty[i]

    def _make_pre_hook(self, idx: list[int]):
        def pre_hook(module, args):
            for i in idx:
                self._gather(i)

        return pre_hook

    def _make_post_hook(self, idx: list[int]):
        def post_hook(module, args, output):
            if isinstance(output, Tensor) and output.requires_grad:
                # Backward will need these weights again: gather them just before
                # this module's backward runs (a hook on the gradient of its output).
                def regather(grad: Tensor) -> None:
                    for i in idx:
                        self._gather(i)

                output.register_hook(regather)
                for i in idx:
                    if i not in self._shared:  # a tied weight is used again later; keep it
                        self._release(i)
            else:
                for i in idx:
                    self._release(i)

        return post_hook

    def gather_full_parameters(self) -> None:
        """All-gather every parameter into the model (e.g. to evaluate or save); a collective.

        The next forward pass releases them again.
        """
        for i in range(len(self.params)):
            self._gather(i)


_BY_STAGE: dict[int, type[ZeroOptimizer]] = {0: ReplicatedAdamW, 1: ZeroStage1, 2: ZeroStage2, 3: ZeroStage3}
