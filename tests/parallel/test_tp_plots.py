"""Lesson 12's pictures and widget: what they draw, and the widget driven over its controls."""

import numpy as np
import pytest

from minillm.parallel.tp_costs import activation_memory_bytes
from minillm.parallel.tp_plots import (
    TP_CLUSTERS,
    plot_activation_memory,
    plot_tp_view,
    plot_weight_ownership,
    tp_view,
    tp_widget,
    weight_owners,
)

pytestmark = pytest.mark.lesson12


def test_weight_owners_keep_whole_heads():
    own = weight_owners(n_embd=8, n_head=4, tp=2)  # head dim 2: heads 0, 1 on rank 0
    q = [0, 0, 0, 0, 1, 1, 1, 1]
    assert own["attn.c_attn"].tolist() == q * 3  # the same heads in Q, K and V
    assert own["attn.c_proj"].tolist() == q
    assert own["mlp.c_fc"].tolist() == [0] * 16 + [1] * 16
    with pytest.raises(ValueError, match="n_head=4 must divide by tp=3"):
        weight_owners(8, 4, 3)


def test_ownership_figure_draws_four_matrices_coloured_by_rank():
    fig = plot_weight_ownership(32, 4, 4)
    axes = fig.axes
    assert len(axes) == 4 and "c_attn [3C, C]" in axes[0].get_title()
    grid = axes[0].images[0].get_array()
    assert grid.shape == (96, 32) and sorted(np.unique(grid).tolist()) == [0, 1, 2, 3]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"rank {r}" for r in range(4)]


def test_activation_memory_bars_are_the_formula():
    ax = plot_activation_memory(2048, 1, 12288, 96, 96, tps=(1, 8)).axes[0]
    heights = [b.get_height() for b in ax.patches]
    assert len(heights) == 4 * 2
    assert heights[0] == pytest.approx(activation_memory_bytes(2048, 1, 12288, 96, 96, 1) / 1e9)
    assert heights[3] == pytest.approx(activation_memory_bytes(2048, 1, 12288, 96, 96, 8, True) / 1e9)  # TP + SP at 8
    assert ax.get_ylabel() == "activations per device (GB)"


def test_tp_view_shows_why_tp_stays_in_a_node():
    nvlink, ib = list(TP_CLUSTERS)
    shares = {c: [tp_view(t, 2048, 12288, c)["comm_share"] for t in (1, 2, 4, 8)] for c in TP_CLUSTERS}
    for c in TP_CLUSTERS:
        assert shares[c][0] == 0 and shares[c] == sorted(shares[c])  # grows with t
    assert shares[ib][3] > 0.5 > shares[nvlink][3] > 0.1
    v = tp_view(8, 2048, 12288, nvlink)
    assert v["weights_bytes"] == pytest.approx(12 * 12288**2 * 2 / 8)
    ax = plot_tp_view([tp_view(t, cluster=ib) for t in (1, 2)]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tp=1", "tp=2"]
    with pytest.raises(ValueError, match="cluster='laptop'"):
        tp_view(cluster="laptop")


def test_the_widget_responds_over_its_controls():
    from ipywidgets import Widget

    w = tp_widget()
    try:
        cluster, seq, hidden, sp = w.children[:4]
        for value in TP_CLUSTERS:
            cluster.value = value
        seq.value, hidden.value, sp.value = 8192, 1024, False
        assert w.result is None
    finally:
        Widget.close_all()


def test_fg_diagram_marks_the_communication_points():
    from minillm.parallel.tp_plots import plot_fg_diagram

    texts = [t.get_text() for t in plot_fg_diagram().axes[0].texts]
    assert texts.count("f") == 2 and texts.count("g") == 2
    sp = [t.get_text() for t in plot_fg_diagram(sequence_parallel=True).axes[0].texts]
    assert sp.count("all-gather\n(sequence)") == 2 and sp.count("reduce-\nscatter") == 2 and "f" not in sp


def test_tp_view_labels_stay_inside_the_axes():
    """The share printed above the tallest bar must not run into the title (it did at tp=1)."""
    ax = plot_tp_view([tp_view(t) for t in (1, 2, 4, 8)]).axes[0]
    tallest = max(b.get_y() + b.get_height() for b in ax.patches)
    assert ax.get_ylim()[1] >= 1.15 * tallest


def test_tp_clusters_links_are_the_datasheet_figures():
    """NVLink 4 on an H100 SXM: 900 GB/s both directions together, 450 GB/s each way (NVIDIA H100 datasheet);
    between DGX H100 nodes, one single-port ConnectX-7 per GPU at 400 Gb/s = 50 GB/s (DGX BasePOD reference
    architecture, docs.nvidia.com/dgx-basepod). Bits are not bytes: 400e9 / 8."""
    nvlink, ib = (TP_CLUSTERS[name]() for name in TP_CLUSTERS)
    assert nvlink.link_bw == 900e9 / 2
    assert ib.link_bw == 400e9 / 8
    assert nvlink.peak_flops == pytest.approx(989e12, rel=0.01)  # dense BF16, not the 2:4-sparse 1,979
