"""The capstone's glue (lesson 15): serving fleets, training budgets, the small-scale proof, budgets.

References are closed forms written out here from the architecture and the spec sheet
(Llama-2-7B's matrices, the H100's 989.4 TFLOP/s and 3.35 TB/s), brute-force searches and
a one-device torch.optim.AdamW run. Tolerances: 1e-12 relative for the float64 closed
forms (a few products and quotients); 1e-5 absolute for the fp32 training comparison
(gradients summed in another order, then two AdamW steps, as in tests/parallel/test_three_d.py).
"""

import math

import pytest

from minillm.capstone import (
    SERVING_BATCHES,
    ServingLoad,
    best_batch,
    budget_verdict,
    fleet_option,
    prove_layout,
    rank_serving,
    replica,
    small_layout,
    training_budget,
)

pytestmark = pytest.mark.lesson15

# Llama-2-7B by hand: 32 blocks of 4 attention and 3 gated-MLP matrices and two RMSNorms, a
# final norm, and the untied output layer (the input embedding is a lookup: no FLOPs).
N_7B = 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096 + 32000 * 4096
H100_PEAK, H100_BW, H100_PRICE = 989.4e12, 3.35e12, 3.0
LOAD = ServingLoad(requests_per_s=20, prompt_len=1024, gen_len=256, tpot_s=0.05)


def test_replica_matches_the_roofline_by_hand():
    P, G, b = 1024, 256, 8
    r = replica("llama2-7b", "h100-sxm", b, P, G)
    assert r["n_devices"] == 1  # 13.5 GB of bf16 weights + 8 x 0.7 GB of cache in 85.9 GB
    kv_per_token = 2 * 32 * 32 * 128 * 2  # K and V, 32 layers, 32 heads of 128, bf16
    ctx = P + G // 2
    dec = max(b * (2 * N_7B + 4 * 32 * 32 * 128 * ctx) / H100_PEAK, (2 * N_7B + b * ctx * kv_per_token) / H100_BW)
    pre = max(P * (2 * N_7B + 4 * 32 * 32 * 128 * P) / H100_PEAK, (2 * N_7B + P * kv_per_token) / H100_BW)
    assert r["decode_s"] == pytest.approx(dec, rel=1e-12)
    assert r["prefill_s"] == pytest.approx(pre, rel=1e-12)
    assert r["cycle_s"] == pytest.approx(b * pre + G * dec, rel=1e-12)
    assert r["requests_per_s"] == pytest.approx(b / (b * pre + G * dec), rel=1e-12)
    assert r["bound"] == "memory"


def test_a_replica_grows_when_the_cache_outgrows_one_device():
    # 70B in bf16 (about 138 GB) needs two 80 GiB H100s; a batch of 256 x 16k tokens needs more.
    assert replica("llama2-70b", "h100-sxm", 1, 128, 128)["n_devices"] == 2
    assert replica("llama2-70b", "h100-sxm", 256, 16384, 128)["n_devices"] > 2


def test_fleet_rounds_up_to_whole_replicas_and_prices_generated_tokens():
    opt = fleet_option("llama2-7b", "h100-sxm", LOAD, 32)
    per_replica = opt["requests_per_s"]
    assert opt["replicas"] == math.ceil(20 / per_replica)
    assert (opt["replicas"] - 1) * per_replica < 20 <= opt["replicas"] * per_replica
    usd = opt["devices"] * H100_PRICE / 3600 / (20 * 256) * 1e6
    assert opt["usd_per_million"] == pytest.approx(usd, rel=1e-12)
    # A load that exactly fills the replicas costs less per token than one just above it.
    exact = ServingLoad(requests_per_s=per_replica * 2, prompt_len=1024, gen_len=256, tpot_s=0.05)
    above = ServingLoad(requests_per_s=per_replica * 2 * 1.01, prompt_len=1024, gen_len=256, tpot_s=0.05)
    assert fleet_option("llama2-7b", "h100-sxm", above, 32)["usd_per_million"] > \
        fleet_option("llama2-7b", "h100-sxm", exact, 32)["usd_per_million"] * 1.3


