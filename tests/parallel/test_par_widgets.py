"""The widgets of lessons 10 and 11 and the pure functions behind them (minillm/parallel/widgets.py).

Lesson 10's widget is ``interactive`` over :func:`collective_view`, lesson 11's over
:func:`zero_view`. These tests drive the controls without a browser, sweeping each one
over its whole range (the options the lessons use come from the module itself), and
check every value against an independent reference: the α-β formulas written out
here, the simulator's measured clock, and the ZeRO paper's Figure 1.

Tolerance policy: compositions of tested functions must agree to float rounding
(rel 1e-12); the simulator's logical clock adds the same α + n/B terms in another
order (rel 1e-9); published figures within the rounding of their source (0.05 GB).
This file holds both lessons' widget tests, so each test carries its own marker.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from ipywidgets import Widget  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minillm.parallel import CPU_ETHERNET, ClusterSpec, ring_all_reduce, run, zero_memory_bytes, zero_step_estimate  # noqa: E402
from minillm.parallel.widgets import (  # noqa: E402
    CLUSTERS,
    DP_WORLD_SIZES,
    MESSAGE_SIZES,
    MODEL_SIZES,
    WIDGET_OPS,
    WORLD_SIZES,
    cluster,
    collective_view,
    collective_widget,
    one_root_all_reduce_time,
    plot_collective_view,
    plot_zero_view,
    ring_steps,
    zero_view,
    zero_widget,
)
from minillm.units import format_bytes  # noqa: E402

lesson10 = pytest.mark.lesson10
lesson11 = pytest.mark.lesson11


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    plt.close("all")
    Widget.close_all()


def _alpha_beta(op: str, n: float, p: int, bw: float, lat: float) -> float:
    """The ring / tree costs written out independently (Thakur, Rabenseifner & Gropp 2005)."""
    if p == 1:
        return 0.0
    if op == "all_reduce":
        return 2 * (p - 1) * lat + 2 * (p - 1) / p * n / bw
    if op in ("all_gather", "reduce_scatter"):
        return (p - 1) * lat + (p - 1) / p * n / bw
    return math.ceil(math.log2(p)) * (lat + n / bw)  # binomial-tree broadcast


# --------------------------------------------------------------------------- lesson 10: collective_view


@lesson10
@settings(deadline=None, max_examples=25)
@given(op=st.sampled_from(WIDGET_OPS), p=st.sampled_from(WORLD_SIZES), n=st.sampled_from(MESSAGE_SIZES),
       name=st.sampled_from(CLUSTERS))
def test_collective_view_is_the_alpha_beta_model(op, p, n, name):
    v = collective_view(op, p, n, name)
    spec = cluster(name)
    want = _alpha_beta(op, n, p, spec.link_bw, spec.latency)
    assert math.isclose(v["seconds"], want, rel_tol=1e-12)
    # The split: steps·α of latency, the rest bandwidth.
    assert v["steps"] == ring_steps(op, p)
    assert math.isclose(v["latency_s"], v["steps"] * spec.latency, rel_tol=1e-12)
    assert math.isclose(v["latency_s"] + v["bandwidth_s"], v["seconds"], rel_tol=1e-12)
    # busbw never beats the link (α >= 0), and algbw·factor = busbw (NCCL-tests).
    factor = {"all_reduce": 2 * (p - 1) / p, "broadcast": 1.0}.get(op, (p - 1) / p)
    assert math.isclose(v["busbw"], n / v["seconds"] * factor, rel_tol=1e-12)
    assert v["busbw"] <= spec.link_bw * (1 + 1e-12)
    assert (v["one_root_s"] is None) == (op != "all_reduce")
    assert [r["nbytes"] for r in v["sweep"]] == [float(s) for s in MESSAGE_SIZES]


@lesson10
def test_busbw_reaches_the_link_without_latency():
    # With α = 0 a bandwidth-optimal ring's busbw equals the link bandwidth exactly (nccl-tests' point).
    spec = ClusterSpec(link_bw=100e9, latency=0.0)
    for op in ("all_reduce", "all_gather", "reduce_scatter"):
        for p in (2, 8, 1024):
            assert math.isclose(collective_view(op, p, 2**20, spec)["busbw"], 100e9, rel_tol=1e-12)


@lesson10
def test_one_root_all_reduce_is_linear_in_p_and_slower_than_the_ring():
    spec = cluster("h100")
    for p in WORLD_SIZES:
        t = one_root_all_reduce_time(2**26, p, spec.link_bw, spec.latency)
        assert math.isclose(t, 2 * (p - 1) * (spec.latency + 2**26 / spec.link_bw), rel_tol=1e-12)
        assert t >= collective_view("all_reduce", p, 2**26, spec)["seconds"]
    assert one_root_all_reduce_time(1e6, 1, 1e9) == 0.0


@lesson10
@pytest.mark.parametrize("p", [2, 3, 8])
def test_collective_view_matches_the_simulators_ring(p):
    # The simulator's clock after minillm's ring all-reduce is the widget's prediction
    # (n divisible by p, so every step moves equal chunks).
    n = 1200 * 4  # bytes of float32

    def rank(comm):
        ring_all_reduce(comm, torch.ones(n // 4))
        return comm.clock

    measured = run(rank, p, cluster=CPU_ETHERNET).makespan
    assert math.isclose(measured, collective_view("all_reduce", p, n, "cpu-ethernet")["seconds"], rel_tol=1e-9)


@lesson10
def test_collective_view_rejects_bad_input_by_name():
    with pytest.raises(ValueError, match="op='all_to_all'"):
        collective_view("all_to_all", 8, 1024)
    with pytest.raises(ValueError, match="world_size=0"):
        collective_view("all_reduce", 0, 1024)
    with pytest.raises(ValueError, match="nbytes=0"):
        collective_view("all_reduce", 8, 0)
    with pytest.raises(ValueError, match="cluster='v100'"):
        collective_view("all_reduce", 8, 1024, "v100")
    assert collective_view("all_reduce", 1, 1024)["seconds"] == 0.0  # one rank: nothing to send


@lesson10
def test_collective_widget_sweeps_every_control():
    # The widget the lesson shows (collective_widget), with draw=False so that its function
    # returns the view instead of drawing it (drawing is tested below).
    w = collective_widget(draw=False)
    controls = dict(zip(("op", "world_size", "nbytes", "cluster_name"), w.children[:-1]))
    assert [c.description for c in controls.values()] == ["collective", "ranks p", "message size", "cluster"]
    # One layout: every description gets the room it needs (the default cut "cluster_na…" off).
    assert all(c.style.description_width == "initial" for c in controls.values())
    w.update()
    assert w.result["op"] == "all_reduce" and w.result["world_size"] == 8 and w.result["nbytes"] == 64e6
    last = 0.0
    for p in WORLD_SIZES:  # a ring all-reduce only gets slower with more ranks
        controls["world_size"].value = p
        assert w.kwargs["world_size"] == p and w.result["world_size"] == p
        assert w.result["seconds"] > last
        last = w.result["seconds"]
    controls["world_size"].value = 8
    last = 0.0
    for n in MESSAGE_SIZES:  # busbw grows with the message size, towards the link
        controls["nbytes"].value = n
        assert w.result["nbytes"] == n and w.result["busbw"] > last
        last = w.result["busbw"]
    for op in WIDGET_OPS:
        controls["op"].value = op
        assert w.result["op"] == op
    for name in CLUSTERS:
        controls["cluster_name"].value = name
        assert w.result["cluster"] == cluster(name).name
        assert math.isclose(w.result["seconds"], _alpha_beta(w.result["op"], w.result["nbytes"], 8,
                            cluster(name).link_bw, cluster(name).latency), rel_tol=1e-12)


@lesson10
def test_message_sizes_are_decimal_as_the_lesson_counts():
    # The lesson defines GB = 1e9 bytes, so the slider's "1 GB" must be 1e9 bytes (it was 4**15).
    labels = dict((format_bytes(n), n) for n in MESSAGE_SIZES)
    assert labels["1 GB"] == 10**9 and labels["1 kB"] == 10**3 and labels["64 MB"] == 64 * 10**6
    assert list(MESSAGE_SIZES) == sorted(MESSAGE_SIZES)


@lesson10
def test_collective_widget_draws_and_prints(capsys, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    w = collective_widget()  # interactive draws its first state on construction...
    assert len(shown) == 1 and isinstance(shown[0], Figure)
    w.children[1].value = 16  # ...and again whenever a control changes
    assert len(shown) == 2 and isinstance(shown[1], Figure)
    assert "all_reduce of 64 MB on 8 x" in capsys.readouterr().out


@lesson10
@pytest.mark.parametrize("op, p, n, name", [("all_reduce", 2, MESSAGE_SIZES[0], "h100"), ("broadcast", 1024, MESSAGE_SIZES[-1], "cpu-ethernet"),
                                            ("all_gather", 8, 4_000_000, "tpu-v5p")])
def test_plot_collective_view_draws_the_split_and_the_sweep(op, p, n, name):
    view = collective_view(op, p, n, name)
    fig = plot_collective_view(view)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax0, ax1 = fig.axes
    # Left: one stacked bar per algorithm (ring or tree; one root for all-reduce), latency under bandwidth.
    names = [t.get_text() for t in ax0.get_xticklabels()]
    assert names == (["ring", "one root"] if op == "all_reduce" else ["tree"] if op == "broadcast" else ["ring"])
    lat, bw = ax0.containers
    total = lat.patches[0].get_height() + bw.patches[0].get_height()
    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[ax0.get_ylabel().split("(")[1].rstrip(")")]
    assert math.isclose(total * scale, view["seconds"], rel_tol=1e-9)
    # The legend sits above the bars: the y axis leaves headroom over the tallest one.
    assert ax0.get_ylim()[1] >= 1.3 * max(p.get_y() + p.get_height() for p in bw.patches)
    # Right: the busbw sweep in GB/s against message size, the link as a dashed line, and this message.
    assert "GB/s" in ax1.get_ylabel() and ax1.get_xscale() == "log"
    curve = ax1.lines[0]
    assert list(curve.get_xdata()) == [float(s) for s in MESSAGE_SIZES]
    assert math.isclose(ax1.lines[-1].get_ydata()[0], view["busbw"] / 1e9, rel_tol=1e-12)


# --------------------------------------------------------------------------- lesson 11: zero_view


@lesson11
def test_zero_view_reproduces_zero_figure_1():
    # Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 GPUs, K = 12 -> 120, 31.4, 16.6, 1.9 GB
    # (GB = 1e9 bytes). The paper rounds to 0.1 GB, so 0.05 GB.
    v = zero_view(7.5e9, 64, 1)
    totals = [sum(v["by_stage"][f"stage {s}"].values()) / 1e9 for s in range(4)]
    for got, paper in zip(totals, [120, 31.4, 16.6, 1.9]):
        assert abs(got - paper) <= 0.05
    assert math.isclose(v["estimate"]["memory_gb"], totals[1], rel_tol=1e-12)


@lesson11
@settings(deadline=None, max_examples=25)
@given(n=st.sampled_from(MODEL_SIZES), p=st.sampled_from(DP_WORLD_SIZES), stage=st.sampled_from([0, 1, 2, 3]),
       name=st.sampled_from(CLUSTERS))
def test_zero_view_is_built_from_the_tested_models(n, p, stage, name):
    v = zero_view(n, p, stage, name)
    assert v["estimate"] == zero_step_estimate(n, p, stage, 4e6, cluster(name))
    for s in range(4):
        assert v["by_stage"][f"stage {s}"] == zero_memory_bytes(n, p, s).as_dict()
    rows = v["sweep"]
    assert [r["world_size"] for r in rows] == list(DP_WORLD_SIZES)
    # More ranks: never more memory per device, never more compute per device.
    for a, b in zip(rows, rows[1:]):
        assert b["memory_gb"] <= a["memory_gb"] * (1 + 1e-12) and b["compute_s"] < a["compute_s"]
        assert b["fits"] or not a["fits"]
    assert v["capacity"] == cluster(name).mem_bytes


@lesson11
def test_zero_view_rejects_bad_input_by_name():
    with pytest.raises(ValueError, match="stage=4"):
        zero_view(7.5e9, 64, 4)
    with pytest.raises(ValueError, match="world_size=0"):
        zero_view(7.5e9, 0, 1)
    with pytest.raises(ValueError, match="n_params=-1"):
        zero_view(-1, 8, 1)


@lesson11
def test_zero_widget_sweeps_every_control():
    w = zero_widget(draw=False)
    controls = dict(zip(("n_params", "world_size", "stage", "cluster_name"), w.children[:-1]))
    assert all(c.style.description_width == "initial" for c in controls.values())
    w.update()
    assert math.isclose(w.result["estimate"]["memory_gb"], 31.40625, rel_tol=1e-12)  # 4Ψ + 12Ψ/64 bytes
    last = math.inf
    for stage in [0, 1, 2, 3]:  # every stage keeps less than the one before
        controls["stage"].value = stage
        assert w.kwargs["stage"] == stage
        assert w.result["estimate"]["memory_total"] < last
        last = w.result["estimate"]["memory_total"]
    last = math.inf
    for p in DP_WORLD_SIZES:  # stage 3: memory per device falls as 1/N_d
        controls["world_size"].value = p
        assert math.isclose(w.result["estimate"]["memory_total"], 16 * 7.5e9 / p, rel_tol=1e-12)
        assert w.result["estimate"]["memory_total"] < last
        last = w.result["estimate"]["memory_total"]
    last = 0.0
    for label, n in controls["n_params"].options:
        controls["n_params"].value = n
        assert w.result["n_params"] == n and w.result["estimate"]["compute_s"] > last
        last = w.result["estimate"]["compute_s"]
    for name in CLUSTERS:
        controls["cluster_name"].value = name
        assert w.result["cluster"] == cluster(name).name


@lesson11
def test_seventy_b_needs_stage_3_on_a100s():
    # 70B parameters: 2Ψ = 140 GB of bf16 weights alone exceed an 80 GB A100, so stages 0-2
    # never fit; stage 3 needs 16Ψ / N_d <= 80 GB, N_d >= 14, i.e. 16 in the power-of-two sweep.
    fewest = []
    for s in range(4):
        ok = [r["world_size"] for r in zero_view(70e9, 1, s, "a100")["sweep"] if r["fits"]]
        fewest.append(min(ok) if ok else None)
    assert fewest == [None, None, None, 16]


@lesson11
@pytest.mark.parametrize("n, p, stage, name", [(MODEL_SIZES[0], 1, 0, "cpu-ethernet"), (MODEL_SIZES[-1], 1024, 3, "b200"),
                                               (70e9, 64, 2, "h100")])
def test_plot_zero_view_draws_memory_and_step_time(n, p, stage, name):
    view = zero_view(n, p, stage, name)
    fig = plot_zero_view(view)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax0, ax1 = fig.axes
    assert [t.get_text() for t in ax0.get_xticklabels()] == [f"stage {s}" for s in range(4)]
    # The step-time curve is the sweep's, over the slider's world sizes.
    step = ax1.lines[0]
    assert list(step.get_xdata()) == list(DP_WORLD_SIZES)
    assert list(step.get_ydata()) == [r["step_s"] for r in view["sweep"]]
    assert ax1.get_xlabel() == "data-parallel ranks N_d" and ax1.get_ylabel() == "step time (s)"
    # The legend sits right of the axes, where it covers no curve.
    assert ax1.get_legend().get_bbox_to_anchor().x0 > ax1.get_window_extent().x1 - 1
