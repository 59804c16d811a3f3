"""ZeRO stages 1-3 on the simulator: same parameters as one device, memory and traffic as the paper says."""

from __future__ import annotations

import copy

import pytest
import torch
from _parallel_helpers import HYPER, VARIANTS, max_abs_diff, tiny_data, tiny_model, train_variant

from minillm.model import GPTConfig
from minillm.parallel import (
    ClusterSpec,
    Event,
    ZeroOptimizer,
    allreduce_gradients,
    bytes_sent_per_rank,
    comm_summary,
    run,
    train_replica,
    zero1_step,
    zero_comm_volume,
    zero_memory_bytes,
    zero_fewest_devices,
    zero_step_estimate,
)

pytestmark = pytest.mark.lesson11

ZERO_VARIANTS = [v for v in VARIANTS if v[1] is not None] + [("zero-0 (plain DP)", 0, 1, None), ("zero-1 + accumulation", 1, 2, None)]
GB = 1e9


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("name, stage, accum, bucket", ZERO_VARIANTS, ids=[v[0] for v in ZERO_VARIANTS])
def test_zero_equals_single_device_adamw(setup, world_size, name, stage, accum, bucket):
    model, data, ref, ref_losses = setup
    res = run(train_variant, world_size, model, data, stage, accum, bucket)
    for state, losses in res.results:
        # 1e-5 (the bar): sharding changes only the float32 summation order of
        # the gradients; eps=1e-6 (see HYPER) keeps Adam from amplifying it.
        assert max_abs_diff(state, ref) < 1e-5
        assert losses == pytest.approx(ref_losses, abs=1e-5)  # float32 losses of order 3.5


