"""Lesson 14's widget and pictures: the pure view, what the figures draw, the widget's controls."""

import pytest

from minillm.parallel.planner import plan
from minillm.parallel.planner_plots import (
    LAYOUT_KEY,
    RECOMPUTE_SHORT,
    TIME_COLORS,
    format_plans,
    planner_summary,
    planner_view,
    planner_widget,
    plot_plans,
    plot_published,
)
from minillm.parallel.planner_runs import published_comparison

pytestmark = pytest.mark.lesson14


def test_view_is_the_planners_top_layouts():
    view = planner_view("llama2-70b", 64, "h100", 256, 4096, top=4)
    ref = plan("llama2-70b", 64, "h100", global_batch=256, seq_len=4096, mfu=0.5)
    assert [(p.dp, p.tp, p.pp, p.micro_batch, p.zero_stage, p.recompute) for p in view["plans"]] == \
        [(p.dp, p.tp, p.pp, p.micro_batch, p.zero_stage, p.recompute) for p in ref[:4]]
    assert view["n_fit"] == len(ref) < view["n_tried"]
    assert "fastest: dp=" in planner_summary(view)
    table = format_plans(view["plans"]).splitlines()
    assert len(table) == 5 and table[1].split()[:4] == ["1", str(ref[0].dp), str(ref[0].tp), str(ref[0].pp)]


def test_nothing_fits_says_so():
    view = planner_view("gpt3-175b", 8, "a100", 256, 2048)
    assert view["plans"] == [] and "none fits" in planner_summary(view)


def test_plot_plans_stacks_the_terms():
    plans = planner_view("llama2-13b", 16, "a100", 128, 2048, top=3)["plans"]
    fig = plot_plans(plans)
    ax_t, ax_m = fig.axes[:2]
    for i, p in enumerate(plans):  # each stacked bar's top is the step time / the memory
        tops = [r.get_y() + r.get_height() for r in ax_t.patches if abs(r.get_x() + r.get_width() / 2 - i) < 1e-9]
        assert max(tops) == pytest.approx(p.step_time)
        tops = [r.get_y() + r.get_height() for r in ax_m.patches if abs(r.get_x() + r.get_width() / 2 - i) < 1e-9]
        assert max(tops) == pytest.approx(p.memory_bytes / 1e9)
    assert {t.get_text() for t in ax_t.get_legend().get_texts()} <= {k.replace("_", " ") for k in TIME_COLORS}
    for ax in (ax_t, ax_m):  # every tick label names its layout, and the axis says how to read it
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == [f"d{p.dp} t{p.tp} p{p.pp}\nb{p.micro_batch} z{p.zero_stage} {RECOMPUTE_SHORT[p.recompute]}"
                         for p in plans]
        assert ax.get_xlabel() == LAYOUT_KEY and "recompute" in LAYOUT_KEY


def test_plot_published_draws_both_numbers():
    rows = published_comparison()
    ax = plot_published(rows).axes[0]
    heights = sorted(round(r.get_height(), 6) for r in ax.patches)
    want = sorted(round(v, 6) for r in rows for v in (r["published_TFLOPs"], r["predicted_TFLOPs"]))
    assert heights == want


def test_widget_drives_the_view():
    w = planner_widget(draw=False)
    assert w.result["model"] == "llama2-70b" and w.result["plans"]
    controls = {c.description: c for c in w.children[:-1]}
    controls["devices"].value = 128
    assert w.result["n_devices"] == 128
    assert all(p.dp * p.tp * p.pp == 128 for p in w.result["plans"])
