"""Tensor and sequence parallelism: every shard of the GPT against the one-device model.

The strongest check (as nanotron's tests do): build one reference model, shard it, run
both, compare the loss and *every* gradient. Tolerance 1e-5: the sharded model sums the
same fp32 products in a different order (row-parallel partial sums, then an all-reduce).
"""

import pytest
import torch

from minillm.model import GPT, GPTConfig, Linear
from minillm.parallel import RankError, run
from minillm.parallel.tensor_parallel import (
    ColumnParallelLinear,
    RowParallelLinear,
    all_gather_from_sp,
    copy_to_tp,
    gather_from_tp,
    gather_tp_tensors,
    reduce_from_tp,
    reduce_scatter_to_sp,
    scatter_to_tp,
    sync_sequence_parallel_grads,
    tensor_parallel_gpt,
    vocab_parallel_cross_entropy,
)

pytestmark = pytest.mark.lesson12

TOL = dict(rtol=1e-5, atol=1e-5)


def _cfg(n_head=4, n_embd=32, vocab=48):
    return GPTConfig(vocab_size=vocab, block_size=16, n_layer=2, n_head=n_head, n_embd=n_embd)


def _batch(cfg, B=2, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    return x, torch.randint(0, cfg.vocab_size, (B, T), generator=g)


def test_f_and_g_are_conjugate():
    def rank(comm):
        x = torch.full((3,), float(comm.rank + 1), requires_grad=True)
        y = copy_to_tp(x, comm)
        (y * (comm.rank + 1)).sum().backward()  # each rank's gradient differs...
        f_grad = x.grad.clone()  # ... f sums them: 1 + 2 = 3
        z = torch.full((3,), float(comm.rank + 1), requires_grad=True)
        s = reduce_from_tp(z, comm)  # g sums the values: 3
        s.sum().backward()  # ... and passes the gradient through unchanged: 1
        return f_grad, s.detach(), z.grad

    for f_grad, s, g_grad in run(rank, 2).results:
        assert torch.equal(f_grad, torch.full((3,), 3.0))
        assert torch.equal(s, torch.full((3,), 3.0)) and torch.equal(g_grad, torch.ones(3))


def test_scatter_gather_and_the_sequence_pair_are_inverses():
    full = torch.arange(2 * 8 * 6, dtype=torch.float32).view(2, 8, 6)

    def rank(comm):
        x = full.clone().requires_grad_(True)
        local = scatter_to_tp(x, comm)  # [2, 8, 3]
        back = gather_from_tp(local, comm)
        back.sum().backward()
        seq = all_gather_from_sp(full[:, comm.rank * 4 : (comm.rank + 1) * 4].clone(), comm)  # [2, 8, 6]
        rs = reduce_scatter_to_sp(full.clone(), comm)  # sum of 2 copies, this rank's 4 positions
        return local.detach(), back.detach(), x.grad, seq, rs

    for r, (local, back, grad, seq, rs) in enumerate(run(rank, 2).results):
        assert torch.equal(local, full[..., r * 3 : (r + 1) * 3]) and torch.equal(back, full)
        assert torch.equal(grad, torch.ones_like(full))  # each element reached by exactly one rank's slice
        assert torch.equal(seq, full)
        assert torch.equal(rs, 2 * full[:, r * 4 : (r + 1) * 4])


def test_column_then_row_parallel_linear_equals_the_two_linears():
    torch.manual_seed(0)
    a, b = Linear(16, 24), Linear(24, 16)
    x = torch.randn(3, 5, 16)
    ref = b(a(x))

    def rank(comm):
        col = ColumnParallelLinear.from_linear(a, comm)
        row = RowParallelLinear.from_linear(b, comm, input_is_parallel=True)
        gathered = ColumnParallelLinear.from_linear(a, comm, gather_output=True)(x)
        return row(col(x)).detach(), gathered.detach(), col.weight.shape, row.weight.shape

    for out, gathered, wc, wr in run(rank, 4).results:
        torch.testing.assert_close(out, ref, **TOL)
        torch.testing.assert_close(gathered, a(x), **TOL)
        assert tuple(wc) == (6, 16) and tuple(wr) == (16, 6)  # each rank stores a quarter


def test_vocab_parallel_cross_entropy_equals_the_full_loss_and_gradient():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 7, 40, generator=g) * 3
    targets = torch.randint(0, 40, (4, 7), generator=g)
    targets[0, 0] = -1  # ignored position
    full = logits.clone().requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(full.view(-1, 40), targets.view(-1), ignore_index=-1)
    ref.backward()

    def rank(comm):
        local = logits[..., comm.rank * 10 : (comm.rank + 1) * 10].clone().requires_grad_(True)
        loss = vocab_parallel_cross_entropy(local, targets, comm)
        loss.backward()
        return loss.detach(), local.grad

    res = run(rank, 4).results
    for r, (loss, grad) in enumerate(res):
        torch.testing.assert_close(loss, ref.detach(), **TOL)
        torch.testing.assert_close(grad, full.grad[..., r * 10 : (r + 1) * 10], **TOL)


