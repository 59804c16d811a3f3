"""Pruning: which weights to remove (masks and criteria) and how to keep them removed.

A mask is a bool tensor the shape of the weight; **True means kept**, as in
``torch.nn.utils.prune``. Criteria:

- **magnitude** (Han et al. 2015, "Learning both Weights and Connections"): drop the
  smallest |w|, per layer, per output row, or with one threshold across the model.
- **Wanda** (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs",
  arXiv:2306.11695): score ``|W_ij| · ‖X_j‖₂``, the weight times the L2 norm of the input
  feature it multiplies over a calibration set, compared within each output row. No
  weight update is needed.
- **N:M** (NVIDIA's 2:4 structured sparsity, Mishra et al. 2021, arXiv:2104.08378): in
  every group of m consecutive input weights of a row keep the n highest scores. Sparse
  tensor cores (A100 and later) run a 2:4 GEMM about 2× faster; torch's semi-structured
  kernels need CUDA, so on a CPU a 2:4 mask saves nothing by itself.

:class:`GradualPruner` raises the sparsity along the cubic schedule of Zhu & Gupta 2017
("To prune, or not to prune", arXiv:1710.01878) and re-applies the masks after every
optimizer step, so pruned weights stay zero while the rest fine-tune.

Masks only zero weights: the model keeps its dense shapes, size and speed. Saving bytes
needs a sparse format; saving time on a CPU needs structured pruning (fewer heads or
neurons, a smaller dense model).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minillm.model import Linear
from minillm.validate import check_choice, check_fraction, check_int

__all__ = [
    "prunable_linears",
    "magnitude_mask",
    "global_magnitude_masks",
    "wanda_mask",
    "nm_mask",
    "activation_norms",
    "apply_masks",
    "prune_model",
    "sparsity_report",
    "cubic_sparsity",
    "GradualPruner",
    "METHODS",
]

METHODS = ("magnitude", "wanda", "2:4")


def prunable_linears(model: nn.Module) -> dict[str, Linear]:
    """The Linear layers that pruning touches: every one inside the blocks.

    The output head is left out: in minillm's GPT it shares its weight with the token
    embedding, and pruning vocabulary rows removes words rather than connections.
    """
    head = getattr(model, "lm_head", None)
    return {n: m for n, m in model.named_modules() if isinstance(m, Linear) and m is not head}


def _check_weight(weight, what: str = "weight") -> Tensor:
    if not isinstance(weight, Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"{what} must be a float matrix [out, in], got {getattr(weight, 'shape', type(weight).__name__)}")
    return weight


def _keep_all_but_smallest(scores: Tensor, k: int) -> Tensor:
    """Mask [same shape] that drops the ``k`` smallest entries of ``scores`` (flattened)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k:
        mask[torch.topk(scores.reshape(-1), k, largest=False).indices] = False
    return mask.view_as(scores)


def _drop_per_row(scores: Tensor, k: int) -> Tensor:
    """Mask [out, in] that drops the ``k`` smallest scores of every row."""
    mask = torch.ones_like(scores, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(scores, k, dim=1, largest=False).indices, False)
    return mask


def magnitude_mask(weight: Tensor, sparsity: float, scope: str = "layer") -> Tensor:
    """Keep-mask [out, in] that removes the smallest |w|.

    ``scope="layer"`` removes exactly ``round(numel · sparsity)`` weights of the whole
    matrix (Python's round, as ``torch.nn.utils.prune.l1_unstructured``); ``scope="row"``
    removes ``int(in · sparsity)`` in every output row.
    """
    w = _check_weight(weight).detach().abs()
    sparsity = check_fraction("sparsity", sparsity)
    check_choice("scope", scope, ("layer", "row"))
    if scope == "layer":
        return _keep_all_but_smallest(w, round(w.numel() * sparsity))
    return _drop_per_row(w, int(w.shape[1] * sparsity))


