"""The pure functions behind lessons 07 and 08's widgets, and the widgets themselves driven without a browser.

Each widget is rebuilt here as the lesson builds it (``interactive`` over a show function that
calls a pure minillm function and a plotting function) and every control is swept over its
range: executing a notebook runs each callback only once. "This machine" is a fixed DeviceSpec
here, so no test measures anything.
"""

import math
import pathlib
import re

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ipywidgets import Dropdown, IntSlider, SelectionSlider, ToggleButtons, Widget, interactive  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minillm.hardware import DeviceSpec, get_device, list_devices  # noqa: E402
from minillm.hardware.economics import catalog_costs  # noqa: E402
from minillm.hardware.inference import decode_step_time, prefill_time  # noqa: E402
from minillm.hardware.shapes import ModelShape, get_model  # noqa: E402
from minillm.hardware.devices import compute_units  # noqa: E402
from minillm.hardware.plots import plot_costs, plot_systolic_frame, plot_workload  # noqa: E402
from minillm.units import format_seconds
from minillm.hardware.roofline import attainable_flops, ridge_point  # noqa: E402
from minillm.hardware.serving import workload_point  # noqa: E402
from minillm.hardware.widgets import DROPDOWN, WIDGET  # noqa: E402
from minillm.hardware.systolic import DATAFLOWS, systolic_cycles, systolic_demo  # noqa: E402

TEACHER = ModelShape(n_layer=6, d_model=128, n_head=4, vocab_size=512, n_positions=256, name="teacher")
#: A stand-in for the measured machine: one core at 80 GFLOP/s fp32 and 20 GB/s.
ROOT = pathlib.Path(__file__).resolve().parents[2]
THIS_MACHINE = DeviceSpec("this machine (1 core)", "cpu", {"fp32": 8e10, "int8": 2e9}, 16e9, 2e10, None, None)


@pytest.fixture(autouse=True)
def _close_widgets():
    yield
    Widget.close_all()


def _assert_drawn(fig) -> None:
    """A Figure with something plotted on it (lines, images, bars or markers) and labelled axes."""
    assert isinstance(fig, Figure) and fig.axes
    assert any(ax.lines or ax.images or ax.patches or ax.collections for ax in fig.axes), "nothing drawn"
    assert any(ax.get_xlabel() or ax.get_title() for ax in fig.axes), "no axis label or title"


def _sweep(w: interactive, check, draw) -> int:
    """Set every control of ``w`` to each of its values in turn (the others at their defaults) and call
    ``check(w)``; at each control's first and last value also draw ``draw(w.result)``, which must give
    a Figure. (The show functions here return data and leave drawing to ``draw``: a figure takes
    ~0.3 s on a busy 2-core machine, so drawing at every value would make the sweep slow.)"""
    n = 0
    for control in w.children[:-1]:
        default = control.value
        if isinstance(control, IntSlider):
            values = list(range(control.min, control.max + 1))
        else:  # Dropdown, ToggleButtons, SelectionSlider
            values = list(control.options)
        for i, v in enumerate(values):
            control.value = v
            check(w)
            if i in (0, len(values) - 1):
                _assert_drawn(draw(w.result))
            n += 1
        control.value = default
    return n


# --------------------------------------------------------------------------- compute units (lessons 07, 08)


@pytest.mark.lesson07
@pytest.mark.lesson08
def test_compute_units_reproduce_the_catalog_peaks():
    # units x lanes x 2 x clock against the catalog's dense peak. Tolerance 1%: NVIDIA quotes
    # rounded figures (67 TF for 66.9) and some clocks are derived.
    rows = compute_units()
    assert {u.style for u in rows} == {"SIMD", "SIMT", "matrix", "systolic", "dataflow"}
    for u in rows:
        assert u.peak == pytest.approx(get_device(u.device).peak(u.dtype), rel=0.01), (u.device, u.dtype)
        assert u.lanes == u.units * u.lanes_per_unit
        assert u.peak == pytest.approx(u.units * u.peak_per_unit) == pytest.approx(u.lanes * u.peak_per_lane)