def _tp_vs_single(cfg, tp, sequence_parallel, backend="sim", T=12):
    torch.manual_seed(0)
    model = GPT(cfg)
    x, y = _batch(cfg, T=T)
    _, ref_loss = model(x, y)
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    ref_logits = model(x)[0].detach()

    def rank(comm):
        shard = tensor_parallel_gpt(model, comm, sequence_parallel=sequence_parallel)
        logits, loss = shard(x, y)
        loss.backward()
        sync_sequence_parallel_grads(shard, comm)
        return loss.detach(), logits.detach(), gather_tp_tensors(shard, comm, grads=True)

    results = run(rank, tp, backend=backend).results
    V = cfg.vocab_size // tp
    for r, (loss, logits, grads) in enumerate(results):
        torch.testing.assert_close(loss, ref_loss.detach(), **TOL)
        torch.testing.assert_close(logits, ref_logits[..., r * V : (r + 1) * V], **TOL)
        assert set(grads) == set(ref_grads)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_tp_gpt_loss_and_every_gradient_equal_one_device(tp, sequence_parallel):
    _tp_vs_single(_cfg(), tp, sequence_parallel)


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_tp3_with_three_heads(sequence_parallel):
    _tp_vs_single(_cfg(n_head=3, n_embd=24, vocab=48), 3, sequence_parallel)


@pytest.mark.gloo
@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["tp", "tp+sp"])
def test_tp2_on_gloo(sequence_parallel):
    _tp_vs_single(_cfg(), 2, sequence_parallel, backend="gloo")


