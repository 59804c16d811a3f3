"""The lesson-04 widget: quant_view's data, its plot, and the ipywidgets controls swept over their range."""

import math

import pytest
import torch

from minillm.compress.quantize import fake_quant_weights, plot_quant_view, quant_view, quant_widget, quantize
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson04


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()


@pytest.fixture(scope="module")
def batch():
    return torch.randint(0, 32, (2, 33), generator=torch.Generator().manual_seed(1))


def test_fake_quant_weights_copies_and_matches_quantize(gpt):
    before = gpt.h[0].mlp.c_fc.weight.detach().clone()
    q, qts = fake_quant_weights(gpt, 4, "affine", "group", 32)
    assert torch.equal(gpt.h[0].mlp.c_fc.weight, before)  # original untouched
    assert len(qts) == 8 and "lm_head" not in qts  # 4 Linears per block; the tied head stays float
    expect = quantize(before, 4, "affine", "group", 0, 32).dequantize()
    assert torch.equal(q.h[0].mlp.c_fc.weight, expect)  # exact: the same quantize-dequantize
    assert q.lm_head.weight is q.wte.weight


def test_quant_view_data(gpt, batch):
    with torch.no_grad():
        float_loss = float(gpt(batch[:, :-1], batch[:, 1:])[1])
    v8 = quant_view(gpt, batch, 8, "channel")
    assert v8["float_loss"] == pytest.approx(float_loss, rel=1e-6)  # same forward, same batch
    # int8 per channel on a random-init GPT: the loss moves by far less than 1%
    assert abs(v8["rel_change"]) < 0.01 and v8["agreement"] > 0.9
    assert v8["error"].shape == (256 * 64,) and float(v8["error"].abs().max()) <= v8["step"] / 2 + 1e-7
    # 8 bits + a float32 scale per output row, averaged over all quantized weights
    n_rows = 2 * (192 + 64 + 256 + 64)
    n_w = 2 * 64 * (192 + 64 + 256) + 2 * 256 * 64
    assert v8["bits_per_weight"] == pytest.approx(8 + 32 * n_rows / n_w)
    assert quant_view(gpt, batch, 4, "group", "symmetric")["bits_per_weight"] == pytest.approx(4 + 32 / 32)
    assert quant_view(gpt, batch, 4, "group", "affine")["bits_per_weight"] == pytest.approx(4 + 40 / 32)  # + zero point


def test_quant_view_error_follows_the_six_db_rule(gpt, batch):
    sqnr = {b: quant_view(gpt, batch, b, "channel")["sqnr_db"] for b in range(2, 9)}
    assert all(sqnr[b + 1] > sqnr[b] for b in range(2, 8))
    # Uniform rounding noise: each bit halves the step, +20·log10(2) = 6.02 dB (Bennett 1948).
    # At 6..8 bits that model holds within ~1 dB per two bits on Gaussian-like weights.
    assert sqnr[8] - sqnr[6] == pytest.approx(2 * 6.02, abs=1.0)
    t, c, g = (quant_view(gpt, batch, 4, gr)["sqnr_db"] for gr in ("tensor", "channel", "group"))
    assert t < c < g  # finer scales, smaller error


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(bits=9), "bits=9"),
        (dict(granularity="row"), "granularity='row'"),
        (dict(scheme="log"), "scheme='log'"),
        (dict(layer="h.0.ln_1"), "layer='h.0.ln_1'"),
        (dict(batch=torch.zeros(2, 9)), "batch must be"),
        (dict(batch=torch.zeros(9, dtype=torch.long)), "batch must be"),
    ],
)
def test_quant_view_bad_input(gpt, batch, kwargs, word):
    kwargs = {"batch": batch, **kwargs}
    with pytest.raises(ValueError) as info:
        quant_view(gpt, **kwargs)
    assert word in str(info.value)


def test_plot_quant_view_draws_the_view(gpt, batch):
    view = quant_view(gpt, batch, 3, "tensor", "affine")
    fig = plot_quant_view(view)
    hist, bars = fig.axes
    assert f"SQNR {view['sqnr_db']:.1f} dB" in hist.get_title() and "h.0.mlp.c_fc.weight" in hist.get_xlabel()
    # the histogram counts every error value once (60 bins, exact counts)
    assert len(hist.patches) == 60 and sum(p.get_height() for p in hist.patches) == view["error"].numel()
    # the bars are the float and quantized losses, labelled
    assert [t.get_text() for t in bars.get_xticklabels()] == ["float32", "int3"]
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx([view["float_loss"], view["loss"]], rel=1e-6)
    assert f"{view['agreement']:.1%}" in bars.get_title() and "bits per weight" in bars.get_title()


def test_widget_descriptions_are_not_cut_off(gpt, batch):
    from ipywidgets import Widget

    try:
        w = quant_widget(gpt, batch, show=False)
        for control in w.children[:3]:  # the default 80-px description width cuts "granularity" off
            assert control.style.description_width == "initial", control.description
    finally:
        Widget.close_all()


def test_widget_controls_sweep_their_range(gpt, batch):
    from ipywidgets import Widget

    try:
        w = quant_widget(gpt, batch, show=False)
        bits, granularity, scheme = w.children[:3]
        assert (bits.min, bits.max) == (2, 8) and w.result["bits"] == 4  # ran once on creation
        losses = {}
        for b in range(bits.min, bits.max + 1):
            bits.value = b  # observe handlers fire synchronously: the view is recomputed
            assert w.kwargs["bits"] == b and w.result["bits"] == b
            losses[b] = w.result["loss"]
        assert all(math.isfinite(v) for v in losses.values())
        assert abs(losses[8] - w.result["float_loss"]) < abs(losses[2] - w.result["float_loss"])
        for gr in granularity.options:
            granularity.value = gr
            for sc in scheme.options:
                scheme.value = sc
                assert (w.result["granularity"], w.result["scheme"]) == (gr, sc)
        w.update()  # a manual refresh gives the same data
        assert w.result["label"] == f"int8 {scheme.value}, per {granularity.value}" + (
            ", g=32" if granularity.value == "group" else ""
        )
        shown = quant_widget(gpt, batch, show=True)  # with plotting, outside a notebook: must not fail
        assert shown.result["bits"] == 4
    finally:
        Widget.close_all()