def test_adamw_shard_math_matches_torch_with_its_default_eps():
    """World size 1, stage 1: one shard holding everything is torch's AdamW, even at eps=1e-8."""
    torch.manual_seed(0)
    w = torch.randn(50)
    grads = [torch.randn(50) for _ in range(4)]

    def fn(comm):
        p = torch.nn.Parameter(w.clone())
        opt = ZeroOptimizer([p], comm, stage=1, lr=1e-2, weight_decay=0.1)
        for g in grads:
            p.grad = g.clone()
            opt.step()
            opt.zero_grad()
        return p.detach()

    q = torch.nn.Parameter(w.clone())
    ref = torch.optim.AdamW([q], lr=1e-2, weight_decay=0.1)
    for g in grads:
        q.grad = g.clone()
        ref.step()
    # 1e-6: O(1) gradients, so eps is negligible; the two implementations round
    # sqrt(v̂) differently (a few float32 ulps per step)
    torch.testing.assert_close(run(fn, 1).results[0], q.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("world_size, n", [(1, 7), (3, 10), (4, 10), (4, 3)])
def test_zero1_step_on_uneven_shards(world_size, n):
    """The graded-task function: reduce-scatter, AdamW on my shard, all-gather (n need not divide)."""
    torch.manual_seed(0)
    w = torch.randn(n)
    grads = [[torch.randn(n) for _ in range(world_size)] for _ in range(3)]  # [step][rank]

    def fn(comm):
        s = -(-n // comm.world_size)
        p, m, v = w.clone(), torch.zeros(s), torch.zeros(s)
        for t, g in enumerate(grads, start=1):
            p = zero1_step(comm, p, g[comm.rank], m, v, t, lr=1e-2, weight_decay=0.1)
        return p

    q = torch.nn.Parameter(w.clone())
    ref = torch.optim.AdamW([q], lr=1e-2, weight_decay=0.1)
    for g in grads:
        q.grad = torch.stack(g).mean(0)
        ref.step()
    for p in run(fn, world_size).results:
        # 1e-6: O(1) gradients; only the float32 order of the mean and of sqrt(v̂) differ
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- memory


def test_zero_memory_bytes_reproduces_the_paper():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64, K = 12, GB = 1e9 bytes
    paper = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, gb in paper.items():
        got = zero_memory_bytes(7.5e9, 64, stage).total / GB
        assert got == pytest.approx(gb, abs=0.05)  # the paper rounds to one decimal
    # Sec. 5 in words: stage 1 keeps 4Ψ + KΨ/N_d, stage 2 2Ψ + 14Ψ/N_d, stage 3 16Ψ/N_d
    m = zero_memory_bytes(1e9, 8, 2)
    assert (m.parameters, m.gradients, m.optimizer) == (2e9, 2e9 / 8, 12e9 / 8)
    assert zero_memory_bytes(1e9, 8, 3).gb()["total"] == pytest.approx(16 / 8)


def _ledger_after_one_step(comm, model, data, stage):
    m = copy.deepcopy(model)
    opt = ZeroOptimizer(m if stage == 3 else m.parameters(), comm, stage=stage, **HYPER)
    x, y = data[0]
    p = comm.world_size
    _, loss = m(x.chunk(p)[comm.rank], y.chunk(p)[comm.rank])
    loss.backward()
    opt.step()
    opt.zero_grad()
    return dict(comm.memory.current), comm.memory.peak_by_category["comm"]


@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_ledger_matches_zero_memory_bytes_by_category(setup, stage, world_size):
    model, data = setup[0], setup[1]
    n = sum(p.numel() for p in model.parameters())  # 3952, divisible by 2 and 4: no padding
    assert n % world_size == 0 and all(p.numel() % world_size == 0 for p in model.parameters())
    # fp32 training with AdamW: 4-byte parameters and gradients, K = 8 (m and v; no
    # separate fp32 master copy), the paper's formula with those constants.
    want = zero_memory_bytes(n, world_size, stage, k=8, bytes_param=4, bytes_grad=4).as_dict()
    for current, peak_comm in run(_ledger_after_one_step, world_size, model, data, stage).results:
        assert {c: current[c] for c in want} == want  # exact: whole bytes
        assert current["comm"] == 0 and current["activations"] == 0  # transient buffers were released
        if stage >= 2:
            assert peak_comm > 0  # unsharded gradients (and, stage 3, gathered weights) lived briefly


# --------------------------------------------------------------------------- communication volume


def _traffic(comm, model, data, stage):
    m = copy.deepcopy(model)
    opt = ZeroOptimizer(m if stage == 3 else m.parameters(), comm, stage=stage, **HYPER)
    x, y = data[0]
    p = comm.world_size
    comm.trace.clear()
    _, loss = m(x.chunk(p)[comm.rank], y.chunk(p)[comm.rank])
    loss.backward()
    if not opt.syncs_gradients:  # stage 0 leaves the gradient all-reduce to the DP step
        allreduce_gradients(m.parameters(), comm)
    opt.step()
    return sum(bytes_sent_per_rank(e.op, e.nbytes, p) for e in comm.trace if e.kind == "comm")


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_traffic_per_step_matches_the_paper(stage):
    # untied weights: every parameter is used by exactly one layer, so stage 3
    # gathers each once in forward and once in backward
    cfg = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, tie_weights=False)
    model = tiny_model(config=cfg)
    n = sum(p.numel() for p in model.parameters())
    sent = run(_traffic, 4, model, tiny_data(1), stage).results[0]
    # exact ring volume: 2·(p-1)/p·Ψ (stages 0-2) or 3·(p-1)/p·Ψ (stage 3) float32 elements
    assert sent == pytest.approx(zero_comm_volume(n, stage, world_size=4, bytes_per_element=4), rel=1e-12)


def test_comm_summary_counts_comm_events_by_size():
    trace = [
        Event("compute", 0.0, 1.0, "forward+backward"),
        Event("comm", 1.0, 3.0, "all_reduce", 400),
        Event("idle", 3.0, 3.5),
        Event("comm", 3.5, 4.0, "all_gather", 400),
        Event("comm", 4.0, 4.25, "all_reduce", 8),
    ]
    assert comm_summary(trace, 4) == {"bytes_sent": 600 + 300 + 12, "calls": 3, "seconds": 2.75}
    assert comm_summary(trace, 4, min_bytes=9) == {"bytes_sent": 900, "calls": 2, "seconds": 2.5}
    assert comm_summary([], 4) == {"bytes_sent": 0.0, "calls": 0, "seconds": 0.0}
    with pytest.raises(ValueError, match="world_size=0"):
        comm_summary(trace, 0)


@pytest.mark.parametrize("stage", [None, 0, 1, 2, 3])
def test_one_step_of_traffic_is_the_difference_of_two_runs(stage):
    """What lesson 11 measures: summary(2 steps) - summary(1 step) is one step, without the final gather."""
    cfg = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, tie_weights=False)
    model, data = tiny_model(config=cfg), tiny_data(2, config=cfg)
    n = sum(p.numel() for p in model.parameters())
    runs = [run(train_replica, 4, model, data[:steps], stage, **HYPER) for steps in (1, 2)]
    one, two = (comm_summary(r.traces[0], 4, min_bytes=9) for r in runs)
    # stage None and 0 all-reduce the gradients: 2Ψ, like stages 1 and 2; stage 3 3Ψ (untied weights)
    assert two["bytes_sent"] - one["bytes_sent"] == pytest.approx(
        zero_comm_volume(n, stage or 0, world_size=4, bytes_per_element=4), rel=1e-12)
    n_tensors = len(list(model.parameters()))
    calls = {None: n_tensors, 0: n_tensors, 1: 2 * n_tensors, 2: 2 * n_tensors, 3: 3 * n_tensors}[stage]
    assert two["calls"] - one["calls"] == calls  # one collective per parameter tensor and pass
    if stage == 3:  # the final gather_full_parameters() is in both runs, so it cancels
        assert one["calls"] == 3 * n_tensors + n_tensors