def test_the_shard_stores_a_tp_th_of_the_weights():
    cfg = _cfg()
    torch.manual_seed(0)
    model = GPT(cfg)
    n_full = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and n != "wpe.weight")

    def rank(comm):
        shard = tensor_parallel_gpt(model, comm)
        return sum(p.numel() for n, p in shard.named_parameters() if p.dim() == 2 and n != "wpe.weight")

    assert run(rank, 4).results == [n_full // 4] * 4


@pytest.mark.parametrize(
    "cfg,tp,match",
    [
        (_cfg(n_head=4), 3, "n_head=4 cannot be split over tp=3"),
        (_cfg(n_head=2, vocab=49), 2, "vocab_size=49 cannot be split over tp=2"),
    ],
)
def test_shapes_that_do_not_divide_are_a_clear_error(cfg, tp, match):
    torch.manual_seed(0)
    model = GPT(cfg)
    with pytest.raises(RankError, match=f"ValueError: {match}"):
        run(lambda comm: tensor_parallel_gpt(model, comm), tp)


def test_sequence_parallel_needs_a_sequence_that_divides():
    cfg = _cfg()
    torch.manual_seed(0)
    model = GPT(cfg)
    x, y = _batch(cfg, T=10)
    with pytest.raises(RankError, match="sequence length must divide by tp"):
        run(lambda comm: tensor_parallel_gpt(model, comm, sequence_parallel=True)(x, y), 4)


# --------------------------------------------------------------------------- costs


def test_tp_comm_bytes_equal_the_simulators_traced_bytes():
    from minillm.parallel import comm_summary
    from minillm.parallel.tensor_parallel import _ParallelBlock
    from minillm.parallel.tp_costs import tp_comm_bytes

    cfg = _cfg()
    torch.manual_seed(0)
    block = GPT(cfg).h[0]
    B, T, C = 2, 8, cfg.n_embd
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(4))
    for tp in (2, 4):
        for sp in (False, True):

            def rank(comm):
                layer = _ParallelBlock(block, comm, sp, "h.0.")
                inp = (x[:, comm.rank * T // tp : (comm.rank + 1) * T // tp] if sp else x).clone().requires_grad_(True)
                layer(inp).sum().backward()

            res = run(rank, tp)
            predicted = tp_comm_bytes((B, T, C), tp, sequence_parallel=sp)
            for trace in res.traces:
                assert comm_summary(trace, tp)["bytes_sent"] == pytest.approx(predicted["total"], rel=1e-12)


def test_sequence_parallelism_sends_the_same_bytes_as_tensor_parallelism():
    from minillm.parallel.tp_costs import tp_comm_bytes

    plain, sp = tp_comm_bytes((4, 2048, 12288), 8, bytes_per_elem=2), tp_comm_bytes((4, 2048, 12288), 8, True, 2)
    assert plain["total"] == sp["total"] and plain["collectives"] == {"all_reduce": 2}
    # 2 all-reduces of 4·2048·12288·2 bytes, each 2·7/8 of it, per direction
    assert plain["forward"] == pytest.approx(2 * 2 * 7 / 8 * 4 * 2048 * 12288 * 2)


def test_activation_memory_follows_korthikanti_table_2():
    from minillm.parallel.tp_costs import activation_memory_bytes

    s, b, h, a, L, t = 2048, 1, 12288, 96, 96, 8  # GPT-3 175B's shape at tp=8, one of the models Korthikanti et al. 2022 evaluate
    sbh = s * b * h
    none = activation_memory_bytes(s, b, h, a, L)
    assert none == pytest.approx(L * sbh * (34 + 5 * a * s / h))
    assert activation_memory_bytes(s, b, h, a, L, tp=t) == pytest.approx(L * sbh * (10 + 24 / t + 5 * a * s / (h * t)))
    assert activation_memory_bytes(s, b, h, a, L, tp=t, sequence_parallel=True) == pytest.approx(none / t)
    assert activation_memory_bytes(s, b, h, a, L, tp=t, recompute="selective") == pytest.approx(L * sbh * (10 + 24 / t))
    assert activation_memory_bytes(s, b, h, a, L, tp=t, sequence_parallel=True, recompute="selective") == pytest.approx(
        L * sbh * 34 / t
    )
    assert activation_memory_bytes(s, b, h, a, L, tp=t, recompute="full") == pytest.approx(L * 2 * sbh)
    # the worked number: TP alone stores 23·sbh per layer here, 55.6 GB for 96 layers
    assert activation_memory_bytes(s, b, h, a, L, tp=t) / 1e9 == pytest.approx(55.6, abs=0.05)
    with pytest.raises(ValueError, match="recompute='some'"):
        activation_memory_bytes(s, b, h, a, L, recompute="some")


def test_measured_activations_shrink_as_korthikanti_says():
    """Bytes autograd saves per rank (fp32, logits included), in the simulator's ledger, fall with t and SP as the formula says."""
    from minillm.parallel.data_parallel import saved_activation_bytes
    from minillm.parallel.tp_costs import activation_memory_bytes

    cfg = GPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_embd=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    x = torch.randint(0, 64, (2, 64), generator=torch.Generator().manual_seed(5))

    def saved(comm, sp):
        shard = tensor_parallel_gpt(model, comm, sequence_parallel=sp)
        with saved_activation_bytes() as n:
            shard(x, x)
        comm.memory.alloc("activations", n[0], "saved for backward")  # into the simulator's memory ledger

    def ledger(t, sp):
        return run(saved, t, sp).memory[0].current["activations"]

    measured = {(t, sp): ledger(t, sp) for t in (1, 2, 4) for sp in (False, True)}
    formula = {k: activation_memory_bytes(64, 2, 64, 4, 2, *k) for k in measured}
    base_m, base_f = measured[1, False], formula[1, False]
    for k in measured:
        # the ratios to t=1 agree within 0.08 (the measurement also counts logits and the loss)
        assert measured[k] / base_m == pytest.approx(formula[k] / base_f, abs=0.08), k
    assert measured[2, True] < measured[2, False] < base_m and measured[4, True] < measured[4, False] < measured[2, False]