@pytest.mark.lesson07
def test_compute_units_worked_numbers():
    # H100 SXM5 whitepaper: 132 SMs x 128 FP32 cores = 16,896; a Xeon 8480 core is 2 AVX-512 FMA x 16 lanes.
    lane = compute_units("H100", "fp32")[0]
    core = compute_units("xeon-8480", "fp32")[0]
    assert lane.lanes == 16_896 and core.lanes_per_unit == 32
    assert core.peak_per_unit / lane.peak_per_lane == pytest.approx(32.3, rel=0.01)  # one student = 32 pupils
    assert core.bandwidth_per_unit() == pytest.approx(get_device("xeon-8480").mem_bw / 56)


@pytest.mark.lesson08
def test_compute_units_errors():
    with pytest.raises(ValueError, match="groq-lpu"):
        compute_units("groq")
    with pytest.raises(ValueError, match="unknown device"):
        compute_units("no-such-chip")
    with pytest.raises(ValueError, match="dtype='fp32'"):
        compute_units("tpu-v5e", "fp32")  # a device with a breakdown, but not for this dtype


# --------------------------------------------------------------------------- workload_point (lesson 07)


@pytest.mark.lesson07
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_workload_point_matches_the_cost_model(phase):
    # Reference: costs.decode_step_time / prefill_time on one device (the same roofline bound).
    p = workload_point("llama2-7b", "h100", batch=8, context=512, phase=phase, n_devices=1)
    fn = decode_step_time if phase == "decode" else prefill_time
    ref = fn("llama2-7b", "h100", 512, batch=8)
    assert p["step_s"] == ref.seconds and p["bound"] == ref.bound
    assert p["intensity"] == pytest.approx(ref.flops / ref.nbytes, rel=1e-12)
    assert p["ridge"] == ridge_point("h100", "bf16")
    # On the roof: the step's FLOPs over its time is the attainable rate at its intensity (1e-9: float rounding).
    assert p["flops"] / p["step_s"] == pytest.approx(p["attainable_flops"], rel=1e-9)
    assert p["attainable_flops"] == attainable_flops("h100", p["intensity"], "bf16")
    assert p["op"].intensity == pytest.approx(p["intensity"], rel=1e-12)


@pytest.mark.lesson07
def test_workload_point_devices_split_time_not_intensity():
    one = workload_point("llama3-70b", "h100", 16, 2048, n_devices=1)
    four = workload_point("llama3-70b", "h100", 16, 2048, n_devices=4)
    assert four["intensity"] == pytest.approx(one["intensity"], rel=1e-12)
    assert four["step_s"] == pytest.approx(one["step_s"] / 4, rel=1e-12)  # ideal split, communication ignored
    auto = workload_point("llama3-70b", "h100", 16, 2048)
    assert auto["n_devices"] >= 2 and auto["fits"]  # 140 GB of bf16 weights need two 80 GB H100s at least
    assert not one["fits"]


@pytest.mark.lesson07
def test_workload_point_decode_is_memory_bound_at_batch_one():
    # Issue 6's property, through the widget's function: every GPU, batch 1.
    for name in list_devices("gpu"):
        assert workload_point("llama2-7b", name, 1, 1024)["bound"] == "memory", name


@pytest.mark.lesson07
@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(phase="train"), "phase"),
        (dict(batch=0), "batch"),
        (dict(context=-1), "context"),
        (dict(dtype="fp8", device="tpu-v5e"), "fp8"),
        (dict(n_devices=0), "n_devices"),
    ],
)
def test_workload_point_bad_input(kwargs, word):
    args = dict(model="llama2-7b", device="h100", batch=1, context=128) | kwargs
    with pytest.raises(ValueError, match=word):
        workload_point(**args)


@pytest.mark.lesson07
def test_format_seconds():
    assert [format_seconds(s) for s in (3.2e-3, 41e-6, 2.5, 7200.0, 5e-10)] == ["3.2 ms", "41 µs", "2.5 s", "2 h", "0.5 ns"]


# --------------------------------------------------------------------------- the lesson 07 widget


