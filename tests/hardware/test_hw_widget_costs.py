"""Lesson 09's serving widget and the cost functions behind it (knee batch, sweeps, training cost).

The widget is ``interactive`` over :func:`serving_view`, a pure function; these tests drive
its controls without a browser, sweeping each one over its whole range, and check every
result against the roofline and memory functions it is built from.

Tolerance policy (as in test_hw_costs.py): results that are compositions of tested
functions must agree exactly (the same arithmetic in the same order); published numbers
within the rounding of their source.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.hardware import get_device, list_devices
from minillm.hardware.inference import DEFAULT_BATCHES, decode_knee_batch, decode_step_time
from minillm.hardware.memory import memory_plan, min_devices
from minillm.hardware.serving import decode_batch_sweep, serving_summary, serving_view
from minillm.hardware.shapes import from_config, get_model, list_models, matmul_params, param_count
from minillm.hardware.training import SECONDS_PER_DAY, training_cost
from minillm.hardware.roofline import ridge_point
from minillm.hardware.widgets import DROPDOWN, WIDGET
from minillm.zoo import MODELS

pytestmark = pytest.mark.lesson09

TEACHER = from_config(MODELS["teacher"].config)

# The widget's controls, exactly as lessons/09_cost_models.ipynb builds them.
MODEL_OPTIONS = [("minillm teacher", TEACHER)] + [(name, name) for name in list_models()]
DEVICE_OPTIONS = list_devices()
BATCH_OPTIONS = [2**k for k in range(11)]  # 1 .. 1024
CONTEXT_OPTIONS = [2**k for k in range(7, 16)]  # 128 .. 32768


# --------------------------------------------------------------------------- decode knee


@pytest.mark.parametrize("device", ["h100", "a100", "tpu-v5e", "b200"])
def test_knee_with_an_empty_cache_is_the_ridge_point(device):
    # The scaling book, Part 7: with no KV cache a bf16 decode step turns compute-bound once
    # the batch reaches peak / bandwidth (the ridge point), whatever the model. Exact: ceil of it.
    for model in ("llama2-7b", "llama2-70b", TEACHER):
        assert decode_knee_batch(model, device, context=0) == math.ceil(ridge_point(device, "bf16"))


@settings(deadline=None, max_examples=25)
@given(
    model=st.sampled_from(list_models()),
    device=st.sampled_from(["h100", "a100", "h200", "tpu-v4", "tpu-v5p"]),
    context=st.integers(0, 8192),
)
def test_knee_is_the_first_compute_bound_batch(model, device, context):
    knee = decode_knee_batch(model, device, context)
    if knee is None:
        # Never compute-bound: not even at a million sequences.
        assert decode_step_time(model, device, context, batch=10**6).bound == "memory"
    else:
        assert decode_step_time(model, device, context, batch=knee).bound == "compute"
        if knee > 1:
            assert decode_step_time(model, device, context, batch=knee - 1).bound == "memory"


def test_long_contexts_without_gqa_never_turn_compute_bound():
    # Attention at decode does 4·L·H·Q FLOPs per cached token and reads 4·L·K·Q bytes of it
    # (bf16): H/K FLOP/byte. Llama-2-7B (K = H) stays far below the ridge at any batch; the
    # 70B model's 8x GQA still turns compute-bound at a short context.
    assert decode_knee_batch("llama2-7b", "h100", 1024) is None
    assert decode_knee_batch("llama2-70b", "h100", 1024) is not None


def test_knee_rejects_bad_input():
    with pytest.raises(ValueError, match="context"):
        decode_knee_batch("llama2-7b", "h100", -1)
    with pytest.raises(ValueError, match="fp32"):
        decode_knee_batch("llama2-7b", "tpu-v5e", 128, dtype="fp32")


# --------------------------------------------------------------------------- sweeps and training cost


def test_decode_sweep_rows_match_the_step_and_the_plan():
    rows = decode_batch_sweep("llama2-70b", "h100", 2048, n_devices=4)
    assert [r["batch"] for r in rows] == list(DEFAULT_BATCHES)
    for r in rows:
        step = decode_step_time("llama2-70b", "h100", 2048, batch=r["batch"], n_devices=4)
        plan = memory_plan("llama2-70b", "h100", r["batch"], 2048, n_devices=4)
        assert (r["step_s"], r["bound"], r["tokens_per_s"]) == (step.seconds, step.bound, step.tokens_per_s)
        assert r["memory_gb"] == plan.total / 1e9 and r["fits"] == plan.fits
    # Batching amortises the weights: throughput never falls as the batch grows.
    tps = [r["tokens_per_s"] for r in rows]
    assert all(a <= b for a, b in zip(tps, tps[1:]))


def test_training_cost_reproduces_llama2_70b_gpu_hours():
    # Touvron et al. 2023 (Llama 2), Table 1 and 2: 70B, 2.0T tokens, 1,720,320 A100-80GB hours at
    # 400 W. The paper states no MFU; 6ND at 43% of the 312 TFLOP/s bf16 peak (PaLM reached 46%,
    # Megatron's GPT-3 run 34%) gives the same hours to 1% (the hours imply 42.8%; "2.0T" is rounded).
    r = training_cost("llama2-70b", 2e12, "a100", n_devices=2048, mfu=0.43)
    assert r["device_hours"] == pytest.approx(1_720_320, rel=0.01)
    assert r["mwh"] == pytest.approx(r["device_hours"] * 400 / 1e6, rel=1e-12)  # exact: hours x watts
    assert r["days"] == pytest.approx(r["seconds"] / SECONDS_PER_DAY)
    assert r["flops"] == 6 * param_count("llama2-70b") * 2e12
    assert r["usd"] == pytest.approx(r["device_hours"] * get_device("a100").usd_per_hour)


def test_training_cost_of_the_teacher_and_missing_prices():
    tokens = MODELS["teacher"].steps * MODELS["teacher"].batch_size * MODELS["teacher"].config.block_size
    r = training_cost(TEACHER, tokens, "h100", 1, mfu=0.5)
    assert r["seconds"] == pytest.approx(6 * param_count(TEACHER) * tokens / (0.5 * get_device("h100").peak("bf16")))
    none = training_cost(TEACHER, tokens, "tpu-v5e", 1)  # no published TDP
    assert none["mwh"] is None and none["usd"] is not None
    with pytest.raises(ValueError, match="mfu"):
        training_cost(TEACHER, tokens, "h100", 1, mfu=40)


# --------------------------------------------------------------------------- the widget


def _check_view(view: dict, model, device: str, batch: int, context: int) -> None:
    s = view["summary"]
    shape = get_model(model) if isinstance(model, str) else model
    assert (s["model"], s["device"], s["batch"], s["context"]) == (shape.name, get_device(device).name, batch, context)
    # The point on the roofline is the decode step of the same job on the same devices.
    step = decode_step_time(shape, device, context, batch=batch, n_devices=s["n_devices"])
    assert s["step_s"] == step.seconds and s["bound"] == step.bound
    # Auto device count: the fewest that hold the job, and the job fits on them.
    assert s["n_devices"] == min_devices(shape, device, batch, context)
    assert s["fits"] and batch <= s["max_batch"]
    mem = view["memory_gb"]
    assert mem["weights"] + mem["kv_cache"] + mem["activations"] == pytest.approx(s["memory_gb"], rel=1e-12)
    assert mem["capacity"] == s["capacity_gb"] >= s["memory_gb"]
    assert [r["batch"] for r in view["sweep"]] == BATCH_OPTIONS
    knee = view["knee"]
    assert knee is None or decode_step_time(shape, device, context, batch=knee).bound == "compute"
    if s["usd_per_million"] is not None:
        assert s["usd_per_million"] > 0


def test_widget_sweeps_every_control_over_its_range():
    ipywidgets = pytest.importorskip("ipywidgets")
    from ipywidgets import Dropdown, SelectionSlider, interactive

    def view(model, device, batch, context):
        return serving_view(model, device, batch, context, batches=BATCH_OPTIONS)

    w = interactive(
        view,
        model=Dropdown(**DROPDOWN, options=MODEL_OPTIONS, value="llama2-7b"),
        device=Dropdown(**DROPDOWN, options=DEVICE_OPTIONS, value="h100-sxm"),
        batch=SelectionSlider(**WIDGET, options=BATCH_OPTIONS, value=8),
        context=SelectionSlider(**WIDGET, options=CONTEXT_OPTIONS, value=1024),
    )
    try:
        controls = {c.description: c for c in w.children[:-1]}
        assert set(controls) == {"model", "device", "batch", "context"}
        w.update()
        _check_view(w.result, **w.kwargs)
        for name, control in controls.items():
            start = control.value
            for _, value in control.options if name == "model" else [(None, v) for v in control.options]:
                w.result = None  # a callback that raised would leave the old result behind
                control.value = value  # fires the callback synchronously
                assert w.result is not None, f"{name}={value!r} raised in the widget callback"
                assert w.kwargs[name] == value
                _check_view(w.result, **w.kwargs)
            control.value = start
        # Throughput at the widget's default point grows with the batch, up to the roofline.
        tps = [r["tokens_per_s"] for r in w.result["sweep"]]
        assert all(a <= b for a, b in zip(tps, tps[1:]))
    finally:
        ipywidgets.Widget.close_all()


def test_widget_point_matches_serving_summary():
    # serving_view adds the sweep and the memory split; its summary is serving_summary itself.
    v = serving_view("llama2-70b", "h100", 8, 2048)
    assert v["summary"] == serving_summary("llama2-70b", "h100", 8, 2048)
    assert v["summary"]["bound"] == "memory" and v["summary"]["n_devices"] == 2
    assert v["memory_gb"]["weights"] == param_count("llama2-70b") * 2 / 1e9
    assert matmul_params("llama2-70b") < param_count("llama2-70b")
