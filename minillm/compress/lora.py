"""LoRA: adapt a frozen model by training a low-rank update of a few weight matrices.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685).
A frozen linear layer ``W₀`` [out, in] gets a trainable update ``ΔW = (α/r)·B A`` with
``A`` [r, in] and ``B`` [out, r]:

    h = W₀ x + (α/r) · B A x

- ``B`` starts at zero, so the adapted model equals the base model exactly at the start,
  and on the first backward pass ``A``'s gradient is exactly zero (it is multiplied by B).
- ``A`` starts Kaiming-uniform, as in the paper's reference code (``loralib``), which uses
  nn.Linear's default: U(−1/√in, 1/√in).
- Each adapted matrix adds ``r·(in + out)`` trainable parameters instead of ``in·out``.
- :meth:`LoRALinear.merge` folds the update into one weight, ``W₀ + (α/r)·B A``: the merged
  model computes the same function with no added latency.
- The update is scaled by ``α/r``. Hu et al. (Sec. 4.1) set α to the first r they try and
  keep it fixed, so that trying another r needs no new learning rate; here ``alpha``
  defaults to ``r`` (scale 1), and lesson 02's widget lets you set both.

The base layer may be any module with ``in_features``/``out_features`` whose forward maps
[..., in] to [..., out]; a frozen int4 :class:`~minillm.compress.int4.WeightOnlyLinear`
base is the QLoRA idea (Dettmers et al. 2023). Only a float :class:`~minillm.model.Linear`
base can be merged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from minillm.compress.int4 import WeightOnlyLinear
from minillm.model import Dropout, Linear
from minillm.validate import check_fraction, check_int, check_number

__all__ = [
    "LoRALinear",
    "add_lora",
    "merge_lora",
    "lora_state_dict",
    "load_lora",
    "trainable_parameters",
    "lora_targets",
]


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: x [..., in] -> [..., out].

    ``y = base(x) + (alpha / r) · dropout(x) Aᵀ Bᵀ`` with ``A`` [r, in] (Kaiming-uniform)
    and ``B`` [out, r] (zeros). The base's parameters are frozen (requires_grad False).
    """

    def __init__(self, base: nn.Module, r: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if not hasattr(base, "in_features") or not hasattr(base, "out_features"):
            raise TypeError(f"LoRALinear wraps a linear layer with in_features/out_features, got {type(base).__name__}")
        n_in, n_out = base.in_features, base.out_features
        r = check_int("r", r)
        if r > min(n_in, n_out):
            raise ValueError(
                f"r={r} exceeds min(in_features, out_features) = {min(n_in, n_out)}: a rank-{r} update of a "
                f"[{n_out}, {n_in}] matrix is no longer low-rank; use r <= {min(n_in, n_out)}"
            )
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features, self.r = n_in, n_out, r
        self.alpha = float(r) if alpha is None else check_number("alpha", alpha, strict=True)
        self.scaling = self.alpha / r
        bound = 1.0 / math.sqrt(n_in)  # kaiming_uniform_(a=√5) on [r, in]: gain √(1/3) · √(3/in)
        device = next(itertools.chain(base.parameters(), base.buffers()), torch.empty(0)).device
        self.A = nn.Parameter(torch.empty(r, n_in, device=device).uniform_(-bound, bound))
        self.B = nn.Parameter(torch.zeros(n_out, r, device=device))
        self.dropout = Dropout(check_fraction("dropout", dropout))

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / r) · B A`` as a dense [out, in] matrix."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: Tensor) -> Tensor:
        # x Aᵀ first: [N, in] @ [in, r] then [N, r] @ [r, out] costs r·(in + out) per row,
        # never forming the [out, in] product.
        return self.base(x) + self.scaling * ((self.dropout(x) @ self.A.t()) @ self.B.t())

    @torch.no_grad()
    def merge(self) -> Linear:
        """A plain :class:`Linear` with weight ``W₀ + (alpha/r)·B A`` (and the base's bias)."""
        if not isinstance(self.base, Linear):
            raise TypeError(
                f"only a float minillm Linear base can be merged, this one is {type(self.base).__name__}; "
                "dequantize it first (a merged int4 weight would need re-quantizing)"
            )
        w = self.base.weight
        merged = Linear(self.in_features, self.out_features, bias=self.base.bias is not None).to(w.device, w.dtype)
        merged.weight.copy_(w + self.delta_weight().to(w.dtype))
        if self.base.bias is not None:
            merged.bias.copy_(self.base.bias)
        return merged

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, alpha={self.alpha:g}"