def _roofline_widget():
    """Lesson 07's widget: device x model x phase x batch x context -> a point on the roofline."""
    devices = {"this machine (1 core, measured)": (THIS_MACHINE, "fp32")} | {n: (get_device(n), None) for n in list_devices()}
    models = {"teacher": TEACHER} | {n: get_model(n) for n in ("gpt2-124m", "llama2-7b", "llama3-8b", "llama2-70b", "llama3-70b")}
    batches = [2**k for k in range(11)]

    def show(device="h100-sxm", model="llama2-7b", phase="decode", batch=1, context=1024):
        spec, dtype = devices[device]
        point = workload_point(models[model], spec, batch, context, phase, dtype)
        point["sweep"] = [workload_point(models[model], spec, b, context, phase, dtype) for b in batches]
        return point  # the lesson draws plot_workload(point, sweep) here

    return interactive(
        show,
        device=Dropdown(**DROPDOWN, options=list(devices), value="h100-sxm"),
        model=Dropdown(**DROPDOWN, options=list(models), value="llama2-7b"),
        phase=ToggleButtons(**WIDGET, options=["decode", "prefill"]),
        batch=SelectionSlider(**WIDGET, options=batches, value=1),
        context=SelectionSlider(**WIDGET, options=[128, 256, 512, 1024, 2048, 4096, 8192, 32768], value=1024),
    )


@pytest.mark.lesson07
def test_roofline_widget_sweeps_every_control():
    w = _roofline_widget()
    w.update()
    assert w.result["device"] == "h100-sxm" and w.result["bound"] == "memory"

    def check(w):
        p, kw = w.result, w.kwargs
        assert p["batch"] == kw["batch"] and p["context"] == kw["context"] and p["phase"] == kw["phase"]
        assert math.isfinite(p["step_s"]) and p["step_s"] > 0 and p["intensity"] > 0
        assert p["attainable_flops"] <= p["spec"].peak(p["dtype"]) * (1 + 1e-12)
        assert p["bound"] == ("compute" if p["intensity"] >= p["ridge"] else "memory")
        assert p["fits"]  # n_devices defaults to enough devices to hold the job

    assert _sweep(w, check, lambda p: plot_workload(p, p["sweep"])) == len(list_devices()) + 1 + 6 + 2 + 11 + 8


@pytest.mark.lesson07
def test_roofline_widget_batch_raises_intensity():
    # Issue 6's property through the widget: a bigger batch never lowers a decode step's intensity.
    w = _roofline_widget()
    batch = w.children[3]
    seen = []
    for b in batch.options:
        batch.value = b
        seen.append(w.result["intensity"])
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    w.children[0].value = "this machine (1 core, measured)"
    assert w.result["dtype"] == "fp32" and w.result["device"] == "this machine (1 core)"


# --------------------------------------------------------------------------- systolic_demo and its widget (lesson 08)


@pytest.mark.lesson08
@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_systolic_demo_is_exact_and_seeded(dataflow):
    d = systolic_demo(M=5, K=3, N=6, rows=4, cols=4, dataflow=dataflow, seed=3, cycle=10**6)
    np.testing.assert_array_equal(d["C"], d["A"] @ d["B"])  # integers: exact
    assert d["exact"] and d["cycles"] == d["closed_form"] == systolic_cycles(5, 3, 6, 4, 4, dataflow)
    assert len(d["frames"]) == d["cycles"] and d["cycle"] == d["cycles"] - 1  # clamped to the last cycle
    assert d["frame"] is d["frames"][-1]
    assert d["A"].min() >= 1 and d["A"].max() <= 4
    again = systolic_demo(M=5, K=3, N=6, rows=4, cols=4, dataflow=dataflow, seed=3)
    np.testing.assert_array_equal(again["A"], d["A"])
    # Every useful MAC shows up in exactly one frame.
    assert sum(int(f.active.sum()) for f in d["frames"]) == 5 * 3 * 6


@pytest.mark.lesson08
def test_systolic_demo_bad_input():
    for kwargs, word in [(dict(M=0), "M"), (dict(cycle=-1), "cycle"), (dict(dataflow="xs"), "dataflow"), (dict(seed=-2), "seed")]:
        with pytest.raises(ValueError, match=word):
            systolic_demo(**kwargs)


