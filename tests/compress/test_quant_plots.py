"""Lesson 04's figures: what they draw (lesson 04)."""

import pytest
import torch

from minillm.compress.quant_plots import (
    plot_channel_ranges,
    plot_quality,
    plot_row_ranges,
    plot_sqnr_vs_bits,
    sqnr_by_bits,
)

pytestmark = pytest.mark.lesson04


@pytest.fixture
def w():
    return torch.randn(64, 128, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 1.0, 64)[:, None]


def test_sqnr_by_bits_follows_the_6_db_rule_and_granularity(w):
    data = sqnr_by_bits(w)
    assert data["bits"] == list(range(2, 9))
    tensor, channel, group = (data["sqnr_db"][k] for k in ("per tensor", "per channel", "per group 32"))
    for b in range(len(data["bits"])):
        assert tensor[b] <= channel[b] + 0.5 <= group[b] + 1.0  # finer scales: no worse (0.5 dB slack for rounding luck)
    # from 4 to 8 bits, each bit adds 6.02 dB; 1 dB per bit of slack for a 8192-value matrix
    per_bit = (channel[-1] - channel[2]) / 4
    assert 5.0 < per_bit < 7.0
    assert data["rule"][-1] == pytest.approx(channel[-1])


def test_plot_sqnr_vs_bits_draws_each_layout(w):
    data = sqnr_by_bits(w, bits=(4, 8))
    fig = plot_sqnr_vs_bits(data)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "bits" and ax.get_ylabel() == "SQNR (dB)"
    lines = {l.get_label(): l for l in ax.get_lines()}
    assert set(lines) == {"per tensor", "per channel", "per group 32", "6.02 dB per bit"}
    assert list(lines["per channel"].get_ydata()) == pytest.approx(data["sqnr_db"]["per channel"])


def test_plot_row_ranges_draws_each_row_absmax(w):
    fig = plot_row_ranges(w, "rows")
    (ax,) = fig.axes
    line, hline = ax.get_lines()
    assert list(line.get_ydata()) == pytest.approx(w.abs().amax(1).tolist())
    assert hline.get_ydata()[0] == pytest.approx(float(w.abs().max()))
    assert ax.get_title() == "rows" and ax.get_xlabel() == "output channel (row)"


def test_plot_channel_ranges_bars_and_marks(w):
    act = torch.rand(128, generator=torch.Generator().manual_seed(1))
    fig = plot_channel_ranges(act, w, "ranges", mark=(3, 7))
    ax1, ax2 = fig.axes
    assert [p.get_height() for p in ax1.patches] == pytest.approx(act.tolist())
    assert [p.get_height() for p in ax2.patches] == pytest.approx(w.abs().amax(0).tolist())
    assert [l.get_xdata()[0] for l in ax1.get_lines()] == [3, 7] and fig._suptitle.get_text() == "ranges"


def test_plot_quality_draws_loss_and_accuracy():
    rows = [
        {"name": "float32", "bits_per_weight": 32.0, "val_loss": 1.0, "accuracy": 0.6},
        {"name": "W2", "bits_per_weight": 3.0, "val_loss": 2.5, "accuracy": 0.2},
    ]
    fig = plot_quality(rows)
    ax1, ax2 = fig.axes
    assert [p.get_width() for p in ax1.patches] == [1.0, 2.5]
    assert [p.get_width() for p in ax2.patches] == [0.6, 0.2]
    assert [t.get_text() for t in ax1.get_yticklabels()] == ["float32 (32.00 bits)", "W2 (3.00 bits)"]
    assert ax1.get_lines()[0].get_xdata()[0] == 1.0 and ax2.get_lines()[0].get_xdata()[0] == 0.2
