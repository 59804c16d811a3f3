"""Lesson 13's pictures and widget: what they draw, and the widget driven over its controls."""

import pytest

from minillm.parallel.pp_plots import pipeline_view, pipeline_widget, plot_in_flight, plot_schedules
from minillm.parallel.pp_schedule import bubble_fraction, schedule_timeline

pytestmark = pytest.mark.lesson13


def test_plot_schedules_draws_every_action_on_a_shared_axis():
    tls = [schedule_timeline("gpipe", 4, 8), schedule_timeline("interleaved-1f1b", 4, 8, n_virtual=2)]
    fig = plot_schedules(tls)
    axes = fig.axes
    assert len(axes) == 2
    # one bar collection per action: p·m·2 for GPipe, p·m·2·v interleaved
    assert len(axes[0].collections) == 4 * 8 * 2 and len(axes[1].collections) == 4 * 8 * 2 * 2
    assert axes[1].get_xlim() == (0, 33.0)  # the longer (GPipe) makespan fits both
    assert "bubble 27%" in axes[0].get_title() and "v=2" in axes[1].get_title()
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [f"stage {r}" for r in range(4)]
    with pytest.raises(ValueError, match="at least one Timeline"):
        plot_schedules([])


def test_plot_in_flight_bars_are_the_measured_peaks():
    tls = [schedule_timeline("gpipe", 4, 8), schedule_timeline("1f1b", 4, 8), schedule_timeline("interleaved-1f1b", 4, 8, n_virtual=2)]
    ax = plot_in_flight(tls).axes[0]
    heights = [round(b.get_height(), 6) for b in ax.patches]
    assert heights == [8, 8, 8, 8, 4, 3, 2, 1, 5.5, 4.5, 3.5, 2.5]
    assert ax.get_ylabel() == "micro-batches of activations held"


def test_pipeline_view_rows_agree_with_the_formula():
    view = pipeline_view(4, 8, 2, 3.0)
    assert [r["kind"] for r in view["rows"]] == ["gpipe", "1f1b", "interleaved-1f1b"]
    for r in view["rows"]:
        assert r["bubble"] == pytest.approx(r["formula"])
    assert view["rows"][0]["makespan"] == pytest.approx((8 + 3) * (1 + 3.0))
    assert [r["kind"] for r in pipeline_view(4, 6, 2)["rows"]] == ["gpipe", "1f1b"]  # m not a multiple of p


def test_the_widget_responds_over_its_controls():
    from ipywidgets import Widget

    w = pipeline_widget()
    try:
        p, m, v, ratio = w.children[:4]
        assert all(len(c.description) <= 25 for c in (p, m, v, ratio))
        for value in (2, 8):
            p.value = value
            assert w.result is None  # show() prints and displays; no exception
        for value in (1, 32):
            m.value = value
        v.value = 4
        ratio.value = 0.5
        assert bubble_fraction(p.value, m.value) > 0
    finally:
        Widget.close_all()