def global_magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, Tensor]:
    """One |w| threshold across every prunable linear: {name: keep-mask}.

    Exactly ``round(total · sparsity)`` weights are removed in all; layers whose weights
    are small lose more of them than layers whose weights are large.
    """
    sparsity = check_fraction("sparsity", sparsity)
    layers = prunable_linears(model)
    if not layers:
        raise ValueError("model has no minillm Linear layers to prune")
    flat = torch.cat([m.weight.detach().abs().reshape(-1) for m in layers.values()])
    keep = _keep_all_but_smallest(flat, round(flat.numel() * sparsity))
    masks, start = {}, 0
    for name, m in layers.items():
        n = m.weight.numel()
        masks[name] = keep[start : start + n].view_as(m.weight)
        start += n
    return masks


def wanda_mask(weight: Tensor, act_norm: Tensor, sparsity: float) -> Tensor:
    """Wanda's keep-mask [out, in]: score ``|W_ij| · act_norm[j]``, ``int(in · sparsity)`` dropped per row."""
    w = _check_weight(weight).detach().abs()
    sparsity = check_fraction("sparsity", sparsity)
    if not isinstance(act_norm, Tensor) or act_norm.shape != (w.shape[1],):
        raise ValueError(
            f"act_norm must be a vector of the {w.shape[1]} input-feature norms, got "
            f"{getattr(act_norm, 'shape', type(act_norm).__name__)}; compute it with activation_norms(model, ids)"
        )
    return _drop_per_row(w * act_norm.to(w.dtype).abs().unsqueeze(0), int(w.shape[1] * sparsity))


def nm_mask(weight: Tensor, n: int = 2, m: int = 4, scores: Tensor | None = None) -> Tensor:
    """N:M keep-mask [out, in]: in every group of ``m`` consecutive inputs of a row keep the ``n`` best.

    ``scores`` [out, in] ranks the weights (default |w|; pass Wanda's scores for Wanda N:M).
    """
    w = _check_weight(weight)
    m = check_int("m", m)
    n = check_int("n", n, minimum=0)
    if n > m:
        raise ValueError(f"n={n} must be <= m={m}: keep n of every m weights")
    rows, cols = w.shape
    if cols % m:
        raise ValueError(f"m={m} does not divide the row length {cols}; N:M groups need in_features % m == 0")
    s = w.detach().abs() if scores is None else scores.detach()
    if s.shape != w.shape:
        raise ValueError(f"scores {tuple(s.shape)} must have the weight's shape {tuple(w.shape)}")
    groups = s.reshape(rows, cols // m, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, torch.topk(groups, n, dim=2).indices, True)
    return mask.view(rows, cols)


@torch.no_grad()
def activation_norms(model: nn.Module, calibration_ids: Tensor) -> dict[str, Tensor]:
    """Per-input-feature L2 norm ‖X_j‖₂ that each prunable linear sees on ``calibration_ids`` [B, T].

    Forward hooks add up x² over every token of the batch; returns {name: [in_features]}.
    """
    if not isinstance(calibration_ids, Tensor) or calibration_ids.dim() != 2 or calibration_ids.is_floating_point():
        raise ValueError(
            "calibration_ids must be token ids [B, T] (a few batches of training text), got "
            f"{getattr(calibration_ids, 'shape', type(calibration_ids).__name__)}"
        )
    layers = prunable_linears(model)
    sums = {name: torch.zeros(m.in_features) for name, m in layers.items()}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach().float().reshape(-1, module.in_features)
            sums[name] += (x * x).sum(0).cpu()

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    was_training = model.training
    try:
        model.eval()
        model(calibration_ids)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: s.sqrt() for name, s in sums.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> nn.Module:
    """Zero every weight whose mask entry is False, in place; returns ``model``."""
    layers = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"mask for {name!r}, which is not a module of this model")
        w = layers[name].weight
        if mask.shape != w.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, the weight {tuple(w.shape)}")
        w.mul_(mask.to(w.device, w.dtype))
    return model