def test_zero_comm_volume_paper_counts():
    assert zero_comm_volume(1e9, 0) == zero_comm_volume(1e9, 1) == zero_comm_volume(1e9, 2) == 2 * 2e9  # 2Ψ fp16
    assert zero_comm_volume(1e9, 3) == 3 * 2e9  # 1.5x DP's (Sec. 7.2.2)


def test_step_estimate_for_the_widget():
    c = ClusterSpec()  # A100 80 GB
    rows = {s: zero_step_estimate(7.5e9, 64, s, tokens_per_step=1e6, cluster=c) for s in (0, 1, 2, 3)}
    assert [rows[s]["memory_total"] for s in range(4)] == sorted((rows[s]["memory_total"] for s in range(4)), reverse=True)
    assert not rows[0]["fits"] and rows[3]["fits"]  # 120 GB > 80 GB; 1.9 GB fits
    assert rows[3]["comm_s"] > rows[2]["comm_s"] == pytest.approx(rows[1]["comm_s"])  # 3Ψ vs 2Ψ
    assert rows[0]["compute_s"] == pytest.approx(6 * 7.5e9 * 1e6 / 64 / (312e12 * 0.5))  # 6ND / N_d at 50% MFU


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: zero_memory_bytes(1e9, 8, 4), "stage=4 is not a ZeRO stage"),
        (lambda: zero_memory_bytes(-1, 8, 1), "n_params=-1"),
        (lambda: zero_memory_bytes(1e9, 0, 1), "world_size=0"),
        (lambda: zero_step_estimate(1e9, 8, 1, mfu=0), "mfu=0"),
    ],
)
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_zero_optimizer_validates_its_arguments():
    def stage3_without_model(comm):
        ZeroOptimizer(tiny_model().parameters(), comm, stage=3)

    with pytest.raises(Exception, match="stage=3 .* needs the model itself"):
        run(stage3_without_model, 1)

    def bad_stage(comm):
        ZeroOptimizer(tiny_model().parameters(), comm, stage=5)

    with pytest.raises(Exception, match="stage=5 is not a ZeRO stage"):
        run(bad_stage, 1)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("n_params, capacity", [(70e9, 80e9), (7.5e9, 80e9), (1.3e9, 16e9), (175e9, 141e9), (1e9, 16e9)])
def test_zero_fewest_devices_inverts_the_memory_formula(n_params, capacity, stage):
    # Against a brute-force search over N_d = 1..10,000 with zero_memory_bytes: exact integers.
    fits = [nd for nd in range(1, 10_001) if zero_memory_bytes(n_params, nd, stage).total <= capacity]
    assert zero_fewest_devices(n_params, capacity, stage) == (fits[0] if fits else None)