def test_best_batch_is_the_brute_force_minimum_that_meets_the_target():
    for dev in ("h100-sxm", "a100-80gb-sxm", "tpu-v5e"):
        opts = [fleet_option("llama2-7b", dev, LOAD, b) for b in SERVING_BATCHES]
        ok = [o for o in opts if o["decode_s"] <= LOAD.tpot_s]
        best = best_batch("llama2-7b", dev, LOAD)
        assert best["usd_per_million"] == min(o["usd_per_million"] for o in ok)
        assert best["decode_s"] <= LOAD.tpot_s
    # The TPOT target binds: below the time to read the weights once (2N bytes / bandwidth) no
    # batch meets it; a tighter target than LOAD's picks a smaller batch.
    weights_s = 2 * N_7B / H100_BW
    below = ServingLoad(requests_per_s=20, prompt_len=1024, gen_len=256, tpot_s=0.999 * weights_s)
    assert best_batch("llama2-7b", "h100-sxm", below) is None
    tight = ServingLoad(requests_per_s=20, prompt_len=1024, gen_len=256, tpot_s=1.5 * weights_s)
    assert best_batch("llama2-7b", "h100-sxm", tight)["batch"] < best_batch("llama2-7b", "h100-sxm", LOAD)["batch"]
    assert best_batch("llama2-7b", "groq-lpu", LOAD) is None  # no catalog price: no cheapest option


def test_rank_serving_is_sorted_and_leaves_out_unpriced_devices():
    rows = rank_serving("llama2-7b", LOAD)
    costs = [r["usd_per_million"] for r in rows]
    assert costs == sorted(costs)
    names = {r["device"] for r in rows}
    assert "groq-lpu" not in names and "alveo-u280" not in names  # no catalog price
    assert {"h100-sxm", "a100-80gb-sxm", "b200"} <= names
    assert all(r["meets_tpot"] for r in rows)


def test_training_budget_by_hand():
    tps = 6.0e5
    out = training_budget("llama2-7b", 1e12, "h100-sxm", 64, tps, mfu=0.4)
    assert out["days"] == pytest.approx(1e12 / tps / 86400, rel=1e-12)
    assert out["usd"] == pytest.approx(1e12 / tps / 3600 * 64 * H100_PRICE, rel=1e-12)
    assert out["gpu_hours"] == pytest.approx(1e12 / tps / 3600 * 64, rel=1e-12)
    n_all = N_7B + 32000 * 4096  # + the untied input embedding; rotary Llama has no position table
    assert out["days_6nd"] == pytest.approx(6 * n_all * 1e12 / (64 * 0.4 * H100_PEAK) / 86400, rel=1e-12)
    with pytest.raises(ValueError, match="tokens_per_s"):
        training_budget("llama2-7b", 1e12, "h100-sxm", 64, 0)


#: The devices and batches of the exercise's Task 3 cell (solutions/15_capstone.ipynb).
BRIEF_DEVICES = ("a100-80gb-sxm", "h100-sxm", "h200-sxm", "b200", "tpu-v5e", "tpu-v5p", "tpu-v6e")
BRIEF_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def test_the_figures_lesson_15_states_in_prose():
    """Lesson 15's lesson and exercise state these in their prose; a catalog or model change must update both."""
    # exercise, Task 1's answer: batch 1 about 1 request/s at about 4 ms a step; batch 32 about 2.4x the step, > 10x the requests
    one, many = replica("llama2-7b", "h100-sxm", 1, 1024, 256), replica("llama2-7b", "h100-sxm", 32, 1024, 256)
    assert 13e-3 < one["prefill_s"] < 15e-3 and 3.5e-3 < one["decode_s"] < 4.5e-3 and 0.8 < one["requests_per_s"] < 1.2
    assert 2.2 < many["decode_s"] / one["decode_s"] < 2.6 and many["requests_per_s"] > 10 * one["requests_per_s"]
    # exercise, Task 3's answer: the tighter target changes the batch, not the device, and doubles the cost
    loose = rank_serving("llama2-7b", LOAD, BRIEF_DEVICES, BRIEF_BATCHES)[0]
    tight = rank_serving("llama2-7b", ServingLoad(20, 1024, 256, 0.003), BRIEF_DEVICES, BRIEF_BATCHES)[0]
    assert (loose["device"], loose["batch"], loose["replicas"]) == ("b200", 32, 1)
    assert (tight["device"], tight["batch"], tight["replicas"]) == ("b200", 8, 2)
    assert tight["usd_per_million"] / loose["usd_per_million"] == pytest.approx(2.0, rel=0.01)
    # lesson, Part 3's answer: 6ND at 40% MFU is about 18 days; attention adds about 15% to 6N at 4,096 tokens
    assert 6 * 6.7e9 * 1e12 / (64 * 989e12 * 0.4) / 86400 == pytest.approx(18.4, abs=0.1)
    assert 12 * 32 * 4096 * 4096 / (6 * N_7B) == pytest.approx(0.15, abs=0.02)


