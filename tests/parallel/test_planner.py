"""The 3D planner: closed-form cases, the simulator within 10%, and published runs."""

import pytest
import torch

from minillm.hardware.shapes import ModelShape, from_config, param_count
from minillm.model import GPT, GPTConfig
from minillm.parallel import ClusterSpec, ProcessGrid, run
from minillm.parallel.data_parallel import saved_activation_bytes
from minillm.parallel.planner import KORTHIKANTI_16BIT, MINILLM_FP32, divisors, plan, plans_table, predict
from minillm.parallel.planner_runs import PUBLISHED_RUNS, calibrate_mfu, published_comparison
from minillm.parallel.tensor_parallel import tensor_parallel_gpt
from minillm.parallel.three_d import train_3d

pytestmark = pytest.mark.lesson14

# A toy cluster where compute, links and memory all show for a tiny GPT (no latency: the
# planner prices bucketed collectives, while minillm's DP all-reduces each tensor apart).
TOY = ClusterSpec(name="toy", peak_flops=1e9, mem_bw=1e10, mem_bytes=1e9, link_bw=2e8, latency=0.0)
CFG = GPTConfig(vocab_size=32, block_size=32, n_layer=4, n_head=4, n_embd=64)


def test_one_replica_by_hand():
    """dp = 2, no TP or PP, fp32: every term written out."""
    shape = ModelShape(2, 64, 4, 32, n_positions=32)
    P = param_count(shape)
    p = predict(shape, TOY, dp=2, tp=1, pp=1, micro_batch=2, global_batch=8, seq_len=32, dtype="fp32", mfu=1.0,
                latency=0.0, activations=MINILLM_FP32)
    assert p.params_per_device == P
    assert p.memory_terms["parameters"] == p.memory_terms["gradients"] == 4 * P
    assert p.memory_terms["optimizer"] == 8 * P  # m and v in fp32, no master copy
    s, b, h, a, L = 32, 2, 64, 4, 2
    assert p.memory_terms["activations"] == pytest.approx(L * (s * b * h * (16 + 64) + 4 * a * s * s * b))
    n_micro = 8 // 2 // 2
    layer_mm = 12 * h * h + 9 * h  # c_attn 3h²+3h, c_proj h²+h, c_fc 4h²+4h, c_proj 4h²+h
    flops = 8 * s * (6 * (L * layer_mm + 32 * h) + L * 12 * h * s)  # 6N + 12·L·h·s per token
    assert p.time_terms["compute"] == pytest.approx(flops / 2 / 1e9)
    assert p.time_terms["dp_comm"] == pytest.approx(2 * (2 - 1) / 2 * 4 * P / 2e8)  # ring all-reduce of fp32 grads
    assert p.time_terms["optimizer"] == pytest.approx(7 * 4 * P / 1e10)
    assert p.time_terms["bubble"] == p.time_terms["tp_comm"] == p.time_terms["pp_comm"] == 0
    assert p.step_time == pytest.approx(sum(p.time_terms.values()))
    assert p.tokens_per_s == pytest.approx(8 * 32 / p.step_time)
    assert p.n_micro == n_micro


def test_bubble_and_in_flight_follow_the_pipeline_formulas():
    # tiny vocabulary, free links: equal stages, so the bubble is (p - 1) / (m + p - 1)
    shape = ModelShape(8, 256, 4, 4, n_positions=0)
    for pp, m in [(2, 4), (4, 4), (4, 16), (8, 8)]:
        p = predict(shape, "a100", dp=1, tp=1, pp=pp, micro_batch=1, global_batch=m, seq_len=64,
                    intra_node_bw=1e30, inter_node_bw=1e30, latency=0.0)
        assert p.bubble_fraction == pytest.approx((pp - 1) / (m + pp - 1), rel=0.02)
        assert p.in_flight == min(pp, m)
        g = predict(shape, "a100", dp=1, tp=1, pp=pp, micro_batch=1, global_batch=m, seq_len=64, schedule="gpipe",
                    intra_node_bw=1e30, inter_node_bw=1e30, latency=0.0)
        assert g.in_flight == m and g.step_time == pytest.approx(p.step_time)
        assert g.memory_terms["activations"] == pytest.approx(p.memory_terms["activations"] * m / min(pp, m))


def test_zero1_and_recompute_change_exactly_their_terms():
    kw = dict(dp=8, tp=2, pp=2, micro_batch=1, global_batch=64, seq_len=2048)
    base = predict("llama2-7b", "h100", **kw)
    z1 = predict("llama2-7b", "h100", zero_stage=1, **kw)
    assert z1.memory_terms["optimizer"] == pytest.approx(base.memory_terms["optimizer"] / 8)
    assert base.memory_terms["optimizer"] == pytest.approx(12 * base.params_per_device)  # mixed precision
    sel = predict("llama2-7b", "h100", recompute="selective", **kw)
    full = predict("llama2-7b", "h100", recompute="full", **kw)
    assert full.memory_terms["activations"] < sel.memory_terms["activations"] < base.memory_terms["activations"]
    assert base.time_terms["compute"] < sel.time_terms["compute"] < full.time_terms["compute"]
    # Korthikanti: selective drops the 5as²b/t term; full keeps 2sbh per layer (+ one layer's set)
    s, b, h, a, t = 2048, 1, 4096, 32, 2
    per = KORTHIKANTI_16BIT.per_layer(s, b, h, a, t, "none")
    assert per == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))
    assert KORTHIKANTI_16BIT.per_layer(s, b, h, a, t, "selective") == pytest.approx(s * b * h * (10 + 24 / t))


