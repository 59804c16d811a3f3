"""Lesson 03's measurements and pictures on a tiny GPT: the right rows, what the figures draw, the widget."""

import numpy as np
import pytest
import torch

from minillm.compress.prune import sparsity_report
from minillm.compress.prune_study import (
    plot_masks,
    plot_sensitivity,
    plot_sparse_timing,
    plot_sweep,
    prune_widget,
    recover,
    sensitivity_scan,
    sparse_timing,
    sparsity_sweep,
)
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson03


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=48, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    g = torch.Generator().manual_seed(1)
    return model, torch.randint(0, 48, (20 * 32,), generator=g), torch.randint(0, 48, (2, 32), generator=g)


def test_sweep_has_a_row_per_method_and_sparsity_and_leaves_the_model(setup):
    model, val, calib = setup
    before = {n: p.clone() for n, p in model.state_dict().items()}
    rows = sparsity_sweep(model, val, calib, (0.5, 0.9))
    assert [(r["method"], r["sparsity"]) for r in rows] == [
        ("dense", 0.0), ("magnitude", 0.5), ("magnitude", 0.9), ("wanda", 0.5), ("wanda", 0.9), ("2:4", 0.5)]
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # pruned copies only
    ax = plot_sweep(rows).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["magnitude", "wanda", "2:4"]
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(rows[0]["val_loss"])  # every line starts at dense


def test_sensitivity_scan_and_its_plot(setup):
    model, val, _ = setup
    sens = sensitivity_scan(model, val, (0.5, 0.95))
    assert sens.shape == (2, 2) and np.isfinite(sens).all()
    ax = plot_sensitivity(sens, (0.5, 0.95), 4.0).axes[0]
    assert len(ax.patches) == 4 and ax.get_ylabel() == "loss increase (nats/token)"


def test_recover_ends_at_the_target_sparsity(setup):
    model, val, _ = setup
    tuned, losses = recover(model, val, s_final=0.6, steps=6, batch_size=2)
    assert len(losses) == 6 and sparsity_report(tuned)[-1]["sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_sparse_timing_rows_and_plot():
    rows = sparse_timing((0.5, 0.99), n=64, batch=4, rounds=1)
    assert [r["sparsity"] for r in rows] == [0.5, 0.99] and all(r["dense_s"] > 0 for r in rows)
    assert rows[1]["csr_bytes"] < rows[0]["csr_bytes"] < 2 * rows[0]["dense_bytes"]
    ax = plot_sparse_timing(rows).axes[0]
    assert [l.get_label() for l in ax.get_lines()][:2] == ["our CSR (tensor ops)", "torch.sparse CSR"]


def test_mask_picture_has_four_panels(setup):
    model, _, _ = setup
    fig = plot_masks(model.h[0].mlp.c_fc.weight[:8, :16].detach())
    assert len(fig.axes) == 4 and "2:4" in fig.axes[3].get_title()


def test_the_widget_responds(setup):
    from ipywidgets import Widget

    model, val, calib = setup
    w = prune_widget(model, val, calib)
    try:
        method, sparsity = w.children[:2]
        for m in ("wanda", "2:4", "magnitude"):
            method.value = m
        sparsity.value = 0.9
        assert w.result["val_loss"] > 0
    finally:
        Widget.close_all()


def test_tour_step_reports_masks_and_structure(tmp_path, capsys):
    from minillm.compress.prune_study import tour_step

    md = tour_step(tmp_path)
    assert (tmp_path / "pruning.png").stat().st_size > 5_000
    assert md.count("| ") >= 3 and "half the heads and neurons" in md
    assert "pruning: dense" in capsys.readouterr().out  # the terminal gets the numbers
