"""ZeRO: shard the optimizer state, the gradients and the parameters across data-parallel ranks.

Rajbhandari, Rasley, Ruwase & He 2020, "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models" (SC'20). Plain DP replicates everything on every rank.
With Ψ parameters, mixed-precision Adam holds per device (Sec. 3.1): 2Ψ bytes of
fp16 parameters, 2Ψ of fp16 gradients and KΨ of optimizer state (K = 12: fp32
master weights, momentum and variance). ZeRO removes the redundancy in stages
(Sec. 5, Figure 1), with N_d data-parallel ranks:

- stage 1 (P_os): each rank keeps the optimizer state of 1/N_d of the parameters;
- stage 2 (P_os+g): ... and only the reduced gradients of that shard;
- stage 3 (P_os+g+p): ... and only that shard of the parameters, all-gathered
  just before each layer uses them and dropped right after.

Communication per step (Sec. 7): DP all-reduces gradients, which a ring does as a
reduce-scatter plus an all-gather, 2Ψ per rank. Stages 1 and 2 do a reduce-scatter
of gradients and an all-gather of updated parameters: also 2Ψ. Stage 3 all-gathers
parameters twice (forward and backward) and reduce-scatters gradients: 3Ψ.

:class:`ZeroOptimizer` implements the four stages (stage 0 = plain DP) with AdamW
applied per shard, so the trained parameters equal single-device AdamW. Each
parameter is flattened, zero-padded to a multiple of N_d and cut into N_d equal
shards; rank r owns shard r of every parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from minillm.train import adamw_update

from .collectives import collective_time
from .comm import Comm
from .sim import ClusterSpec

__all__ = ["ModelStateBytes", "zero_memory_bytes", "zero_comm_volume", "zero_step_estimate", "zero1_step", "ZeroOptimizer", "STAGES"]

GB = 1e9  # bytes, as the ZeRO paper counts
STAGES = (0, 1, 2, 3)


# --------------------------------------------------------------------------- the analytic model


@dataclass(frozen=True)
class ModelStateBytes:
    """Model-state bytes per device, by category (the ledger's category names)."""

    parameters: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def gb(self) -> dict[str, float]:
        """The same in GB (1e9 bytes), with the total."""
        return {**{k: v / GB for k, v in asdict(self).items()}, "total": self.total / GB}


def _check_common(n_params, world_size, stage) -> None:
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or n_params < 0 or not math.isfinite(n_params):
        raise ValueError(f"n_params={n_params!r} must be a non-negative number of parameters, e.g. 7.5e9")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive int (the data-parallel degree N_d)")
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r} is not a ZeRO stage; use 0 (plain DP), 1, 2 or 3")


def zero_memory_bytes(
    n_params: float, world_size: int, stage: int, k: float = 12, bytes_param: float = 2, bytes_grad: float = 2
) -> ModelStateBytes:
    """Model-state bytes per device under ZeRO ``stage`` (0 = plain DP), Rajbhandari et al. 2020, Sec. 5.

    Ψ = n_params, N_d = world_size, K = ``k`` bytes of optimizer state per parameter
    (12 for mixed-precision Adam; 8 for fp32 Adam, which keeps only m and v):

    - stage 0: (bytes_param + bytes_grad + K)·Ψ
    - stage 1: (bytes_param + bytes_grad)·Ψ + K·Ψ/N_d
    - stage 2: bytes_param·Ψ + (bytes_grad + K)·Ψ/N_d
    - stage 3: (bytes_param + bytes_grad + K)·Ψ/N_d

    The paper's Figure 1 (Ψ = 7.5B, N_d = 64, K = 12, GB = 1e9 bytes): 120 GB,
    31.4 GB, 16.6 GB and 1.9 GB.
    """
    _check_common(n_params, world_size, stage)
    for name, v in (("k", k), ("bytes_param", bytes_param), ("bytes_grad", bytes_grad)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name}={v!r} must be a non-negative number of bytes per parameter")
    psi, nd = float(n_params), world_size
    return ModelStateBytes(
        parameters=bytes_param * psi / (nd if stage >= 3 else 1),
        gradients=bytes_grad * psi / (nd if stage >= 2 else 1),
        optimizer=k * psi / (nd if stage >= 1 else 1),
    )


def zero_comm_volume(n_params: float, stage: int, world_size: int | None = None, bytes_per_element: float = 2) -> float:
    """Bytes each rank sends per step for the gradient/parameter traffic of ZeRO ``stage``.

    The paper's count (Sec. 7, ``world_size`` None): 2Ψ elements for stages 0-2
    (reduce-scatter + all-gather, or the all-reduce that equals them) and 3Ψ for
    stage 3 (one more all-gather, in backward). With ``world_size`` given, the exact
    ring volume: each reduce-scatter or all-gather sends (N_d - 1)/N_d · Ψ elements.
    """
    _check_common(n_params, world_size if world_size is not None else 1, stage)
    passes = 3 if stage == 3 else 2
    factor = 1.0 if world_size is None else (world_size - 1) / world_size
    return passes * factor * float(n_params) * bytes_per_element


