"""Data parallelism on the simulator: the same parameters as one device, accumulation, bucketing."""

from __future__ import annotations

import copy

import pytest
import torch
from _parallel_helpers import HYPER, VARIANTS, max_abs_diff, reference_state, tiny_data, tiny_model, train_variant

from minillm.parallel import (
    allreduce_gradients,
    broadcast_parameters,
    bucket_parameters,
    dp_train_step,
    micro_batches,
    run,
    saved_activation_bytes,
    shard_batch,
    train_replica,
    train_single,
)

pytestmark = pytest.mark.lesson11

DP_VARIANTS = [v for v in VARIANTS if v[1] is None]


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("name, stage, accum, bucket", DP_VARIANTS, ids=[v[0] for v in DP_VARIANTS])
def test_dp_equals_single_device_adamw(setup, world_size, name, stage, accum, bucket):
    model, data, ref, ref_losses = setup
    res = run(train_variant, world_size, model, data, stage, accum, bucket)
    for state, losses in res.results:
        # 1e-5 (the bar): the only difference from one device is the order in
        # which float32 gradients are summed; see HYPER for why eps=1e-6 keeps Adam's
        # division by tiny gradients from amplifying that rounding.
        assert max_abs_diff(state, ref) < 1e-5
        # the loss each rank reports is the full-batch mean loss, before each step
        assert losses == pytest.approx(ref_losses, abs=1e-5)  # float32 loss of order 3.5: 1e-5 is ~30 ulps


def _count_syncs(comm, model, data, accum, bucket):
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), **HYPER)
    x, y = data[0]
    dp_train_step(m, opt, comm, shard_batch(x, comm), shard_batch(y, comm), accum, bucket)
    # gradient traffic only: leave out the 8-byte all-reduce of the reported loss
    return [e.nbytes for e in comm.trace if e.kind == "comm" and e.op == "all_reduce" and e.nbytes != 8]


@pytest.mark.parametrize("accum", [1, 2, 4])
def test_accumulation_syncs_only_after_the_last_micro_batch(setup, accum):
    model = setup[0]
    n_params = len(list(model.parameters()))
    naive = run(_count_syncs, 2, model, setup[1], accum, None).results[0]
    assert len(naive) == n_params  # one all-reduce per parameter, whatever accum is
    bucketed = run(_count_syncs, 2, model, setup[1], accum, 10**9).results[0]
    assert bucketed == [4 * sum(p.numel() for p in model.parameters())]  # one bucket of all gradients


def test_bucketed_allreduce_takes_less_simulated_time_than_naive(setup):
    model, data = setup[0], setup[1]
    naive = run(_count_syncs, 4, model, data, 1, None)
    bucketed = run(_count_syncs, 4, model, data, 1, 10**9)
    comm_time = lambda r: sum(e.duration for e in r.traces[0] if e.kind == "comm")  # noqa: E731
    # same bytes, but 1 message instead of 16: 15 fewer sets of 2(p-1)α latency terms
    assert comm_time(bucketed) < comm_time(naive)


def test_bucket_parameters_in_reverse_order_and_size():
    ps = [torch.nn.Parameter(torch.zeros(n)) for n in (10, 20, 30, 5)]  # 40, 80, 120, 20 bytes
    buckets = bucket_parameters(ps, 130)
    # reversed: 20, 120, 80, 40 bytes; 20+120 > 130 and 120+80 > 130 close buckets, 80+40 fits
    assert [[p.numel() for p in b] for b in buckets] == [[5], [30], [20, 10]]
    assert [[p.numel() for p in b] for b in bucket_parameters(ps, 10**6)] == [[5, 30, 20, 10]]
    with pytest.raises(ValueError, match="bucket_bytes=0"):
        bucket_parameters(ps, 0)


def test_allreduce_gradients_averages_and_fills_missing_grads():
    def fn(comm):
        a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
        a.grad = torch.full((3,), float(comm.rank))
        calls = allreduce_gradients([a, b], comm, bucket_bytes=4)  # b has no grad: joins with zeros
        return calls, a.grad, b.grad

    calls, ga, gb = run(fn, 3).results[0]
    assert calls == 2 and torch.equal(ga, torch.full((3,), 1.0)) and torch.equal(gb, torch.zeros(2))  # (0+1+2)/3 = 1 exactly


