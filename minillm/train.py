"""Training: AdamW from scratch, a cosine schedule with warm-up, gradient clipping, the loop.

``adamw_update`` is the whole optimizer as one pure function on tensors; the
``AdamW`` class applies it to every parameter. The tests check both against
``torch.optim.AdamW``.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from minillm.evaluate import evaluate_loss
from minillm.moved import moved_names
from minillm.validate import check_int, check_number, is_int

__all__ = [
    "adamw_update",
    "AdamW",
    "param_groups",
    "cosine_lr",
    "clip_grad_norm_",
    "train",
    "CPU_FP32_PEAK_NOTE",
]


def adamw_update(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> tuple[Tensor, Tensor, Tensor]:
    """One AdamW step (Loshchilov & Hutter, 2019) on one tensor; returns new (param, m, v).

    All tensors share one shape. ``step`` counts from 1. The order is torch's:
    decoupled weight decay first (``p -= lr·wd·p``), then the bias-corrected Adam
    update ``p -= lr · m̂ / (sqrt(v̂) + eps)`` with ``m̂ = m / (1 - β1^t)`` and
    ``v̂ = v / (1 - β2^t)``.
    """
    if not is_int(step) or step < 1:
        raise ValueError(f"step={step!r} must be a whole number counting from 1 (the first update is step=1)")
    beta1, beta2 = betas
    param = param * (1.0 - lr * weight_decay)
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * grad * grad
    m_hat = m / (1.0 - beta1**step)
    v_hat = v / (1.0 - beta2**step)
    param = param - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return param, m, v


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's two parameter groups for AdamW: ``[{decay}, {no decay}]``.

    Every trainable tensor with >= 2 dimensions (linear weights and the token and
    position embeddings, which are 2-D) gets ``weight_decay``; 1-D tensors
    (biases, LayerNorm weights and biases) get 0. A tied weight appears once.
    """
    weight_decay = check_number("weight_decay", weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() de-duplicates tied weights
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


class AdamW:
    """AdamW over parameters or parameter groups, with state ``m`` and ``v`` per parameter.

    Same constructor and ``step``/``zero_grad`` as ``torch.optim.AdamW``: ``params``
    is an iterable of tensors (one group) or a list of group dicts, each with
    ``"params"`` and optionally its own ``"weight_decay"`` and ``"lr"`` (see
    :func:`param_groups`). ``opt.lr`` may be changed between steps (the schedule
    does so); it applies to every group that did not set its own ``"lr"``.
    The update runs in place with fused-style ``torch._foreach`` kernels, which
    computes exactly what :func:`adamw_update` computes.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        self.lr = check_number("lr", lr)
        self.eps = check_number("eps", eps)
        self.weight_decay = check_number("weight_decay", weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas={betas} must both be in [0, 1), e.g. (0.9, 0.999)")
        self.betas = betas
        self.param_groups = _groups(params, weight_decay)
        self.params = [p for g in self.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("AdamW got no trainable parameters; pass model.parameters() or param_groups(model, wd)")
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        i = 0
        for group in self.param_groups:
            n = len(group["params"])
            live = [j for j in range(i, i + n) if self.params[j].grad is not None]
            i += n
            if live:
                lr = group.get("lr", self.lr)
                self._update(live, lr, group["weight_decay"])

    def _update(self, live: list[int], lr: float, weight_decay: float) -> None:
        ps = [self.params[i] for i in live]
        gs = [self.params[i].grad for i in live]
        ms = [self.m[i] for i in live]
        vs = [self.v[i] for i in live]
        b1, b2 = self.betas
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        # p <- p·(1 - lr·wd);  m <- β1·m + (1-β1)·g;  v <- β2·v + (1-β2)·g²
        if weight_decay:
            torch._foreach_mul_(ps, 1.0 - lr * weight_decay)
        torch._foreach_lerp_(ms, gs, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1.0 - b2)
        # p <- p - lr · (m / bc1) / (sqrt(v) / sqrt(bc2) + eps), in torch.optim.AdamW's order of
        # float32 operations, so that the two give the same bits from the same gradients
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bc2**0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(ps, ms, denom, value=-lr / bc1)

    def state_dict(self) -> dict:
        return {"t": self.t, "m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v], "lr": self.lr}


def _groups(params, weight_decay: float) -> list[dict]:
    """Normalise ``params`` (tensors or group dicts) to groups of trainable tensors with a weight_decay each."""
    items = list(params)
    if not items or not isinstance(items[0], dict):
        if any(isinstance(x, dict) for x in items):
            raise ValueError("params mixes tensors and group dicts; pass one or the other")
        return [{"params": [p for p in items if p.requires_grad], "weight_decay": weight_decay}]
    groups = []
    for k, g in enumerate(items):
        if not isinstance(g, dict) or "params" not in g:
            raise ValueError(f"params[{k}] must be a dict with a 'params' list, like param_groups(model, wd) returns")
        unknown = set(g) - {"params", "weight_decay", "lr"}
        if unknown:
            raise ValueError(f"params[{k}] has unknown keys {sorted(unknown)}; a group takes 'params', 'weight_decay', 'lr'")
        group = {"params": [p for p in g["params"] if p.requires_grad],
                 "weight_decay": check_number(f"params[{k}]['weight_decay']", g.get("weight_decay", weight_decay))}
        if "lr" in g:
            group["lr"] = check_number(f"params[{k}]['lr']", g["lr"])
        groups.append(group)
    return groups


def cosine_lr(step: int, max_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``.

    ``step`` counts from 0. After ``total`` the rate stays at ``min_lr``.
    """
    check_int("warmup", warmup, minimum=0)
    check_int("total", total)
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most ``max_norm``; return the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g.mul_(scale)
    return float(total)


# Peak used for MFU on a CPU when the caller gives none. A laptop core does about
# 2 FMA units × 8 fp32 lanes (AVX2) × 2 FLOPs × ~3 GHz ≈ 100 GFLOP/s; ``minillm
# tour`` measures the real machine instead (minillm.hardware.measure).
CPU_FP32_PEAK_NOTE = "assumed 100 GFLOP/s per core: 2 FMA units × 8 fp32 lanes (AVX2) × 2 FLOP × 3 GHz"


def train(
    model: nn.Module,
    train_ids: Tensor,
    val_ids: Tensor | None = None,
    *,
    steps: int = 200,
    batch_size: int = 16,
    block_size: int | None = None,
    lr: float = 3e-3,
    min_lr: float | None = None,
    warmup: int = 20,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    eval_every: int = 50,
    eval_batches: int = 4,
    seed: int = 0,
    peak_flops: float | None = None,
    peak_source: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train ``model`` (a minillm GPT) with AdamW, cosine schedule and clipping.

    ``train_ids`` and ``val_ids`` are 1-D int64 token streams. Returns a history
    dict: ``step``, ``loss`` (training loss per step), ``val_step``/``val_loss``,
    ``tokens_per_s``, ``mfu`` and the ``peak_flops`` it was measured against.

    MFU = flops_per_token × tokens/s / peak (PaLM, Chowdhery et al. 2022, App. B).
    The peak defaults to ``torch.get_num_threads()`` × 100 GFLOP/s (see
    ``CPU_FP32_PEAK_NOTE``); pass the measured or datasheet peak to be exact.
    """
    from tqdm.auto import tqdm

    from minillm.data import get_batch

    steps = check_int("steps", steps)
    batch_size = check_int("batch_size", batch_size)
    block_size = model.config.block_size if block_size is None else check_int("block_size", block_size)
    if block_size > model.config.block_size:
        raise ValueError(f"block_size={block_size} exceeds the model's block_size={model.config.block_size}")
    if peak_flops is None:
        peak_flops = torch.get_num_threads() * 100e9
        peak_source = peak_source or f"{torch.get_num_threads()} threads × " + CPU_FP32_PEAK_NOTE
    min_lr = lr / 10 if min_lr is None else min_lr
    g = torch.Generator().manual_seed(seed)
    opt = AdamW(param_groups(model, weight_decay), lr=lr)
    hist: dict = {"step": [], "loss": [], "val_step": [], "val_loss": [], "lr": []}
    model.train()
    tokens = 0
    eval_time = 0.0
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="train", disable=not progress, leave=False)
    for step in bar:
        opt.lr = cosine_lr(step, lr, warmup, steps, min_lr)
        x, y = get_batch(train_ids, batch_size, block_size, generator=g)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        if grad_clip:
            clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        tokens += x.numel()
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        hist["lr"].append(opt.lr)
        last = step == steps - 1
        if val_ids is not None and eval_every and (step % eval_every == 0 or last):
            te = time.perf_counter()
            vl = evaluate_loss(model, val_ids, batch_size, block_size=block_size, n_batches=eval_batches, random_windows=True)
            hist["val_step"].append(step)
            hist["val_loss"].append(vl)
            bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", val=f"{vl:.3f}")
            eval_time += time.perf_counter() - te
    elapsed = time.perf_counter() - t0 - eval_time  # training time only
    tps = tokens / elapsed
    fpt = model.flops_per_token(block_size) if hasattr(model, "flops_per_token") else 6 * sum(p.numel() for p in model.parameters())
    hist.update(
        tokens_per_s=tps,
        mfu=fpt * tps / peak_flops,
        peak_flops=peak_flops,
        peak_source=peak_source,
        flops_per_token=fpt,
        seconds=elapsed,
    )
    if log:
        vl = f", val loss {hist['val_loss'][-1]:.3f}" if hist["val_loss"] else ""
        log(
            f"trained {steps} steps: loss {hist['loss'][-1]:.3f}{vl}; {tps:,.0f} tokens/s; "
            f"MFU = {fpt:,} FLOP/token × tokens/s / {peak_flops / 1e9:,.0f} GFLOP/s = {hist['mfu']:.1%} "
            f"(peak: {peak_source})"
        )
    model.eval()
    return hist


__getattr__ = moved_names(__name__, {"train_step_seconds": "minillm.timing", "estimate_loss": "minillm.evaluate (as evaluate_loss)"})
