"""Lesson 08's diagrams: SIMD against SIMT against a systolic array, and an FPGA pipeline's initiation interval."""

import numpy as np
import pytest

from minillm.hardware.diagrams import STYLES, lane_timeline, plot_feeding_styles, plot_pipeline
from minillm.hardware.fpga import _loop_cycles, pipeline_schedule

pytestmark = pytest.mark.lesson08


def test_simd_drives_every_lane_with_one_instruction_per_cycle():
    g = lane_timeline("SIMD", cycles=10, lanes=16)
    assert g.shape == (16, 10)
    assert (g == np.arange(10)).all()  # every lane runs instruction t at cycle t


def test_simt_warps_take_turns():
    g = lane_timeline("SIMT", cycles=12, lanes=32, warps=4)
    assert (g >= 0).all()  # the lanes never idle: another warp is always ready
    assert list(g[0]) == [0, 1, 2, 3] * 3  # warp w runs every 4th cycle, waiting 3 in between
    assert (g == g[0]).all()  # all threads of the running warp execute together (lock-step)


def test_systolic_wavefront_is_skewed_by_row_plus_column():
    g = lane_timeline("systolic", cycles=12, lanes=16, stream=5)
    for cell in range(16):
        i, j = divmod(cell, 4)
        busy = np.nonzero(g[cell] >= 0)[0]
        assert list(busy) == list(range(i + j, i + j + 5))  # 5 input rows, starting i + j cycles late
        assert list(g[cell, busy]) == [0, 1, 2, 3, 4]
    # Useful work: 16 cells x 5 rows over 16 x 12 cell-cycles.
    assert (g >= 0).mean() == pytest.approx(80 / 192)


def test_lane_timeline_bad_input():
    with pytest.raises(ValueError, match="style"):
        lane_timeline("MIMD")
    with pytest.raises(ValueError, match="perfect square"):
        lane_timeline("systolic", lanes=12)


def test_plot_feeding_styles_draws_the_three_timelines():
    fig = plot_feeding_styles(cycles=12, lanes=16, warps=4, stream=5)
    axes = fig.axes
    assert len(axes) == 3
    for ax, style in zip(axes, STYLES):
        assert ax.get_title().startswith(style) and ax.get_xlabel() == "cycle"
        drawn = ax.get_images()[0].get_array()
        assert drawn.shape == (16, 12)
        assert (drawn.filled(-1) == lane_timeline(style, 12, 16, 4, 5)).all()  # idle lanes masked (white)
    busy = [t.get_text() for ax in axes for t in ax.texts]
    assert busy == ["busy 100%", "busy 100%", "busy 42%"]


@pytest.mark.parametrize("n,depth,ii", [(8, 5, 1), (8, 5, 2), (1, 16, 4), (100, 3, 3)])
def test_pipeline_schedule_matches_the_loop_latency(n, depth, ii):
    sched = pipeline_schedule(n, depth, ii)
    assert len(sched) == n
    assert all(e - s == depth for s, e in sched)
    assert [s for s, _ in sched] == [k * ii for k in range(n)]
    assert max(e for _, e in sched) == _loop_cycles(n, depth, ii)  # the same latency gemm() uses


def test_plot_pipeline_draws_a_bar_per_iteration_and_the_latency():
    scheds = {"II = 1": pipeline_schedule(8, 5, 1), "II = 2": pipeline_schedule(8, 5, 2)}
    fig = plot_pipeline(scheds, "an FPGA loop")
    assert [ax.get_title(loc="left") for ax in fig.axes] == list(scheds)
    for ax, sched in zip(fig.axes, scheds.values()):
        bars = ax.collections
        assert len(bars) == 8
        spans = [tuple(b.get_paths()[0].vertices[:, 0].min() for _ in [0]) for b in bars]
        assert [s[0] for s in spans] == [s for s, _ in sched]  # each bar starts when its iteration enters
        latency = max(e for _, e in sched)
        assert any(line.get_xdata()[0] == latency for line in ax.get_lines())  # the dashed latency line
        assert any(t.get_text().strip() == f"{latency} cycles" for t in ax.texts)
    with pytest.raises(ValueError, match="at least one"):
        plot_pipeline({})