def test_minillm_activation_constants_are_what_autograd_saves():
    """MINILLM_FP32 against a fresh measurement of minillm's TP blocks at t = 1 and 2 (within 3%)."""
    for L, h, a, s, b in [(2, 64, 4, 32, 2), (1, 128, 8, 16, 3)]:
        cfg = GPTConfig(vocab_size=64, block_size=s, n_layer=L, n_head=a, n_embd=h)
        torch.manual_seed(0)
        model = GPT(cfg)
        x = torch.randint(0, 64, (b, s))
        for tp in (1, 2):
            def rank(comm):
                shard = tensor_parallel_gpt(model, comm)
                act = model.wte(x).detach()
                with saved_activation_bytes(shard.parameters()) as saved:
                    for block in shard.h:
                        act = block(act)
                return saved[0]

            measured = run(rank, tp).results[0]
            assert L * MINILLM_FP32.per_layer(s, b, h, a, tp, "none") == pytest.approx(measured, rel=0.03)


@pytest.mark.parametrize("dp,tp,pp,b,zero", [(2, 2, 2, 2, 0), (1, 2, 4, 1, 0), (2, 1, 2, 2, 1), (2, 2, 1, 2, 1)])
def test_planner_agrees_with_the_simulator_within_10_percent(dp, tp, pp, b, zero):
    torch.manual_seed(0)
    model = GPT(CFG)
    g = torch.Generator().manual_seed(1)
    B = 8
    batch = [(torch.randint(0, 32, (B, 32), generator=g), torch.randint(0, 32, (B, 32), generator=g))]

    def rank(comm):
        grid = ProcessGrid(comm, tp=tp, pp=pp)
        train_3d(model, comm, grid, batch, steps=1, zero_stage=zero, n_micro=B // (dp * b), lr=1e-3)

    res = run(rank, dp * tp * pp, cluster=TOY)
    p = predict(from_config(CFG), TOY, dp=dp, tp=tp, pp=pp, micro_batch=b, global_batch=B, seq_len=32,
                zero_stage=zero, dtype="fp32", mfu=1.0, latency=0.0, activations=MINILLM_FP32, gpus_per_node=64)
    assert p.step_time == pytest.approx(res.makespan, rel=0.10)
    assert p.memory_bytes == pytest.approx(max(led.peak for led in res.memory), rel=0.10)


def test_plan_enumerates_ranks_and_drops_what_does_not_fit():
    plans = plan("llama2-70b", 64, "h100", global_batch=256, seq_len=4096)
    assert plans and all(p.fits for p in plans)
    assert all(p.dp * p.tp * p.pp == 64 for p in plans)
    speeds = [p.tokens_per_s for p in plans]
    assert speeds == sorted(speeds, reverse=True)
    assert all(p.tp <= 8 for p in plans)  # max_tp defaults to one node
    everything = plan("llama2-70b", 64, "h100", global_batch=256, seq_len=4096, include_unfit=True)
    assert len(everything) > len(plans) and not everything[-1].fits
    # 70B params x 16 bytes = 1.1 TB of model states: one node's 8 x 80 GiB cannot hold them without ZeRO
    assert all(p.memory_bytes > p.capacity_bytes for p in everything if p.tp * p.pp == 1 and p.zero_stage == 0)
    rows = plans_table(plans, top=3)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["tokens_per_s"] == plans[0].tokens_per_s
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


def test_tp_stays_in_the_node():
    """Narayanan et al. 2021, Sec. 3.3: TP beyond a server's 8 GPUs crosses InfiniBand and loses."""
    best = plan("gpt3-175b", 1024, "a100", global_batch=1536, seq_len=2048, max_tp=16)[0]
    assert best.tp == 8
    kw = dict(dp=1024 // 128, pp=8, micro_batch=1, global_batch=1536, seq_len=2048, recompute="full")
    t8 = predict("gpt3-175b", "a100", tp=16 // 2, **{**kw, "dp": 1024 // 64})
    t16 = predict("gpt3-175b", "a100", tp=16, **kw)
    assert t16.links["tp"] == "inter" and t8.links["tp"] == "intra"
    assert t16.time_terms["tp_comm"] > 5 * t8.time_terms["tp_comm"]


def test_published_runs_within_the_stated_error():
    """Calibrated on the 1.7B row (no TP, no PP), the planner predicts the others out of sample.

    It under-predicts all three (-18%, -28%, -25%): it holds the GEMMs' efficiency at the
    1.7B model's, while larger matrices run faster (Narayanan et al. 2021, Sec. 5.1), and
    it overlaps no communication and sends whole activations between stages, where
    Megatron's scatter/gather sends 1/t of them (Sec. 4.1). We require |error| < 35%.
    """
    mfu = calibrate_mfu()
    assert 0.4 < mfu < 0.55
    rows = published_comparison()
    assert [r["run"] for r in rows] == [r.name for r in PUBLISHED_RUNS]
    for r in rows:
        assert r["fits"], r["run"]
        assert -0.35 < r["error"] < 0.0, (r["run"], r["error"])
    assert {(r["tp"], r["pp"], r["GPUs"]) for r in rows} == {(8, 8, 1536), (8, 64, 3072), (4, 12, 384)}


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(tp=5), "tp=5 must divide n_head"),
        (dict(pp=13), "pp=13 stages exceed n_layer=12"),
        (dict(global_batch=9), "global_batch=9 must split"),
        (dict(recompute="some"), "recompute='some'"),
        (dict(zero_stage=3), "zero_stage=3 must be 0 or 1"),
        (dict(mfu=0), "mfu=0"),
    ],
)
def test_bad_input_is_a_clear_error(kw, match):
    args = dict(dp=2, tp=2, pp=1, micro_batch=1, global_batch=8, seq_len=128)
    with pytest.raises(ValueError, match=match):
        predict("gpt2-124m", "a100", **{**args, **kw})