def zero_step_estimate(
    n_params: float,
    world_size: int,
    stage: int,
    tokens_per_step: float = 4e6,
    cluster: ClusterSpec | None = None,
    k: float = 12,
    bytes_param: float = 2,
    bytes_grad: float = 2,
    mfu: float = 0.5,
) -> dict:
    """Memory per device and step time for a DP/ZeRO job: the function behind the lesson's widget.

    Compute: 6·Ψ·tokens / N_d FLOPs per device (Kaplan et al. 2020) at ``mfu`` of the
    device's peak (model FLOPs utilization, Chowdhery et al. 2022, "PaLM"). Communication: the stage's collectives over Ψ elements with the
    ring α-β times of :func:`~minillm.parallel.collectives.collective_time`, not
    overlapped with compute (an upper bound). Memory: :func:`zero_memory_bytes`,
    compared with the device's capacity (activations not included). GB = 1e9 bytes.
    """
    _check_common(n_params, world_size, stage)
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu!r} must be in (0, 1], e.g. 0.5")
    c = cluster or ClusterSpec()
    mem = zero_memory_bytes(n_params, world_size, stage, k, bytes_param, bytes_grad)
    compute_s = 6.0 * n_params * tokens_per_step / world_size / (c.peak_flops * mfu)
    t = lambda op, nbytes: collective_time(op, nbytes, world_size, c.link_bw, c.latency)  # noqa: E731
    grads, params = n_params * bytes_grad, n_params * bytes_param
    if stage == 0:
        comm_s = t("all_reduce", grads)
    elif stage in (1, 2):
        comm_s = t("reduce_scatter", grads) + t("all_gather", params)
    else:
        comm_s = 2 * t("all_gather", params) + t("reduce_scatter", grads)
    return {
        "memory": mem.as_dict(),
        "memory_total": mem.total,
        "memory_gb": mem.total / GB,
        "capacity_gb": c.mem_bytes / GB,
        "fits": mem.total <= c.mem_bytes,
        "compute_s": compute_s,
        "comm_s": comm_s,
        "step_s": compute_s + comm_s,
        "comm_bytes": zero_comm_volume(n_params, stage, world_size, bytes_param),
    }


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


# --------------------------------------------------------------------------- the optimizer