def test_small_layout_keeps_every_axis_in_use():
    assert small_layout(32, 2, 1) == (2, 2, 1)
    assert small_layout(8, 8, 16) == (2, 2, 2)
    assert small_layout(1, 1, 1) == (1, 1, 1)
    assert small_layout(4, 1, 3, cap=3) == (3, 1, 3)
    with pytest.raises(ValueError, match="dp"):
        small_layout(0, 2, 2)


@pytest.mark.parametrize("layout", [(2, 2, 2), (2, 1, 2)])
def test_prove_layout_equals_one_device(layout):
    out = prove_layout(*layout)
    assert out["ranks"] == math.prod(layout)
    assert out["max_abs_diff"] < 1e-5
    assert out["losses"] == pytest.approx(out["ref_losses"], rel=1e-5)
    assert out["losses"][1] != out["losses"][0]  # it trained
    assert len(out["peak_bytes"]) == out["ranks"] and min(out["peak_bytes"]) > 0
    assert out["makespan_s"] > 0


def test_budget_verdict():
    ref = {"bytes": 4_000_000, "latency_ms": 20.0, "val_loss": 1.50, "recall": 0.9}
    got = {"bytes": 1_000_000, "latency_ms": 10.0, "val_loss": 1.56, "recall": 0.85}
    v = budget_verdict(got, ref, max_bytes=1e6, max_latency_ms=12, max_loss_increase=0.05)
    assert v["all"] and v["smaller"] == 4 and v["faster"] == 2
    assert v["loss_increase"] == pytest.approx(0.04, rel=1e-12) and v["recall_change"] == pytest.approx(-0.05, rel=1e-12)
    v = budget_verdict(got, ref, max_bytes=1e6, max_latency_ms=12, max_loss_increase=0.03)
    assert not v["all"] and not v["quality"] and v["size"] and v["latency"]
    v = budget_verdict({**got, "recall": None}, ref, max_bytes=9e5, max_latency_ms=9, max_loss_increase=0.05)
    assert not v["size"] and not v["latency"] and v["recall_change"] is None


def test_serving_widget_sweeps_its_controls_and_the_figure_draws_the_ranking():
    from ipywidgets import Widget

    from minillm.capstone import plot_serving, serving_summary, serving_view, serving_widget

    w = serving_widget(draw=False)
    try:
        tpot = w.children[4]
        counts = []
        for value in tpot.options:  # a tighter target can only remove options
            tpot.value = value
            counts.append(len(w.result["rows"]))
            assert all(r["decode_s"] <= value / 1e3 for r in w.result["rows"])
        assert counts == sorted(counts) and counts[0] < counts[-1]
    finally:
        Widget.close_all()
    view = serving_view()
    fig = plot_serving(view)
    ax_cost = fig.axes[0]
    widths = sorted(p.get_width() for p in ax_cost.patches)
    assert widths == pytest.approx(sorted(r["usd_per_million"] for r in view["rows"]), rel=1e-12)
    assert serving_summary(view).splitlines()[2].startswith(view["rows"][0]["device"])