@pytest.mark.lesson08
def test_systolic_widget_sweeps_every_control():
    def show(dataflow="ws", M=5, cycle=6):
        return systolic_demo(M=M, K=4, N=4, rows=4, cols=4, dataflow=dataflow, seed=0, cycle=cycle)

    w = interactive(show, dataflow=ToggleButtons(**WIDGET, options=list(DATAFLOWS)), M=IntSlider(**WIDGET, value=5, min=1, max=8),
                    cycle=IntSlider(**WIDGET, value=6, min=0, max=systolic_cycles(8, 4, 4, 4, 4, "os") - 1))
    w.update()

    def check(w):
        d, kw = w.result, w.kwargs
        assert d["exact"] and d["cycles"] == systolic_cycles(kw["M"], 4, 4, 4, 4, kw["dataflow"])
        assert d["cycle"] == min(kw["cycle"], d["cycles"] - 1) and d["frame"].cycle == d["cycle"]

    assert _sweep(w, check, lambda d: plot_systolic_frame(d["frame"], d["roles"])) == 3 + 8 + w.children[2].max + 1
    # The slider's range covers the longest run the widget can make.
    assert max(systolic_cycles(8, 4, 4, 4, 4, df) for df in DATAFLOWS) == w.children[2].max + 1


# --------------------------------------------------------------------------- the lesson 08 cost widget


@pytest.mark.lesson08
def test_cost_widget_sweeps_every_control():
    models = {"teacher": TEACHER} | {n: get_model(n) for n in ("gpt2-124m", "llama2-7b", "llama3-8b", "llama3-70b")}
    metrics = ["usd_per_million", "kwh_per_million", "seconds_per_million"]

    def show(model="llama2-7b", batch=1, context=1024, metric="usd_per_million"):
        return catalog_costs(models[model], batch=batch, context=context), metric

    w = interactive(show, model=Dropdown(**DROPDOWN, options=list(models), value="llama2-7b"),
                    batch=SelectionSlider(**WIDGET, options=[2**k for k in range(10)], value=1),
                    context=SelectionSlider(**WIDGET, options=[256, 1024, 4096, 16384], value=1024), metric=ToggleButtons(**WIDGET, options=metrics))
    w.update()

    def check(w):
        (rows, metric), kw = w.result, w.kwargs
        assert metric == kw["metric"] and [r["device"] for r in rows] == list_devices()
        for r in rows:
            assert r["batch"] == kw["batch"] and r["context"] == kw["context"]
            assert r["seconds_per_million"] > 0
            # Prices are illustrative catalog entries; a device without one shows None, never a made-up number.
            assert (r["usd_per_million"] is None) == (get_device(r["device"]).usd_per_hour is None)

    assert _sweep(w, check, lambda result: plot_costs(result[0], key=result[1])) == 5 + 10 + 4 + 3


# --------------------------------------------------------------------------- one layout for every widget


CONTROLS = re.compile(r"\b(Dropdown|SelectionSlider|IntSlider|ToggleButtons|FloatSlider|Checkbox)\(([^()]*)")


@pytest.mark.parametrize("lesson", ["07_roofline", "08_hardware", "09_cost_models"])
def test_every_control_in_the_lesson_uses_the_shared_layout(lesson):
    # Lessons 07-09 build their widgets in notebook cells; a control built without the shared
    # style shows its description cut off ("cluster_na…") in JupyterLab.
    nb = nbformat.read(ROOT / "lessons" / f"{lesson}.ipynb", as_version=4)
    calls = [m.groups() for c in nb.cells if c.cell_type == "code" for m in CONTROLS.finditer(c.source)]
    assert calls, f"no widget controls found in lesson {lesson}"
    for kind, args in calls:
        wanted = {"Dropdown": "**DROPDOWN", "ToggleButtons": "**TOGGLE"}.get(kind, "**WIDGET")
        assert wanted in args, f"{lesson}: {kind}({args[:40]}...) lacks {wanted}"


def test_toggle_buttons_are_as_wide_as_their_longest_label():
    from minillm.hardware.widgets import TOGGLE

    t = ToggleButtons(**TOGGLE, options=["usd_per_million", "seconds_per_million"])
    assert t.style.button_width == "max-content"  # ipywidgets' 148 px default cuts the second label off


def test_shared_layout_gives_full_width_descriptions():
    w = interactive(lambda device="h100-sxm", context=1024: None,
                    device=Dropdown(**DROPDOWN, options=["h100-sxm", "this machine (1 core, measured)"]),
                    context=SelectionSlider(**WIDGET, options=[128, 1024], value=1024))
    for control in w.children[:-1]:
        assert control.style.description_width == "initial", control.description
    assert w.children[0].layout.width == "max-content"