class ZeroOptimizer:
    """AdamW whose state (stage >= 1), gradients (>= 2) and parameters (3) are sharded over ``comm``.

    params: ``model.parameters()`` or, for stage 3, the model itself (its modules
    get hooks that gather parameters just before use). All ranks must hold the same
    initial parameters (see :func:`~minillm.parallel.data_parallel.broadcast_parameters`).
    The AdamW update is torch's: decoupled weight decay ``p -= lr·wd·p``, then Adam
    (Loshchilov & Hutter 2019), applied to each shard.

    Usage per step: ``loss.backward()`` on each rank's own micro-batches (divide by
    the number of micro-batches), then ``step()``, then ``zero_grad()``. The
    optimizer does all gradient communication (``syncs_gradients = True``): an
    all-reduce (stage 0) or reduce-scatter (1) in ``step()``, or a reduce-scatter as
    each gradient is produced in backward (2, 3). The memory ledger of ``comm``
    records what the rank keeps: 'parameters', 'gradients', 'optimizer' (m and v),
    and transient 'comm' buffers.
    """

    syncs_gradients = True

    def __init__(
        self,
        params: nn.Module | Iterable[nn.Parameter],
        comm: Comm,
        stage: int = 1,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r} is not a ZeRO stage; use 1, 2 or 3 (or 0 for plain DP)")
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr={lr}, eps={eps} and weight_decay={weight_decay} must all be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas={betas} must both be in [0, 1), e.g. (0.9, 0.999)")
        module = params if isinstance(params, nn.Module) else None
        self.params: list[nn.Parameter] = [p for p in (module.parameters() if module else params) if p.requires_grad]
        if not self.params:
            raise ValueError("ZeroOptimizer got no trainable parameters; pass model.parameters() (or the model)")
        if stage == 3 and module is None:
            raise ValueError(
                "stage=3 gathers parameters just before each layer runs, so it needs the model itself; "
                "pass ZeroOptimizer(model, comm, stage=3)"
            )
        self.comm, self.stage = comm, stage
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        P, r = comm.world_size, comm.rank
        self.numels = [p.numel() for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.shard = [math.ceil(n / P) for n in self.numels]  # s: padded shard length
        self.owned = [(min(r * s, n), min((r + 1) * s, n)) for s, n in zip(self.shard, self.numels)]  # real elements
        self._index = {id(p): i for i, p in enumerate(self.params)}
        es = [p.element_size() for p in self.params]
        local = self.numels if stage == 0 else self.shard  # optimizer state is sharded from stage 1
        self.m = [torch.zeros(n, dtype=p.dtype, device=p.device) for n, p in zip(local, self.params)]
        self.v = [torch.zeros(n, dtype=p.dtype, device=p.device) for n, p in zip(local, self.params)]
        self.grad_shard = [torch.zeros(s, dtype=p.dtype, device=p.device) for s, p in zip(self.shard, self.params)] if stage >= 2 else None
        mem = comm.memory
        mem.alloc("parameters", sum((s if stage == 3 else n) * e for s, n, e in zip(self.shard, self.numels, es)), "model")
        mem.alloc("gradients", sum((s if stage >= 2 else n) * e for s, n, e in zip(self.shard, self.numels, es)), "gradients")
        mem.alloc("optimizer", sum(2 * n * e for n, e in zip(local, es)), "AdamW m and v")
        self._hooks: list = []
        if stage >= 2:
            for p in self.params:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._reduce_scatter_hook))
        if stage == 3:
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

    def _reduce_scatter(self, grad: Tensor, i: int) -> Tensor:
        """Full gradients of every rank -> my shard of their mean."""
        out = grad.new_empty(self.shard[i])
        self.comm.reduce_scatter_tensor(out, self._padded(grad, i), op="avg")
        return out

    # ------------------------------------------------------------------ stage 2 and 3 hooks

    def _reduce_scatter_hook(self, p: nn.Parameter) -> None:
        """Runs as soon as p's gradient is complete in backward: keep only my shard of it."""
        i = self._index[id(p)]
        nbytes = p.grad.numel() * p.grad.element_size()
        self.comm.memory.alloc("comm", nbytes, "unsharded gradient")
        with torch.no_grad():
            self.grad_shard[i] += self._reduce_scatter(p.grad, i)
        p.grad = None
        self.comm.memory.free("comm", nbytes, "unsharded gradient")
        if self.stage == 3:
            self._release(i)

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

    # ------------------------------------------------------------------ the optimizer API

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
        if self.grad_shard is not None:
            for g in self.grad_shard:
                g.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Synchronise gradients as the stage demands and apply AdamW to the shard this rank owns."""
        self.t += 1
        comm = self.comm
        n_local = 0
        for i, p in enumerate(self.params):
            if self.stage == 0:  # plain DP: all-reduce the whole gradient, update the whole parameter
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                comm.all_reduce(g, op="avg")
                new_p, self.m[i], self.v[i] = self._adamw(p.data.reshape(-1), g.reshape(-1), i)
                p.data.copy_(new_p.view_as(p))
                n_local += p.numel()
                continue
            if self.stage == 1:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                nbytes = g.numel() * g.element_size()
                comm.memory.alloc("comm", nbytes, "padded gradient")
                new_p = zero1_step(comm, p.data.reshape(-1), g.reshape(-1), self.m[i], self.v[i], self.t,
                                   self.lr, self.betas, self.eps, self.weight_decay)
                comm.memory.free("comm", nbytes, "padded gradient")
                p.data.copy_(new_p.view_as(p))
                n_local += self.shard[i]
                continue
            g_shard = self.grad_shard[i]  # stages 2 and 3: reduce-scattered during backward
            lo, hi = self.owned[i]
            if self.stage == 3:
                w = self.param_shard[i]
            else:
                w = torch.zeros(self.shard[i], dtype=p.dtype, device=p.device)
                w[: hi - lo] = p.data.reshape(-1)[lo:hi]
            new_w, self.m[i], self.v[i] = self._adamw(w, g_shard, i)
            n_local += self.shard[i]
            if self.stage == 3:
                self.param_shard[i] = new_w  # the next forward gathers it
            else:
                p.data.copy_(self._all_gather(new_w, i))  # every rank needs the whole updated parameter
        # AdamW is memory-bound: it reads p, g, m, v and writes p, m, v (7 tensors).
        comm.compute(nbytes=7 * n_local * self.params[0].element_size(), label="optimizer step")

    def _adamw(self, w: Tensor, g: Tensor, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """Torch's AdamW on one (flat) shard: decoupled decay first, then the bias-corrected Adam update."""
        return adamw_update(w, g, self.m[i], self.v[i], self.t, self.lr, self.betas, self.eps, self.weight_decay)

    def gather_full_parameters(self) -> None:
        """Stage 3: all-gather every parameter into the model (e.g. to evaluate or save); a collective.

        The next forward pass releases them again. Other stages already hold them.
        """
        if self.stage == 3:
            for i in range(len(self.params)):
                self._gather(i)

    def remove_hooks(self) -> None:
        """Detach the stage-2/3 hooks from the model (after gather_full_parameters() for stage 3)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self) -> dict:
        """This rank's shard of the optimizer state (each rank saves its own)."""
        return {"t": self.t, "stage": self.stage, "rank": self.comm.rank, "world_size": self.comm.world_size,
                "m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v], "lr": self.lr}
