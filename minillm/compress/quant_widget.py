"""The lesson-04 widget: bits, granularity and scheme against the error and the model's quality.

:func:`quant_view` is a pure function: it fake-quantizes every Linear weight of a
model with one number format, then returns the data a learner looks at, the
rounding error of one weight matrix and the model's loss on a fixed batch next to
the float model's. :func:`plot_quant_view` draws that data, and
:func:`quant_widget` wires both to ipywidgets controls, so tests can drive the
exact widget of the lesson without a browser.

Weights are quantized and immediately dequantized ("fake quantization"): the
model then computes with exactly the values a real integer format would hold,
which is all that matters for quality. Activations stay float here; the lesson
treats them separately. Each callback costs one ``deepcopy``, one quantization of
every weight and two forward passes over the batch, so keep the batch small
(two sequences of 128 tokens take about 0.1 s on one core).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from minillm.compress.model_quant import linear_sites
from minillm.compress.quant_core import GRANULARITIES, SCHEMES, check_bits, quantize
from minillm.validate import check_choice

__all__ = ["fake_quant_weights", "quant_view", "plot_quant_view", "quant_widget"]


def _layout(granularity: str, group_size: int) -> tuple[str, int | None]:
    check_choice("granularity", granularity, GRANULARITIES)
    return granularity, (group_size if granularity == "group" else None)


@torch.no_grad()
def fake_quant_weights(
    model: nn.Module, bits: int = 8, scheme: str = "symmetric", granularity: str = "channel", group_size: int = 32
) -> tuple[nn.Module, dict[str, "object"]]:
    """A copy of ``model`` whose Linear weights hold their quantize-dequantize values; the original is untouched.

    Every :class:`minillm.model.Linear` except an output layer tied to the
    embedding is replaced in place (in the copy) by ``quantize(W, ...).dequantize()``,
    one scale per output row for ``"channel"`` and per ``group_size`` inputs of a
    row for ``"group"``. Returns (the copy, {layer name: its QTensor}).
    """
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    granularity, g = _layout(granularity, group_size)
    new = copy.deepcopy(model)
    qts = {}
    for name, _, _, lin in linear_sites(new):
        qt = quantize(lin.weight.detach(), bits, scheme, granularity, axis=0, group_size=g)
        lin.weight.copy_(qt.dequantize())
        qts[name] = qt
    if not qts:
        raise ValueError("model has no Linear layers to quantize; pass a minillm GPT")
    return new, qts


@torch.no_grad()
def quant_view(
    model: nn.Module,
    batch: Tensor,
    bits: int = 8,
    granularity: str = "channel",
    scheme: str = "symmetric",
    group_size: int = 32,
    layer: str = "h.0.mlp.c_fc",
) -> dict:
    """What one weight format does to a model: the widget's data.

    batch: token ids [B, T + 1] (inputs ``batch[:, :-1]``, next-token targets
    ``batch[:, 1:]``), e.g. a few fixed validation windows. Every Linear weight is
    fake-quantized (:func:`fake_quant_weights`); ``layer`` names the matrix whose
    error is returned for a histogram.

    Returns a dict: the settings (bits, granularity, scheme, group_size, label);
    ``error`` (dequantized - original of ``layer``, flat float32), ``sqnr_db`` and
    ``step`` (its largest scale); ``bits_per_weight`` over all quantized weights
    (``bits`` + 32-bit scales, + 8-bit zero points for affine, per scale's share
    of weights); ``float_loss``, ``loss`` and ``rel_change`` on the batch; and
    ``agreement``, the fraction of positions where the quantized model's most
    likely next token equals the float model's.
    """
    if not isinstance(batch, Tensor) or batch.dim() != 2 or batch.is_floating_point() or batch.shape[1] < 2:
        raise ValueError(
            f"batch must be token ids [B, T + 1] with T >= 1, got {getattr(batch, 'shape', type(batch).__name__)}; "
            "e.g. val_ids[:2 * 129].view(2, 129)"
        )
    qmodel, qts = fake_quant_weights(model, bits, scheme, granularity, group_size)
    if layer not in qts:
        raise ValueError(f"layer={layer!r} is not a quantized Linear; use one of {', '.join(list(qts)[:4])}, ...")
    x, y = batch[:, :-1].long(), batch[:, 1:].long()
    was_training = model.training
    model.eval()
    try:
        logits_f, loss_f = model(x, y)
    finally:
        model.train(was_training)
    qmodel.eval()
    logits_q, loss_q = qmodel(x, y)

    w = model.get_submodule(layer).weight.detach().float()
    qt = qts[layer]
    err = (qt.dequantize() - w).flatten()
    noise = float((err**2).sum())
    sqnr = math.inf if noise == 0 else 10.0 * math.log10(float((w**2).sum()) / noise)
    n_weights = sum(q.q.numel() for q in qts.values())
    bits_total = sum(8 * q.nbytes for q in qts.values())  # QTensor.nbytes: packed values + scales (+ zero points)
    g = f", g={group_size}" if granularity == "group" else ""
    return {
        "bits": bits,
        "granularity": granularity,
        "scheme": scheme,
        "group_size": group_size if granularity == "group" else None,
        "label": f"int{bits} {scheme}, per {granularity}{g}",
        "layer": layer,
        "error": err,
        "sqnr_db": sqnr,
        "step": float(qt.scale.max()),
        "bits_per_weight": bits_total / n_weights,
        "float_loss": float(loss_f),
        "loss": float(loss_q),
        "rel_change": float(loss_q) / float(loss_f) - 1.0,
        "agreement": float((logits_q.argmax(-1) == logits_f.argmax(-1)).float().mean()),
    }


def plot_quant_view(view: dict):
    """Two panels from :func:`quant_view`'s data: the error histogram and the loss against float32.

    Returns a matplotlib Figure (built without pyplot: no global state, no close() needed).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax1.hist(view["error"].numpy(), bins=60, color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_xlabel(f"dequantized - original ({view['layer']}.weight)")
    ax1.set_ylabel("count")
    ax1.set_title(f"{view['label']}: SQNR {view['sqnr_db']:.1f} dB", fontsize=10)
    ax2.bar(["float32", f"int{view['bits']}"], [view["float_loss"], view["loss"]], color=["gray", "tab:orange"])
    ax2.set_ylabel("loss on the batch (nats/token)")
    ax2.set_title(
        f"loss {view['rel_change']:+.1%}, same top-1 token {view['agreement']:.1%}\n"
        f"{view['bits_per_weight']:.2f} bits per weight",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def quant_widget(model: nn.Module, batch: Tensor, layer: str = "h.0.mlp.c_fc", show: bool = True):
    """An ``ipywidgets.interactive`` over :func:`quant_view`: bits 2..8, granularity, scheme.

    Each change re-runs :func:`quant_view` (its dict is the widget's ``.result``)
    and, with ``show``, displays :func:`plot_quant_view` and a one-line summary.
    Group size is fixed at 32, the course's int4 default.
    """
    from ipywidgets import Dropdown, IntSlider, interactive

    def update(bits: int = 4, granularity: str = "channel", scheme: str = "symmetric") -> dict:
        view = quant_view(model, batch, bits, granularity, scheme, 32, layer)
        if show:
            from IPython.display import display

            display(plot_quant_view(view))
            print(
                f"{view['label']}: loss {view['float_loss']:.3f} -> {view['loss']:.3f} ({view['rel_change']:+.1%}), "
                f"top-1 agreement {view['agreement']:.1%}, {view['bits_per_weight']:.2f} bits per weight"
            )
        return view

    style = {"description_width": "initial"}  # the default width cuts "granularity" off in JupyterLab
    return interactive(
        update,
        bits=IntSlider(value=4, min=2, max=8, step=1, description="bits", style=style),
        granularity=Dropdown(options=list(GRANULARITIES), value="channel", description="granularity", style=style),
        scheme=Dropdown(options=list(SCHEMES), value="symmetric", description="scheme", style=style),
    )