#: Layers add_lora can wrap: float Linear, and a frozen weight-only int4/int8 Linear (QLoRA).
_WRAPPABLE = (Linear, WeightOnlyLinear)


def lora_targets(model: nn.Module) -> list[str]:
    """The names a LoRA target can take: the last name component of every (float or weight-only
    quantized) linear layer in ``model``."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, _WRAPPABLE)})


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def add_lora(
    model: nn.Module,
    r: int,
    alpha: float | None = None,
    targets: Iterable[str] = ("c_attn", "c_proj", "c_fc"),
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap every Linear whose name ends in one of ``targets`` in a :class:`LoRALinear`, in place.

    Every other parameter of ``model`` is frozen, so only the adapters train. Returns
    ``model``. Weight-only quantized layers (``quantize_model(m, "int4", None)``) are
    wrapped too: LoRA on a frozen int4 base is the QLoRA idea. ``targets`` are last name components, e.g. "c_attn" matches
    ``h.0.attn.c_attn``; the valid ones are :func:`lora_targets` (model).
    """
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    valid = lora_targets(model)
    unknown = [t for t in targets if t not in valid]
    if unknown or not targets:
        raise ValueError(f"unknown LoRA target(s) {unknown or list(targets)}; valid names: {', '.join(valid)}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already has LoRA adapters; merge_lora(model) first, or load_lora to swap them")
    sites = [n for n, m in model.named_modules() if isinstance(m, _WRAPPABLE) and n.rsplit(".", 1)[-1] in targets]
    for p in model.parameters():
        p.requires_grad_(False)
    for name in sites:
        parent, child = _parent(model, name)
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by its merged :class:`Linear`, in place; returns ``model``.

    The result is a plain model (every parameter trainable again) whose outputs equal the
    adapted model's up to float rounding.
    """
    sites = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not sites:
        raise ValueError("model has no LoRA adapters to merge; add_lora(model, r) first")
    for name in sites:
        parent, child = _parent(model, name)
        setattr(parent, child, getattr(parent, child).merge())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter tensors: {"<layer>.A": [r, in], "<layer>.B": [out, r]} (copies, on the CPU)."""
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            state[f"{name}.A"] = m.A.detach().cpu().clone()
            state[f"{name}.B"] = m.B.detach().cpu().clone()
    if not state:
        raise ValueError("model has no LoRA adapters; add_lora(model, r) first")
    return state


@torch.no_grad()
def load_lora(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Copy adapter tensors from :func:`lora_state_dict` into ``model``'s adapters; returns ``model``.

    The model must carry adapters at the same layers and ranks (``add_lora`` with the same
    targets and r). Switching adapters is one call; the base weights are untouched.
    """
    adapters = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    expected = {f"{n}.{p}" for n in adapters for p in ("A", "B")}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(
            f"adapter state does not match the model's adapters (missing {missing[:3]}, unexpected {extra[:3]}); "
            "add_lora with the same targets and r as the saved adapter"
        )
    for key, tensor in state.items():
        name, _, which = key.rpartition(".")
        param = getattr(adapters[name], which)
        if tuple(tensor.shape) != tuple(param.shape):
            raise ValueError(f"{key} has shape {tuple(tensor.shape)}, the model's adapter {tuple(param.shape)}; same r?")
        param.copy_(tensor)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters of ``model`` will train (requires_grad True)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
