"""Structured pruning: remove whole attention heads, MLP neurons or layers, and get a smaller dense GPT.

Unstructured masks (:mod:`minillm.compress.prune`) zero weights but leave every matrix its
shape, so a dense CPU kernel does the same work. Removing a head deletes D rows of Q, K and
V each and D columns of the output projection; removing an MLP neuron deletes a row of
``c_fc`` and a column of ``c_proj``. What is left is a smaller *dense* model that really is
faster (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", arXiv:1905.10650;
Voita et al. 2019; Minitron, Muralidharan et al. 2024, arXiv:2407.14679).

Importance scores, per layer:

- **magnitude** (default): the L2 norm of a head's (or neuron's) output weights, its
  columns of ``c_proj``: how much it can add to the residual stream;
- **taylor** (with ``calibration_ids``): the first-order estimate of the loss change when a
  unit is removed, ``|Σ w · ∂L/∂w|`` over its weights (Molchanov et al. 2019,
  arXiv:1906.10771).

The pruned model records its per-layer sizes in ``GPTConfig.layer_heads`` and
``GPTConfig.layer_mlp``; it saves and loads like any other checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from minillm.model import GPT
from minillm.validate import is_int, is_number

__all__ = ["head_importance", "neuron_importance", "prune_heads", "prune_neurons", "drop_layers", "mask_heads"]


def _head_slices(attn) -> list[Tensor]:
    """For each head: the indices of its columns in c_proj (= its rows in each of Q, K, V)."""
    D = attn.head_dim
    return [torch.arange(h * D, (h + 1) * D) for h in range(attn.n_head)]


def _taylor_grads(model: GPT, calibration_ids: Tensor) -> None:
    """One backward pass of the next-token loss on ``calibration_ids`` [B, T]; gradients stay in ``.grad``."""
    if not isinstance(calibration_ids, Tensor) or calibration_ids.dim() != 2 or calibration_ids.shape[1] < 2:
        raise ValueError("calibration_ids must be token ids [B, T] with T >= 2 (the loss needs a next token)")
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():  # prune_heads / prune_neurons run under no_grad; the scores need a backward pass
        _, loss = model(calibration_ids[:, :-1], calibration_ids[:, 1:])
        loss.backward()


def head_importance(model: GPT, calibration_ids: Tensor | None = None) -> list[Tensor]:
    """Per layer, one score per head [H_l]: output-weight norm, or the Taylor score with calibration data."""
    if calibration_ids is not None:
        _taylor_grads(model, calibration_ids)
    scores = []
    for block in model.h:
        attn = block.attn
        inner = attn.n_head * attn.head_dim
        w, s = attn.c_proj.weight, []
        for cols in _head_slices(attn):
            if calibration_ids is None:
                s.append(w[:, cols].detach().norm())
            else:
                rows = torch.cat([cols, cols + inner, cols + 2 * inner])
                qkv = attn.c_attn.weight
                t = (w[:, cols] * w.grad[:, cols]).sum() + (qkv[rows] * qkv.grad[rows]).sum()
                s.append(t.detach().abs())
        scores.append(torch.stack(s))
    if calibration_ids is not None:
        model.zero_grad(set_to_none=True)
    return scores


def neuron_importance(model: GPT, calibration_ids: Tensor | None = None) -> list[Tensor]:
    """Per layer, one score per MLP hidden unit [W_l]: output-weight norm, or the Taylor score."""
    if calibration_ids is not None:
        _taylor_grads(model, calibration_ids)
    scores = []
    for block in model.h:
        fc, proj = block.mlp.c_fc, block.mlp.c_proj
        if calibration_ids is None:
            scores.append(proj.weight.detach().norm(dim=0))
        else:
            t = (proj.weight * proj.weight.grad).sum(0) + (fc.weight * fc.weight.grad).sum(1)
            scores.append(t.detach().abs())
    if calibration_ids is not None:
        model.zero_grad(set_to_none=True)
    return scores


def _kept(keep, scores: list[Tensor], what: str) -> list[list[int]]:
    """Per layer, the sorted indices to keep: from a fraction, a count, or explicit indices {layer: [i, ...]}."""
    out = []
    for layer, s in enumerate(scores):
        n = s.numel()
        if isinstance(keep, Mapping):
            idx = sorted(int(i) for i in keep.get(layer, range(n)))
            if not idx or idx[0] < 0 or idx[-1] >= n or len(set(idx)) != len(idx):
                raise ValueError(f"keep[{layer}]={keep.get(layer)!r}: give 1 to {n} distinct {what} indices in [0, {n})")
        else:
            if is_int(keep):
                k = int(keep)
            elif is_number(keep) and 0 < keep <= 1:
                k = max(1, round(keep * n))
            else:
                raise ValueError(f"keep={keep!r} must be a fraction in (0, 1], a count, or {{layer: [indices]}}")
            if not 1 <= k <= n:
                raise ValueError(f"keep={keep!r} keeps {k} {what} of layer {layer}'s {n}; keep at least 1 and at most {n}")
            idx = sorted(torch.topk(s, k).indices.tolist())
        out.append(idx)
    return out


def _rebuild(model: GPT, config) -> GPT:
    """A fresh GPT of ``config`` with every parameter that keeps its shape copied from ``model``."""
    new = GPT(config).to(next(model.parameters()).device)
    old = model.state_dict()
    with torch.no_grad():
        for name, p in new.state_dict().items():
            if name in old and old[name].shape == p.shape:
                p.copy_(old[name])
    return new.train(model.training)


@torch.no_grad()
def prune_heads(model: GPT, keep, calibration_ids: Tensor | None = None) -> GPT:
    """A smaller dense copy of ``model`` that keeps only some attention heads per layer.

    ``keep``: a fraction of each layer's heads (0.5), a count per layer (2), or explicit
    indices ``{layer: [head, ...]}`` (layers not listed keep all). Heads are ranked by
    :func:`head_importance` (Taylor scores if ``calibration_ids`` [B, T] is given).
    """
    kept = _kept(keep, head_importance(model, calibration_ids), "heads")
    config = dataclasses.replace(model.config, layer_heads=tuple(len(k) for k in kept))
    new = _rebuild(model, config)
    for block, old_block, heads in zip(new.h, model.h, kept):
        attn, old = block.attn, old_block.attn
        cols = torch.cat([_head_slices(old)[h] for h in heads])
        inner = old.n_head * old.head_dim
        rows = torch.cat([cols, cols + inner, cols + 2 * inner])
        attn.c_attn.weight.copy_(old.c_attn.weight[rows])
        if old.c_attn.bias is not None:
            attn.c_attn.bias.copy_(old.c_attn.bias[rows])
        attn.c_proj.weight.copy_(old.c_proj.weight[:, cols])
    return new


@torch.no_grad()
def prune_neurons(model: GPT, keep, calibration_ids: Tensor | None = None) -> GPT:
    """A smaller dense copy of ``model`` that keeps only some MLP hidden units per layer (``keep`` as in :func:`prune_heads`)."""
    kept = _kept(keep, neuron_importance(model, calibration_ids), "neurons")
    config = dataclasses.replace(model.config, layer_mlp=tuple(len(k) for k in kept))
    new = _rebuild(model, config)
    for block, old_block, units in zip(new.h, model.h, kept):
        idx = torch.tensor(units)
        block.mlp.c_fc.weight.copy_(old_block.mlp.c_fc.weight[idx])
        if old_block.mlp.c_fc.bias is not None:
            block.mlp.c_fc.bias.copy_(old_block.mlp.c_fc.bias[idx])
        block.mlp.c_proj.weight.copy_(old_block.mlp.c_proj.weight[:, idx])
    return new


def drop_layers(model: GPT, layers: Iterable[int]) -> GPT:
    """A copy of ``model`` without the blocks in ``layers`` (the residual stream skips them)."""
    drop = sorted(set(int(i) for i in layers))
    L = model.config.n_layer
    if any(i < 0 or i >= L for i in drop) or len(drop) >= L:
        raise ValueError(f"layers={drop} must be distinct indices in [0, {L}) that leave at least one block")
    keep = [i for i in range(L) if i not in drop]
    cfg = model.config
    config = dataclasses.replace(
        cfg,
        n_layer=len(keep),
        layer_heads=None if cfg.layer_heads is None else tuple(cfg.layer_heads[i] for i in keep),
        layer_mlp=None if cfg.layer_mlp is None else tuple(cfg.layer_mlp[i] for i in keep),
    )
    new = copy.deepcopy(model)
    new.config = config
    new.h = torch.nn.ModuleList(new.h[i] for i in keep)
    return new


@torch.no_grad()
def mask_heads(model: GPT, heads: Mapping[int, Iterable[int]]) -> GPT:
    """A copy of ``model`` with the listed heads silenced (their columns of c_proj zeroed), same shapes.

    ``heads``: {layer: [head, ...]}. The structured twin of :func:`prune_heads`: pruning those
    heads away gives the same outputs with smaller matrices.
    """
    new = copy.deepcopy(model)
    for layer, hs in heads.items():
        attn = new.h[layer].attn
        for h in hs:
            attn.c_proj.weight[:, _head_slices(attn)[h]] = 0.0
    return new