def test_broadcast_parameters_makes_replicas_equal():
    def fn(comm):
        torch.manual_seed(comm.rank)  # different on purpose (sim ranks share the RNG; values are irrelevant)
        m = tiny_model(seed=comm.rank)
        broadcast_parameters(m, comm, src=0)
        return {k: v.clone() for k, v in m.state_dict().items()}

    res = run(fn, 3).results
    assert max_abs_diff(res[1], res[0]) == 0.0 and max_abs_diff(res[2], res[0]) == 0.0  # copies: exact


def test_activations_are_counted_while_alive():
    def fn(comm):
        m = tiny_model()
        x, y = tiny_data(1)[0]
        dp_train_step(m, torch.optim.SGD(m.parameters(), lr=0.1), comm, x, y)
        return comm.memory.peak_by_category["activations"], comm.memory.current["activations"]

    peak, now = run(fn, 1).results[0]
    assert peak > 0 and now == 0  # held between forward and backward, released after


def test_saved_activation_bytes_counts_saved_tensors_once():
    w = torch.nn.Parameter(torch.randn(4, 4))
    x = torch.randn(3, 4)
    with saved_activation_bytes() as saved:
        h = x @ w  # saves x (48 bytes) and w (a parameter: not an activation)
        (h * h).sum()  # saves h twice (both operands): one storage, 48 bytes
    assert saved[0] == 48 + 48


def test_batch_splitting_errors():
    x = torch.zeros(6, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="accum_steps=4 equal micro-batches"):
        micro_batches(x, x, 4)
    assert [a.shape[0] for a, _ in micro_batches(x, x, 3)] == [2, 2, 2]

    def fn(comm):
        return shard_batch(x, comm)

    with pytest.raises(Exception, match="does not split evenly over world_size=4"):
        run(fn, 4)


# --------------------------------------------------------------------------- whole runs: train_single, train_replica


def test_train_single_is_plain_training_on_the_whole_batch():
    model, data = tiny_model(), tiny_data(2)
    before = copy.deepcopy(model.state_dict())
    losses, state = train_single(model, data, optimizer=torch.optim.SGD, lr=0.1)
    # by hand: the loss before each step, then w <- w - lr * dL/dw
    m = copy.deepcopy(model)
    want_losses = []
    for x, y in data:
        _, loss = m(x, y)
        want_losses.append(loss.item())
        grads = torch.autograd.grad(loss, list(m.parameters()))
        with torch.no_grad():
            for p, g in zip(m.parameters(), grads):
                p -= 0.1 * g
    assert losses == want_losses
    assert max_abs_diff(state, m.state_dict()) < 1e-7  # float32; SGD's kernel may round w - lr·g differently
    assert max_abs_diff(model.state_dict(), before) == 0.0  # trains a copy
    # the default optimizer is minillm's AdamW (tested against torch's in tests/test_train.py)
    assert max_abs_diff(train_single(model, data, **HYPER)[1], reference_state(model, data[:2])) < 1e-5


@pytest.mark.parametrize("stage", [None, 0, 1, 3])
def test_train_replica_on_one_rank_is_train_single(stage):
    model, data = tiny_model(), tiny_data(2)
    ref_losses, ref_state = train_single(model, data, **HYPER)
    losses, state = run(train_replica, 1, model, data, stage, **HYPER).results[0]
    assert state.keys() == ref_state.keys()
    # one rank: the all-reduces average over one rank, ZeRO's shards are the whole
    # parameters; only ZeRO's own AdamW kernel can round differently (a few ulps)
    assert max_abs_diff(state, ref_state) < 1e-6
    assert losses == pytest.approx(ref_losses, abs=1e-6)
    if stage is None:
        assert max_abs_diff(state, ref_state) == 0.0 and losses == ref_losses  # the same arithmetic


def test_train_replica_trains_a_copy_and_rejects_an_optimizer_with_zero():
    model, data = tiny_model(), tiny_data(1)
    before = copy.deepcopy(model.state_dict())
    run(train_replica, 2, model, data, None, 2, 1000, **HYPER)
    assert max_abs_diff(model.state_dict(), before) == 0.0

    with pytest.raises(Exception, match="optimizer= applies to plain DP"):
        run(train_replica, 1, model, data, 1, optimizer=torch.optim.AdamW, **HYPER)


def test_max_abs_diff():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(3.0), "empty": torch.zeros(0)}
    b = {"w": torch.tensor([1.5, 2.0]), "b": torch.tensor(1.0), "empty": torch.zeros(0)}
    assert max_abs_diff(a, b) == 2.0 and max_abs_diff(a, a) == 0.0 and max_abs_diff({}, {}) == 0.0
    with pytest.raises(ValueError, match="differ in their keys"):
        max_abs_diff(a, {"w": a["w"]})
