"""Lesson 04's figures: weight and activation ranges, SQNR against bits, the quality table.

Data functions return plain tensors and dicts; plotting functions draw them on a
:class:`matplotlib.figure.Figure` built without pyplot (no global state, nothing to
close), as :mod:`minillm.hardware.plots` does. The error histograms and the widget's
figure live next to their data: :func:`minillm.compress.tour.plot_error_histograms`
and :func:`minillm.compress.quant_widget.plot_quant_view`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from minillm.compress.quant_core import quant_error

__all__ = ["sqnr_by_bits", "plot_sqnr_vs_bits", "plot_row_ranges", "plot_channel_ranges", "plot_quality"]

#: (label, granularity, group_size) of the three layouts lesson 04 compares.
LAYOUTS = (("per tensor", "tensor", None), ("per channel", "channel", None), ("per group 32", "group", 32))


def _figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def sqnr_by_bits(w: Tensor, bits: Sequence[int] = tuple(range(2, 9)), layouts=LAYOUTS) -> dict:
    """SQNR (dB) of symmetric quantization of w [out, in] for each bit width and layout.

    Returns {"bits": [b, ...], "sqnr_db": {layout label: [dB per bit width]}, "rule": the
    6.02 dB-per-bit line through the per-channel int8 point, [dB per bit width]}.
    """
    bits = list(bits)
    sqnr = {
        label: [quant_error(w, b, "symmetric", gran, 0, g)["sqnr_db"] for b in bits] for label, gran, g in layouts
    }
    ref = quant_error(w, 8, granularity="channel")["sqnr_db"]
    return {"bits": bits, "sqnr_db": sqnr, "rule": [ref - 6.02 * (8 - b) for b in bits]}


def plot_sqnr_vs_bits(data: dict):
    """One line per layout from :func:`sqnr_by_bits`, and the 6 dB-per-bit rule dotted."""
    fig = _figure((6, 3.2))
    ax = fig.subplots()
    for label, values in data["sqnr_db"].items():
        ax.plot(data["bits"], values, "o-", label=label)
    ax.plot(data["bits"], data["rule"], ":", color="gray", label="6.02 dB per bit")
    ax.set_xlabel("bits")
    ax.set_ylabel("SQNR (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_row_ranges(w: Tensor, title: str):
    """max |w| of every output row of w [out, in], with the per-tensor absmax every row would share."""
    absmax = w.detach().abs().amax(dim=1)
    fig = _figure((8, 2.8))
    ax = fig.subplots()
    ax.plot(absmax.numpy(), lw=0.8)
    ax.axhline(float(absmax.max()), ls="--", color="gray", lw=1)
    ax.annotate("per-tensor absmax: the step every row gets", (0, float(absmax.max())), va="bottom", fontsize=8)
    ax.set_xlabel("output channel (row)")
    ax.set_ylabel("max |w| of the row")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_channel_ranges(act_absmax: Tensor, weight: Tensor, title: str, mark: Sequence[int] = ()):
    """Two bar charts over input channels j: max |x_j| [K] of the activations and max_i |W_ij| of weight [N, K].

    ``mark`` draws a dotted red line at each listed channel (e.g. injected outliers).
    """
    fig = _figure((10, 2.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(range(act_absmax.numel()), act_absmax.numpy(), width=1.0)
    ax1.set_title("activations: max |x_j| over calibration tokens", fontsize=9)
    ax2.bar(range(weight.shape[1]), weight.detach().abs().amax(dim=0).numpy(), width=1.0, color="tab:green")
    ax2.set_title("weights: max |W_ij| over output rows i", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("input channel j")
        for j in mark:
            ax.axvline(j, color="tab:red", lw=0.8, ls=":")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_quality(rows: list[dict], chance: float = 0.2):
    """Validation loss and fact-recall accuracy per configuration, from :func:`quality_table` rows
    (with an accuracy); the float32 loss and the chance accuracy dotted."""
    labels = [f"{r['name']} ({r['bits_per_weight']:.2f} bits)" for r in rows]
    fig = _figure((10, 3.4))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(labels, [r["val_loss"] for r in rows], color="tab:blue")
    ax1.axvline(rows[0]["val_loss"], ls=":", color="gray")
    ax1.set_xlabel("validation loss (float32 dotted)")
    ax2.barh(labels, [r["accuracy"] for r in rows], color="tab:orange")
    ax2.axvline(chance, ls=":", color="gray")
    ax2.set_xlabel("fact-recall accuracy (chance dotted)")
    ax1.invert_yaxis()
    fig.tight_layout()
    return fig
