"""The stepped systolic array: exact products, and cycles equal to SCALE-Sim's closed form."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.hardware.systolic import (
    DATAFLOWS,
    SystolicArray,
    systolic_cycles,
    systolic_folds,
    systolic_mapping,
    systolic_demo,
    systolic_utilization,
)

pytestmark = pytest.mark.lesson08


@st.composite
def problems(draw):
    M, K, N = (draw(st.integers(1, 9)) for _ in range(3))
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A = rng.integers(-50, 51, size=(M, K))
    B = rng.integers(-50, 51, size=(K, N))
    return A, B, rows, cols


@settings(deadline=None, max_examples=40)
@given(problem=problems(), dataflow=st.sampled_from(DATAFLOWS))
def test_stepped_array_is_exact_and_matches_closed_form(problem, dataflow):
    # Reference: numpy's integer matmul (exact). Cycle reference: SCALE-Sim's 2R + C + T - 2 per fold.
    # Shapes range over ragged edges (M, K, N not multiples of the array) and arrays larger than the problem.
    A, B, R, C = problem
    M, K = A.shape
    N = B.shape[1]
    out, stats = SystolicArray(R, C, dataflow).matmul(A, B)
    np.testing.assert_array_equal(out, A @ B)  # exact: integer arithmetic, no tolerance
    assert stats.cycles == systolic_cycles(M, K, N, R, C, dataflow)
    assert stats["cycles"] == stats.cycles  # also readable as a dict
    assert stats.macs == M * K * N  # every useful multiply-accumulate happens exactly once
    assert 0 < stats.utilization <= 1
    assert stats.utilization == pytest.approx(systolic_utilization(M, K, N, R, C, dataflow))
    assert stats.folds == systolic_folds(M, K, N, R, C, dataflow)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("shape", [(13, 9, 17), (8, 8, 8), (1, 20, 3), (30, 1, 1)])
def test_ragged_shapes_on_8x8(shape, dataflow):
    M, K, N = shape
    rng = np.random.default_rng(0)
    A, B = rng.integers(-9, 10, (M, K)), rng.integers(-9, 10, (K, N))
    out, stats = SystolicArray(8, 8, dataflow).matmul(A, B)
    np.testing.assert_array_equal(out, A @ B)
    assert stats.cycles == systolic_cycles(M, K, N, 8, 8, dataflow)


def test_closed_form_worked_examples():
    # One fold of a 4x4 problem on a 4x4 array: 2*4 + 4 + 4 - 2 = 14 cycles, in every dataflow.
    for df in DATAFLOWS:
        assert systolic_cycles(4, 4, 4, 4, 4, df) == 14
    # WS maps S_R = K, S_C = N, T = M (SCALE-Sim Table II): K=64, N=64 on 32x32 -> 4 folds of
    # 2*32 + 32 + 100 - 2 = 194 cycles.
    assert systolic_mapping(100, 64, 64, "ws") == (64, 64, 100)
    assert systolic_cycles(100, 64, 64, 32, 32, "ws") == 4 * 194
    # OS maps S_R = M, S_C = N, T = K; IS maps S_R = K, S_C = M, T = N.
    assert systolic_mapping(100, 64, 48, "os") == (100, 48, 64)
    assert systolic_mapping(100, 64, 48, "is") == (64, 100, 48)


def test_a_long_stream_amortises_the_fill():
    # WS with a huge T (many tokens through one weight tile) approaches 100% utilization.
    assert systolic_utilization(4096, 8, 8, 8, 8, "ws") > 0.99
    assert systolic_utilization(1, 8, 8, 8, 8, "ws") < 0.05  # batch-1 decode wastes the array


def test_torch_and_float_inputs():
    g = torch.Generator().manual_seed(0)
    A = torch.randint(-100, 100, (5, 7), generator=g, dtype=torch.int32)
    B = torch.randint(-100, 100, (7, 6), generator=g, dtype=torch.int32)
    out, _ = SystolicArray(4, 4, "ws").matmul(A, B)
    assert isinstance(out, torch.Tensor) and torch.equal(out, A.long() @ B.long())
    Af, Bf = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(7, 6, generator=g, dtype=torch.float64)
    outf, _ = SystolicArray(3, 2, "os").matmul(Af, Bf)
    # float64 sums in a different order than BLAS: agreement to ~1e-12 relative.
    torch.testing.assert_close(outf, Af @ Bf, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_frames_show_every_cycle(dataflow):
    A = np.arange(1, 7).reshape(3, 2)
    B = np.arange(1, 9).reshape(2, 4)
    out, stats = SystolicArray(3, 3, dataflow).matmul(A, B, record_frames=True)
    frames = stats.frames
    assert len(frames) == stats.cycles and [f.cycle for f in frames] == list(range(stats.cycles))
    assert sum(int(f.active.sum()) for f in frames) == stats.macs
    assert all(f.stationary.shape == (3, 3) for f in frames)
    if dataflow == "os":
        assert [f.phase for f in frames[-3:]] == ["drain"] * 3
    else:
        assert [f.phase for f in frames[:3]] == ["load"] * 3
    assert SystolicArray(3, 3, dataflow).matmul(A, B)[1].frames is None


def test_frame_plots():
    from minillm.hardware.plots import plot_systolic_frame, plot_systolic_frames

    _, stats = SystolicArray(2, 2, "ws").matmul(np.ones((2, 2), dtype=int), np.ones((2, 2), dtype=int), record_frames=True)
    frame = stats.frames[4]
    fig = plot_systolic_frame(frame, stats.roles)
    grids = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in grids] == [stats.roles[k] for k in ("stationary", "horizontal", "vertical")]
    # A colour bar for each grid with values in it; an empty grid says so instead.
    n_full = sum(bool(np.isfinite(g).any()) for g in (frame.stationary, frame.horizontal, frame.vertical))
    assert len(fig.axes) - len(grids) == n_full
    first = plot_systolic_frame(stats.frames[0], stats.roles)  # cycle 0: only the first weight row is in
    assert sum("empty this cycle" in t.get_text() for ax in first.axes for t in ax.texts) == 2
    assert f"cycle {frame.cycle}" in fig._suptitle.get_text()
    # The cell values are printed: each finite entry of a grid appears as a text in its panel.
    for ax, grid in zip(grids, (frame.stationary, frame.horizontal, frame.vertical)):
        assert len(ax.texts) == int(np.isfinite(grid).sum())
    strip = plot_systolic_frames(stats.frames)
    panels = [ax for ax in strip.axes if ax.get_images()]
    assert 1 < len(panels) <= 12
    assert panels[0].get_title().startswith(f"c{stats.frames[0].cycle} ")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: SystolicArray(0, 4), "rows=0"),
        (lambda: SystolicArray(4, -1), "cols=-1"),
        (lambda: SystolicArray(4, 4, "xs"), "dataflow"),
        (lambda: SystolicArray(4, 4).matmul(np.ones((2, 3)), np.ones((4, 2))), "inner sizes"),
        (lambda: SystolicArray(4, 4).matmul(np.ones((2, 3, 1)), np.ones((3, 2))), "2-D"),
        (lambda: SystolicArray(4, 4).matmul(np.ones((2, 3), dtype=bool), np.ones((3, 2))), "dtype"),
        (lambda: systolic_cycles(-1, 4, 4, 4, 4), "M=-1"),
        (lambda: systolic_cycles(4, 4, 4, 4, 4, "ss"), "dataflow"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mxu_sides_pinned_to_their_sources():
    # Jouppi et al. 2017 (TPU v1: one 256 x 256 array); Jouppi et al. 2020/2023 and the scaling book
    # (v2-v5: 128 x 128); Google Cloud's TPU v6e page and the scaling book, "TPUs" (v6e: 256 x 256).
    from minillm.hardware.systolic import MXU_SIDE

    assert MXU_SIDE["tpu-v6e"] == 256 and MXU_SIDE["tpu-v1"] == 256
    assert all(MXU_SIDE[f"tpu-{v}"] == 128 for v in ("v2", "v3", "v4", "v5e", "v5p"))


def test_frame_strip_shows_every_cycle_a_colour_scale_and_the_load():
    # Issue 11: the strip skipped cycles silently, had no colour scale, and its load frames were blank.
    from minillm.hardware.plots import plot_systolic_frames

    d = systolic_demo(M=5, K=4, N=4, rows=4, cols=4, dataflow="ws", seed=0)
    frames = d["frames"]
    fig = plot_systolic_frames(frames, roles=d["roles"])
    panels = [ax for ax in fig.axes if ax.get_images()]
    colorbars = [ax for ax in fig.axes if not ax.get_images()]
    assert len(panels) == len(frames) == 15  # 15 cycles, all drawn by default
    assert [ax.get_title().split()[0] for ax in panels] == [f"c{f.cycle}" for f in frames]
    # Two scales: the partial sums, and the weights being loaded.
    assert sorted(ax.get_ylabel() for ax in colorbars) == sorted([d["roles"]["vertical"], d["roles"]["stationary"]])
    for ax, f in zip(panels, frames):
        data = ax.get_images()[0].get_array()
        if f.phase == "load":  # the weights being shifted in, row by row: never blank
            assert data.count() == 4 * (f.cycle + 1) and "loading" in ax.get_title()
    assert "all 15 cycles" in fig._suptitle.get_text()
    few = plot_systolic_frames(frames, max_frames=6)
    shown = [int(ax.get_title().split()[0][1:]) for ax in few.axes if ax.get_images()]
    assert len(shown) == 6 and "6 of 15 cycles shown" in few._suptitle.get_text()
    skipped = [c for c in range(15) if c not in shown]
    assert "skipped: " + ", ".join(map(str, skipped[:8])) in few._suptitle.get_text()
