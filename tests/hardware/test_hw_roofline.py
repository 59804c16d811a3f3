"""Roofline: ridge points, attainable FLOP/s, GEMM intensity, op times, the plot."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minillm.hardware import get_device, list_devices
from minillm.hardware.roofline import (
    Op,
    attainable_flops,
    gemm_flops_bytes,
    gemm_intensity,
    op_time,
    ridge_point,
)
from minillm.hardware.plots import plot_roofline

pytestmark = pytest.mark.lesson07


def test_h100_ridge_point():
    # Issue 6 / the scaling book: H100 dense bf16 989.4e12 FLOP/s over 3.35e12 B/s = 295 FLOP/byte.
    # Tolerance 1%: the published figure is rounded.
    assert ridge_point("H100", "bf16") == pytest.approx(295, rel=0.01)


def test_tpu_v5e_ridge_point():
    # How to Scale Your Model, Part 1: "1.97e14 / 8.2e11 = 240 FLOPs/byte" for TPU v5e. 1%: rounded bandwidth.
    assert ridge_point("tpu-v5e", "bf16") == pytest.approx(240, rel=0.01)


def test_ridge_points_of_accelerators_are_100_to_600():
    # REFERENCES: modern accelerators sit at about 150-300 FLOP/byte in bf16 (B200 and v6e a bit higher).
    for name in list_devices("gpu") + list_devices("tpu"):
        assert 100 < ridge_point(name, "bf16") < 600, name


def test_gemm_flops_bytes_formula():
    # The scaling book, Part 1: [B,D] x [D,F] takes 2BDF FLOPs and moves 2(BD + DF + BF) bytes in bf16.
    B, D, F = 16, 4096, 11008
    flops, nbytes = gemm_flops_bytes(B, D, F, 2)
    assert flops == 2 * B * D * F and nbytes == 2 * (B * D + D * F + B * F)
    # Square n: 2n^3 / (2 * 3n^2) = n/3 exactly.
    assert gemm_intensity(3000, 3000, 3000, 2) == pytest.approx(1000, rel=1e-12)


def test_gemm_intensity_is_about_the_batch_for_small_batches():
    # The scaling book: intensity of a bf16 matmul ~ B when B << D, F. Tolerance 1%.
    assert gemm_intensity(8, 8192, 8192, 2) == pytest.approx(8, rel=0.01)


@settings(deadline=None, max_examples=50)
@given(
    M=st.integers(1, 10_000),
    K=st.integers(1, 10_000),
    N=st.integers(1, 10_000),
    bpe=st.sampled_from([1, 2, 4]),
)
def test_doubling_the_batch_never_lowers_gemm_intensity(M, K, N, bpe):
    assert gemm_intensity(2 * M, K, N, bpe) >= gemm_intensity(M, K, N, bpe) * (1 - 1e-12)


@settings(deadline=None, max_examples=30)
@given(name=st.sampled_from(list_devices()), intensity=st.floats(0, 1e5))
def test_attainable_is_min_of_two_roofs(name, intensity):
    d = get_device(name)
    dt = d.default_dtype()
    expected = min(d.peak(dt), intensity * d.mem_bw)
    assert attainable_flops(d, intensity, dt) == pytest.approx(expected, rel=1e-12)


def test_attainable_accepts_arrays_and_is_monotone():
    x = np.logspace(-2, 4, 50)
    y = attainable_flops("h100", x, "bf16")
    assert y.shape == x.shape and np.all(np.diff(y) >= 0)
    assert y[-1] == get_device("h100").peak("bf16")


def test_op_time_names_the_bound():
    h100 = get_device("h100")
    ridge = ridge_point(h100, "bf16")
    t, bound = op_time(1e12, 1e12 / (ridge * 10), h100, "bf16")
    assert bound == "compute" and t == pytest.approx(1e12 / h100.peak("bf16"))
    t, bound = op_time(1e9, 1e9 / (ridge / 10), h100, "bf16")
    assert bound == "memory" and t == pytest.approx(1e9 / (ridge / 10) / h100.mem_bw)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: gemm_intensity(-1, 4, 4), "M=-1"),
        (lambda: gemm_intensity(4, 0, 4), "K=0"),
        (lambda: gemm_flops_bytes(4, 4, 4, bytes_per_elem=0), "bytes_per_elem"),
        (lambda: attainable_flops("h100", -1.0, "bf16"), "intensity"),
        (lambda: attainable_flops("h100", [1.0, -2.0], "bf16"), "intensity"),
        (lambda: op_time(-5, 10, "h100", "bf16"), "flops"),
        (lambda: ridge_point("tpu-v5e", "fp32"), "fp32"),
        (lambda: ridge_point("h1000", "bf16"), "unknown device"),
        (lambda: Op("x", 1.0, 0.0), "nbytes"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_plot_roofline_draws_each_roof_at_its_peak_and_the_ops():
    ops = [Op("decode gemv", 2 * 4096**2, 2 * 4096**2, measured_flops_per_s=1e12), Op("big gemm", 1e12, 1e9)]
    devices = [("h100", "bf16"), "tpu-v5e", get_device("xeon")]
    fig = plot_roofline(devices, ops=ops)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "arithmetic intensity (FLOP/byte)" and ax.get_ylabel() == "attainable FLOP/s"
    roofs = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert [line.get_label().split(" ")[0] for line in roofs] == ["h100-sxm", "tpu-v5e", "xeon-8480"]
    for line, (name, dtype) in zip(roofs, [("h100", "bf16"), ("tpu-v5e", "bf16"), ("xeon", get_device("xeon").default_dtype())]):
        # Each roof flattens at the device's peak (exact: the curve is min(peak, I x bw)).
        assert max(line.get_ydata()) == get_device(name).peak(dtype)
    # Each op is a dot on the first roof, and the measured one has a hollow marker too.
    dots = [line for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert len(dots) == 3
    assert dots[0].get_xdata()[0] == pytest.approx(ops[0].intensity)  # sorted by intensity: the gemv first
    assert dots[0].get_ydata()[0] == pytest.approx(attainable_flops("h100", ops[0].intensity, "bf16"))
    box = "\n".join(t.get_text() for t in ax.texts)
    assert "1 decode gemv" in box and "2 big gemm" in box
    single = plot_roofline("h100").axes[0]  # a single device works too
    assert [line.get_label() for line in single.get_lines() if len(line.get_xdata()) > 2] == ["h100-sxm bf16 (ridge 295 FLOP/B)"]


@pytest.mark.parametrize("model,context", [("llama2-7b", 1024), ("llama3-8b", 1024), ("llama2-7b", 32768), ("llama3-70b", 128)])
def test_plot_workload_batch_labels_do_not_overlap(model, context):
    # Lesson 07's widget: where the KV cache takes over, the sweep's points pile up at one
    # intensity; a label on each would print the batch sizes on top of each other (issue 11).
    from minillm.hardware.plots import plot_workload
    from minillm.hardware.serving import workload_point

    batches = [2**k for k in range(11)]
    point = workload_point(model, "h100", 1, context)
    fig = plot_workload(point, [workload_point(model, "h100", b, context) for b in batches])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_gid() == "batch-label"]
    assert {"1", "1024"} <= {t.get_text() for t in labels}  # both ends of the sweep stay labelled
    assert all(t.get_text() in {str(b) for b in batches} for t in labels)
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), [t.get_text() for t in labels]
