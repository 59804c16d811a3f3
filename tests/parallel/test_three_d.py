"""3D parallelism (DP × TP × PP): trained weights equal one device's; timelines and memory from the simulator."""

import pytest
import torch

from minillm.model import GPT, GPTConfig
from minillm.parallel import ProcessGrid, max_abs_diff, run, train_single
from minillm.parallel.three_d import gather_3d_parameters, stage_blocks, train_3d

pytestmark = pytest.mark.lesson14

CFG = GPTConfig(vocab_size=32, block_size=8, n_layer=4, n_head=2, n_embd=16)
# eps=1e-6, as in tests/parallel/_parallel_helpers.py: the key bias's exactly-zero gradient
# is float noise that Adam would otherwise amplify into a 1e-5 difference.
HYPER = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
STEPS = 3
TOL = 1e-5  # fp32: gradients summed in another order (micro-batches, DP ranks, TP shards), times a few AdamW steps


def _data(batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 32, (batch, 8), generator=g), torch.randint(0, 32, (batch, 8), generator=g))
            for _ in range(STEPS)]


def _model():
    torch.manual_seed(0)
    return GPT(CFG)


def _reference(model, batches):
    """Single device, torch.optim.AdamW on the whole global batch: the independent reference."""
    losses, state = train_single(model, batches, optimizer=torch.optim.AdamW, **HYPER)
    return losses, {k: v for k, v in state.items() if k != "lm_head.weight"}  # tied: the same tensor as wte


def _run_3d(tp, pp, dp, batch, backend="sim", **kw):
    model, batches = _model(), _data(batch)

    def rank(comm):
        grid = ProcessGrid(comm, tp=tp, pp=pp)
        shard = train_3d(model, comm, grid, batches, steps=STEPS, **HYPER, **kw)
        return shard.losses, gather_3d_parameters(shard), shard.coords

    res = run(rank, tp * pp * dp, backend=backend)
    return res, _reference(model, batches)


@pytest.mark.parametrize("zero_stage", [0, 1])
@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_2x2x2_on_8_simulated_ranks_equals_one_device(zero_stage, schedule):
    res, (ref_losses, ref) = _run_3d(2, 2, 2, batch=8, zero_stage=zero_stage, schedule=schedule)
    coords = sorted(r[2] for r in res.results)
    assert coords == [(p, d, t) for p in range(2) for d in range(2) for t in range(2)]
    for losses, params, _ in res.results:
        assert losses == pytest.approx(ref_losses, rel=1e-5)
        assert set(params) == set(ref)
        assert max_abs_diff(params, ref) < TOL


def test_3x2x2_on_12_simulated_ranks_equals_one_device():
    # dp = 3, tp = 2, pp = 2; 12 sequences = 3 DP ranks x 2 micro-batches x 2
    res, (ref_losses, ref) = _run_3d(2, 2, 3, batch=12, zero_stage=1, n_micro=2)
    for losses, params, _ in res.results:
        assert losses == pytest.approx(ref_losses, rel=1e-5)
        assert max_abs_diff(params, ref) < TOL


def test_the_check_can_fail_a_wrong_learning_rate_is_caught():
    model, batches = _model(), _data(8)

    def rank(comm):
        grid = ProcessGrid(comm, tp=2, pp=2)
        return gather_3d_parameters(train_3d(model, comm, grid, batches, steps=STEPS, **{**HYPER, "lr": 1.1e-2}))

    params = run(rank, 8).results[0]
    assert max_abs_diff(params, _reference(model, batches)[1]) > 100 * TOL


@pytest.mark.gloo
def test_2x2x1_on_4_gloo_processes_equals_one_device():
    res, (ref_losses, ref) = _run_3d(2, 1, 2, batch=8, backend="gloo", zero_stage=1)
    for losses, params, _ in res.results:
        assert losses == pytest.approx(ref_losses, rel=1e-5)
        assert max_abs_diff(params, ref) < TOL


def test_per_rank_timelines_and_memory_from_the_simulator():
    model, batches = _model(), _data(8)

    def rank(comm, zero_stage):
        grid = ProcessGrid(comm, tp=2, pp=2)
        shard = train_3d(model, comm, grid, batches[:1], steps=1, zero_stage=zero_stage, **HYPER)
        return sum(p.numel() for p in shard.stage.parameters())

    res0 = run(rank, 8, zero_stage=0)
    res1 = run(rank, 8, zero_stage=1)
    for res in (res0, res1):
        for r, trace in enumerate(res.traces):
            kinds = {e.kind for e in trace}
            assert {"compute", "comm"} <= kinds, f"rank {r} has no compute or no communication"
            ops = {e.op for e in trace if e.kind == "comm"}
            assert "all_reduce" in ops  # TP's f and g, and the DP gradients
            assert ops & {"send", "recv"}  # the pipeline's activations and gradients
        assert all(c > 0 for c in res.clocks)
    for r in range(8):
        n = res0.results[r]
        led0, led1 = res0.memory[r], res1.memory[r]
        # fp32 AdamW: parameters and gradients 4 bytes each, m and v 8 bytes per parameter
        assert led0.peak_by_category["parameters"] == 4 * n
        assert led0.peak_by_category["optimizer"] == 8 * n
        # ZeRO-1 over dp = 2 keeps half of m and v (each parameter padded to an even length)
        assert led1.peak_by_category["optimizer"] == pytest.approx(4 * n, rel=0.02)
        assert led0.peak_by_category["activations"] > 0 and led0.current["activations"] == 0  # all freed by backward
    # stage 0 holds up to pp = 2 micro-batches in flight under 1F1B, the last stage 1 at a time
    first = res0.memory[0].peak_by_category["activations"]
    last = res0.memory[7].peak_by_category["activations"]
    assert first > last


def test_stage_blocks_and_bad_input():
    assert stage_blocks(4, 2) == [range(0, 2), range(2, 4)]
    assert stage_blocks(5, 3) == [range(0, 1), range(1, 3), range(3, 5)]
    with pytest.raises(ValueError, match="too few for pp=5"):
        stage_blocks(4, 5)
    model, batches = _model(), _data(8)

    def rank(comm, **kw):
        grid = ProcessGrid(comm, tp=1, pp=2)
        train_3d(model, comm, grid, batches, steps=1, **kw)

    with pytest.raises(Exception, match="zero_stage=2 must be 0"):
        run(rank, 2, zero_stage=2)
    with pytest.raises(Exception, match="schedule='zb'"):
        run(rank, 2, schedule="zb")