def prune_model(
    model: nn.Module, method: str = "magnitude", sparsity: float = 0.5, calibration_ids: Tensor | None = None
) -> tuple[nn.Module, dict[str, Tensor]]:
    """Prune every prunable linear of ``model`` in place: returns ``(model, {name: keep-mask})``.

    ``method``: "magnitude" (per layer), "wanda" (needs ``calibration_ids`` [B, T]) or
    "2:4" (magnitude within groups of 4; its sparsity is always 0.5).
    """
    check_choice("method", method, METHODS)
    sparsity = check_fraction("sparsity", sparsity)
    layers = prunable_linears(model)
    if method == "2:4":
        if sparsity != 0.5:
            raise ValueError(f"2:4 sparsity is always 0.5 (2 of every 4 weights), got sparsity={sparsity:g}")
        masks = {name: nm_mask(m.weight, 2, 4) for name, m in layers.items()}
    elif method == "wanda":
        if calibration_ids is None:
            raise ValueError("Wanda scores weights by their input activations: pass calibration_ids [B, T]")
        norms = activation_norms(model, calibration_ids)
        masks = {name: wanda_mask(m.weight, norms[name], sparsity) for name, m in layers.items()}
    else:
        masks = {name: magnitude_mask(m.weight, sparsity) for name, m in layers.items()}
    return apply_masks(model, masks), masks


def sparsity_report(model: nn.Module) -> list[dict]:
    """One row per prunable linear, then a total: name, shape, weights, zeros and sparsity."""
    rows = []
    for name, m in prunable_linears(model).items():
        zeros = int((m.weight == 0).sum())
        rows.append(dict(name=name, shape=tuple(m.weight.shape), weights=m.weight.numel(), zeros=zeros))
    total = sum(r["weights"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    rows.append(dict(name="total", shape=None, weights=total, zeros=zeros))
    for r in rows:
        r["sparsity"] = r["zeros"] / r["weights"] if r["weights"] else 0.0
    return rows


def cubic_sparsity(step: int, s_init: float, s_final: float, n_steps: int) -> float:
    """Zhu & Gupta's schedule: ``s_f + (s_i − s_f)(1 − step/n)³``, then ``s_f`` from step n on."""
    step, n_steps = check_int("step", step, minimum=0), check_int("n_steps", n_steps)
    progress = min(step / n_steps, 1.0)
    return s_final + (s_init - s_final) * (1.0 - progress) ** 3


class GradualPruner:
    """Raise the sparsity of ``model`` from ``s_init`` to ``s_final`` over ``n_steps`` steps.

    Call :meth:`step` after every optimizer step: it recomputes the magnitude masks at
    the scheduled sparsity (``scope="global"``: one threshold over all prunable linears;
    "layer": per layer) and zeroes the pruned weights, so they stay zero while the other
    weights train. Weights once pruned stay pruned (they are the smallest from then on).
    """

    def __init__(self, model: nn.Module, s_final: float, n_steps: int, s_init: float = 0.0, scope: str = "layer"):
        self.model = model
        self.s_init = check_fraction("s_init", s_init)
        self.s_final = check_fraction("s_final", s_final)
        if self.s_init > self.s_final:
            raise ValueError(f"s_init={s_init:g} must be <= s_final={s_final:g}: sparsity only grows")
        self.n_steps = check_int("n_steps", n_steps)
        self.scope = check_choice("scope", scope, ("layer", "global"))
        self.t = 0
        self.masks: dict[str, Tensor] = {}

    def sparsity(self) -> float:
        """The sparsity the schedule asks for now."""
        return cubic_sparsity(self.t, self.s_init, self.s_final, self.n_steps)

    @torch.no_grad()
    def step(self) -> float:
        """Prune to the current target, advance the schedule, return the sparsity applied."""
        s = self.sparsity()
        if self.scope == "global":
            self.masks = global_magnitude_masks(self.model, s)
        else:
            self.masks = {n: magnitude_mask(m.weight, s) for n, m in prunable_linears(self.model).items()}
        apply_masks(self.model, self.masks)
        self.t += 1
        return s
