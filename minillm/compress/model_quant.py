"""Quantize a whole minillm model, measure its size and its quality (lesson 04).

``quantize_model`` swaps each :class:`minillm.model.Linear` for a quantized layer
and returns a new model (a deep copy; the original is untouched):

| weights | activations    | method        | layer                                   |
|---------|----------------|---------------|-----------------------------------------|
| "int8"  | "int8"         | "rtn"         | Int8Linear, per-token dynamic (W8A8)    |
| "int8"  | "int8_static"  | "rtn"         | Int8Linear, one calibrated scale        |
| "int8"  | "int8"         | "smoothquant" | fold SmoothQuant, then Int8Linear       |
| "int8"  | "int8"         | "llm_int8"    | LLMInt8Linear (outliers in float)       |
| "int8"  | None           | "rtn"         | WeightOnlyLinear, 8 bits (W8A32)        |
| "int4"  | None           | "rtn"         | WeightOnlyLinear, 4 bits packed (W4A32) |
| "int2", "int3", "int5".."int7" | None | "rtn" | WeightOnlyLinear, one value per byte  |
| None    | None           | "smoothquant" | only the SmoothQuant fold (float model) |

"rtn" is round-to-nearest. Weight-only formats other than int4 and int8 are kept
one value per byte in memory (they exist to show where quality breaks);
``size_report(...)["linear_bits_per_weight"]`` gives what a packed file format
would need, ``bits + 32/group_size``. Embeddings, LayerNorms and an output layer tied to the
token embedding stay float32 (quantizing a tied head would store the matrix twice).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from minillm.compress.int4 import WeightOnlyLinear
from minillm.compress.int8_linear import Int8Linear, Int8WeightLinear, LLMInt8Linear
from minillm.compress.smoothquant import collect_act_absmax, smooth_model
from minillm.evaluate import evaluate_loss
from minillm.model import Linear
from minillm.validate import is_int

__all__ = ["linear_sites", "quantize_model", "size_report", "quality_table"]

WEIGHT_BITS = {f"int{b}": b for b in range(2, 9)}  # "int2" .. "int8"
WEIGHTS = tuple(WEIGHT_BITS) + (None,)
ACTIVATIONS = ("int8", "int8_static", None)
METHODS = ("rtn", "smoothquant", "llm_int8")


def linear_sites(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[str, nn.Module, str, Linear]]:
    """Every :class:`minillm.model.Linear` worth quantizing: [(name, parent, attribute, module)].

    Leaves out names in ``skip`` and any Linear whose weight is shared with a
    non-Linear module (GPT's ``lm_head`` tied to ``wte``).
    """
    shared = {
        id(p) for m in model.modules() if not isinstance(m, Linear) for p in m.parameters(recurse=False)
    }
    sites = []
    for name, mod in model.named_modules():
        if isinstance(mod, Linear) and name not in skip and id(mod.weight) not in shared:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            sites.append((name, parent, attr, mod))
    return sites


def _check_args(weights, activations, method, calibration, group_size) -> None:
    for value, choices, name in ((weights, WEIGHTS, "weights"), (activations, ACTIVATIONS, "activations"), (method, METHODS, "method")):
        if value not in choices:
            raise ValueError(f"{name}={value!r} is unknown; use one of {', '.join(repr(c) for c in choices)}")
    if weights not in ("int8", None) and activations is not None:
        raise ValueError(f"weights={weights!r} is weight-only here; use activations=None (W{weights[3:]}A8 is not built)")
    if weights is None and method != "smoothquant":
        raise ValueError("weights=None quantizes nothing; it is only meaningful with method='smoothquant' (fold only)")
    if weights is None and activations is not None:
        raise ValueError(f"activations={activations!r} needs weights='int8'")
    if method == "llm_int8" and (weights, activations) != ("int8", "int8"):
        raise ValueError("method='llm_int8' is W8A8: use weights='int8', activations='int8'")
    if method == "smoothquant" and calibration is None:
        raise ValueError("method='smoothquant' needs calibration=<token ids [B, T]> to measure activation ranges")
    if activations == "int8_static" and calibration is None:
        raise ValueError("activations='int8_static' needs calibration=<token ids [B, T]>")
    if activations is not None and group_size not in ("auto", None):
        raise ValueError(
            f"group_size={group_size} only applies to weight-only quantization; W8A8 uses one scale per "
            "output channel, so drop group_size or set activations=None"
        )
    if group_size not in ("auto", None) and (not is_int(group_size) or group_size <= 0):
        raise ValueError(f"group_size={group_size!r} must be a positive int (e.g. 32), None (per channel) or 'auto'")


def quantize_model(
    model: nn.Module,
    weights: str | None = "int8",
    activations: str | None = "int8",
    method: str = "rtn",
    calibration=None,
    group_size: int | None | str = "auto",
    alpha: float = 0.5,
    threshold: float = 6.0,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Return a quantized copy of ``model`` (see the table in the module docstring).

    weights: "int8", "int4" (or any "int2".."int8" weight-only), None for the fold only.
    calibration: token ids [B, T] (or a list of batches) for SmoothQuant and static
    activation scales. group_size (weight-only): "auto" gives 32 below 8 bits and one
    scale per output channel for int8; None is per channel; an int is per group and
    must divide every quantized layer's in_features. alpha: SmoothQuant migration
    strength. threshold: LLM.int8() outlier threshold. skip: Linear names to leave float.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module (a minillm GPT), got {type(model).__name__}")
    _check_args(weights, activations, method, calibration, group_size)
    if group_size == "auto":
        group_size = None if weights in ("int8", None) else 32
    new = smooth_model(model, calibration, alpha) if method == "smoothquant" else copy.deepcopy(model)
    if weights is None:
        return new
    stats = collect_act_absmax(new, calibration) if activations == "int8_static" else {}
    for name, parent, attr, lin in linear_sites(new, skip):
        w, b = lin.weight.detach(), None if lin.bias is None else lin.bias.detach()
        if group_size is not None and lin.in_features % group_size:
            raise ValueError(f"group_size={group_size} does not divide {name}.in_features={lin.in_features}; use e.g. 32")
        if method == "llm_int8":
            q = LLMInt8Linear.from_float(w, b, threshold)
        elif activations == "int8":
            q = Int8Linear.from_float(w, b)
        elif activations == "int8_static":
            q = Int8Linear.from_float(w, b, "static", calibration=stats[name])
        else:
            q = WeightOnlyLinear.from_float(w, b, WEIGHT_BITS[weights], group_size)
        setattr(parent, attr, q)
    return new


# --------------------------------------------------------------------------- size


def _format_bits(mod: nn.Module) -> float | None:
    """Bits a packed file format needs for this layer's weight, scales included (b + 32/g)."""
    if isinstance(mod, Int8WeightLinear):
        return mod.format_bits
    if isinstance(mod, WeightOnlyLinear):
        return mod.bits * mod.in_features * mod.out_features + 32 * mod.scale.numel()
    return None


def _linear_weight_bytes(mod: nn.Module) -> tuple[int, int] | None:
    """(stored bytes of the weight incl. scales, float32 bytes of the same weight) for linear-like layers."""
    if isinstance(mod, Int8WeightLinear):
        stored = mod.weight_nbytes
    elif isinstance(mod, WeightOnlyLinear):
        stored = mod.q_weight.numel() * mod.q_weight.element_size() + mod.scale.numel() * 4
    elif isinstance(getattr(mod, "weight", None), Tensor) and hasattr(mod, "in_features") and hasattr(mod, "out_features"):
        stored = mod.weight.numel() * mod.weight.element_size()
    else:
        return None
    return stored, 4 * mod.in_features * mod.out_features


def size_report(model: nn.Module) -> dict:
    """Bytes of every stored tensor, and totals.

    Returns ``{"tensors": {name: bytes}, "total_bytes", "linear_weight_bytes",
    "float32_linear_weight_bytes", "linear_weight_ratio", "linear_bits_per_weight"}``.
    ``linear_bits_per_weight`` is what a packed file format needs per weight, scales
    included (``bits + 32/group_size``; 32 for float32): equal to 32 x the stored
    ratio for int8 and int4, smaller for 2/3/5/6/7-bit weights, which sit one per
    byte in memory. Tensors shared by two
    modules (a tied output layer) count once. The linear totals cover the weights
    (with their scales) of the layers :func:`quantize_model` replaces, not biases,
    embeddings or a tied output layer, so they compare like with like.
    Divide by :data:`minillm.units.GB` for GB (the course uses GB = 1e9 bytes).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    tensors: dict[str, int] = {}
    seen: set[int] = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        tensors[name] = t.numel() * t.element_size()
    shared = {id(p) for m in model.modules() if not isinstance(m, Linear) for p in m.parameters(recurse=False)}
    stored = full = bits = 0
    for mod in model.modules():
        if isinstance(mod, Linear) and id(mod.weight) in shared:
            continue  # tied to the embedding: counted there
        sizes = _linear_weight_bytes(mod)
        if sizes is not None:
            stored, full = stored + sizes[0], full + sizes[1]
            fmt = _format_bits(mod)
            bits += 8 * sizes[0] if fmt is None else fmt
    return {
        "tensors": tensors,
        "total_bytes": sum(tensors.values()),
        "linear_weight_bytes": stored,
        "float32_linear_weight_bytes": full,
        "linear_weight_ratio": stored / full if full else math.nan,
        "linear_bits_per_weight": bits / (full / 4) if full else math.nan,
    }


# --------------------------------------------------------------------------- quality


@torch.no_grad()
def quality_table(
    model: nn.Module,
    val_ids: Tensor,
    configs,
    accuracy_fn: Callable[[nn.Module], float] | None = None,
    calibration=None,
    max_batches: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """Validation loss (and optionally accuracy) of ``model`` under each quantization config.

    configs: {name: quantize_model kwargs} or a list of dicts with a "name" key; an
    empty dict or None means the float model. accuracy_fn(model) -> float, e.g. the
    fact-recall accuracy. calibration defaults to the first 8 blocks of val_ids
    (pass training data to keep calibration and evaluation apart).
    ``progress`` shows a tqdm bar over the configurations.
    Returns one row per config: name, val_loss, rel_loss_change (vs float32),
    linear_weight_ratio, bits_per_weight (packed format, see :func:`size_report`),
    total_bytes and accuracy (None without accuracy_fn);
    the float32 baseline comes first.
    """
    from tqdm.auto import tqdm

    if isinstance(configs, dict):
        items = list(configs.items())
    else:
        items = [(c["name"], {k: v for k, v in c.items() if k != "name"}) for c in configs]
    if calibration is None:
        T = model.config.block_size
        n = min(8, (val_ids.numel() - 1) // T)
        calibration = val_ids[: n * T].view(n, T).long()
    rows = []
    base = None
    for name, kwargs in tqdm([("float32", None)] + items, desc="quantize and evaluate", leave=False, disable=not progress):
        if kwargs:
            kwargs = dict(kwargs)
            if kwargs.get("method") == "smoothquant" or kwargs.get("activations") == "int8_static":
                kwargs.setdefault("calibration", calibration)
            m = quantize_model(model, **kwargs)
        else:
            m = model
        loss = evaluate_loss(m, val_ids, n_batches=max_batches)
        base = loss if base is None else base
        size = size_report(m)
        rows.append(
            {
                "name": name,
                "val_loss": loss,
                "rel_loss_change": (loss - base) / base,
                "linear_weight_ratio": size["linear_weight_ratio"],
                "bits_per_weight": size["linear_bits_per_weight"],
                "total_bytes": size["total_bytes"],
                "accuracy": accuracy_fn(m) if accuracy_fn is not None else None,
            }
        )
    return rows
