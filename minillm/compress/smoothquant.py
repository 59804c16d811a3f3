"""SmoothQuant and activation outliers (lesson 04).

Large language models have a few hidden *features* whose activations are much
larger than the rest (Dettmers et al. 2022 saw them emerge suddenly around 6.7B
parameters). Per-token int8 then wastes its 255 levels on those few channels.
SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models", Eq. 3-4) moves the difficulty from
activations to weights with an exactly equivalent rescaling:

    Y = X W^T = (X diag(s)^-1) (W diag(s))^T,    s_j = max|X_j|^α / max|W_j|^(1-α)

and folds ``1/s`` into the LayerNorm that produces X, so it costs nothing at run time.

The tiny course models have *no* natural outliers, so :func:`inject_outliers`
creates some for teaching, without changing what the model computes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from minillm.compress.quant_core import check_float_tensor
from minillm.validate import is_int, is_number
from minillm.model import Linear

__all__ = ["smoothquant_scales", "collect_act_absmax", "smooth_pairs", "smooth_model", "inject_outliers"]

# minillm clamps both statistics at 1e-5, so that a dead channel or a zero weight
# column gives neither a zero nor an infinite factor, and the result as well. The
# authors' code (mit-han-lab/smoothquant, smooth.py) clamps only the weight statistic
# and the result: a dead channel gets s = 1e-5 there, (1e-5)^α / w^(1-α) here.
MIN_STAT = 1e-5


def smoothquant_scales(act_absmax: Tensor, weight_absmax: Tensor, alpha: float = 0.5) -> Tensor:
    """Per-input-channel smoothing factors ``s_j = act_absmax_j**alpha / weight_absmax_j**(1 - alpha)``.

    act_absmax: [K], max |X[:, j]| over calibration tokens; weight_absmax: [K],
    max |W[:, j]| over output rows (W is [out, K]). Returns s: [K] float32.
    alpha=0.5 splits the difficulty evenly and is the paper's choice for most
    models; alpha -> 1 pushes everything into the weights. Both statistics are clamped at
    1e-5 before the division, and s after it (see ``MIN_STAT``).
    """
    check_float_tensor(act_absmax, "act_absmax")
    check_float_tensor(weight_absmax, "weight_absmax")
    if act_absmax.shape != weight_absmax.shape or act_absmax.dim() != 1:
        raise ValueError(
            f"act_absmax {tuple(act_absmax.shape)} and weight_absmax {tuple(weight_absmax.shape)} must both be [K], "
            "one value per input channel"
        )
    if bool((act_absmax < 0).any()) or bool((weight_absmax < 0).any()):
        raise ValueError("act_absmax and weight_absmax are maxima of |values| and must be >= 0; take .abs() first")
    if not is_number(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} must be a number in [0, 1]; 0.5 is the paper's default")
    a = act_absmax.float().clamp(min=MIN_STAT)
    w = weight_absmax.float().clamp(min=MIN_STAT)
    return (a.pow(alpha) / w.pow(1.0 - alpha)).clamp(min=MIN_STAT)


def _batches(calibration) -> list[Tensor]:
    if isinstance(calibration, Tensor):
        return [calibration]
    if isinstance(calibration, Iterable):
        out = list(calibration)
        if out and all(isinstance(b, Tensor) for b in out):
            return out
    raise ValueError(
        "calibration must be a LongTensor of token ids [B, T] (or a list of them), "
        f"got {type(calibration).__name__}; e.g. calibration=train_ids[:8 * T].view(8, T)"
    )


@torch.no_grad()
def collect_act_absmax(model: nn.Module, calibration) -> dict[str, Tensor]:
    """Run calibration batches and record max |input| per channel of every Linear.

    calibration: token ids [B, T] (or a list of such batches), passed as ``model(ids)``.
    Returns {module name: absmax [in_features]} for each :class:`minillm.model.Linear`.
    """
    stats: dict[str, Tensor] = {}
    hooks = []

    def make_hook(name: str):
        def hook(_module, inputs):
            x = inputs[0].detach()
            m = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float()
            stats[name] = m if name not in stats else torch.maximum(stats[name], m)

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, Linear):
            hooks.append(mod.register_forward_pre_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        for batch in _batches(calibration):
            model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return stats


def smooth_pairs(model: nn.Module) -> list[tuple[str, nn.Module, str, Linear]]:
    """The (LayerNorm, following Linear) pairs a smoothing factor can be folded into.

    In a minillm pre-norm Block these are ``ln_1 -> attn.c_attn`` and ``ln_2 -> mlp.c_fc``.
    Returns [(linear name, layernorm, "ln_1"/"ln_2", linear)]. The two ``c_proj``
    layers follow attention and GELU, which no per-channel scale can pass through
    unchanged, so they are not smoothed (their activations are per-token int8 as usual).
    """
    pairs = []
    for name, mod in model.named_modules():
        if hasattr(mod, "ln_1") and hasattr(mod, "attn") and hasattr(mod, "ln_2") and hasattr(mod, "mlp"):
            prefix = f"{name}." if name else ""
            pairs.append((f"{prefix}attn.c_attn", mod.ln_1, "ln_1", mod.attn.c_attn))
            pairs.append((f"{prefix}mlp.c_fc", mod.ln_2, "ln_2", mod.mlp.c_fc))
    return pairs


@torch.no_grad()
def smooth_model(
    model: nn.Module, calibration=None, alpha: float = 0.5, act_absmax: dict[str, Tensor] | None = None
) -> nn.Module:
    """A copy of ``model`` with SmoothQuant folded in; the original is left untouched.

    For each LayerNorm -> Linear pair: ``ln.weight /= s``, ``ln.bias /= s`` and
    ``linear.weight[:, j] *= s_j``. In exact arithmetic the model computes the same
    function; the Linear's input now has flatter channels. Pass ``calibration``
    (token ids) or precomputed ``act_absmax`` from :func:`collect_act_absmax`.
    """
    if act_absmax is None:
        if calibration is None:
            raise ValueError("smooth_model needs calibration=<token ids [B, T]> (or act_absmax=...) to measure activations")
        act_absmax = collect_act_absmax(model, calibration)
    new = copy.deepcopy(model)
    for name, ln, _, lin in smooth_pairs(new):
        if name not in act_absmax:
            raise ValueError(f"act_absmax has no entry for {name!r}; collect it with collect_act_absmax(model, ...)")
        s = smoothquant_scales(act_absmax[name], lin.weight.abs().amax(dim=0), alpha)
        ln.weight.div_(s)
        if ln.bias is not None:
            ln.bias.div_(s)
        lin.weight.mul_(s)  # [out, in] * [in]: scales input column j by s_j
    return new


@torch.no_grad()
def inject_outliers(
    model: nn.Module, n_channels: int = 2, factor: float = 20.0, channels: list[int] | None = None, seed: int = 0
) -> nn.Module:
    """A copy of ``model`` whose Linear inputs have outlier channels, computing the same function.

    Multiplies LayerNorm weight and bias of the chosen hidden channels by ``factor``
    and divides the matching input columns of the following Linear by it (the
    reverse of a SmoothQuant fold), in every Block. The logits stay the same up to
    float rounding, but ``ln_1``/``ln_2`` outputs now have a few channels ``factor``
    times larger than the rest: the pattern Dettmers et al. (2022) found in real LLMs
    from about 6.7B parameters, concentrated in the same few hidden dimensions in
    every layer. Tiny models have no such outliers; this lets the lesson show them.
    ``channels`` defaults to ``n_channels`` picked with ``seed``; the copy records
    them in ``.outlier_channels``.
    """
    if not is_number(factor) or not factor > 0:
        raise ValueError(f"factor={factor!r} must be a positive number, e.g. 20.0")
    pairs = smooth_pairs(model)
    if not pairs:
        raise ValueError("model has no LayerNorm -> Linear pairs (minillm Blocks); pass a minillm GPT")
    dim = pairs[0][3].in_features
    if channels is None:
        if not is_int(n_channels) or not 0 < n_channels <= dim:
            raise ValueError(f"n_channels={n_channels!r} must be an int in 1..{dim}")
        g = torch.Generator().manual_seed(seed)
        channels = sorted(torch.randperm(dim, generator=g)[:n_channels].tolist())
    elif not channels or any(not 0 <= c < dim for c in channels):
        raise ValueError(f"channels={channels!r} must be a non-empty list of hidden indices in 0..{dim - 1}")
    idx = torch.tensor(channels)
    new = copy.deepcopy(model)
    for _, ln, _, lin in smooth_pairs(new):
        ln.weight[idx] *= factor
        if ln.bias is not None:
            ln.bias[idx] *= factor
        lin.weight[:, idx] /= factor
    new.outlier_channels = list(channels)
    return new
