"""Pipeline parallelism: schedules against the papers' formulas, training against one device."""

import pytest
import torch

from minillm.kernels import cross_entropy_loss
from minillm.model import GPT, GPTConfig
from minillm.parallel import RankError, run
from minillm.parallel.pipeline_parallel import interleaved_chunks, pipeline_train_step, split_into_stages
from minillm.parallel.pp_schedule import bubble_fraction, pipeline_schedule, schedule_timeline

pytestmark = pytest.mark.lesson13

CFG = GPTConfig(vocab_size=40, block_size=8, n_layer=4, n_head=2, n_embd=16)


def test_gpipe_and_1f1b_schedules_by_hand():
    assert pipeline_schedule("gpipe", 2, 3, 0) == [("F", 0), ("F", 1), ("F", 2), ("B", 0), ("B", 1), ("B", 2)]
    # stage 0 of 4: 3 warm-up forwards, then one forward one backward, then the drain
    assert pipeline_schedule("1f1b", 4, 5, 0) == [
        ("F", 0), ("F", 1), ("F", 2), ("F", 3), ("B", 0), ("F", 4), ("B", 1), ("B", 2), ("B", 3), ("B", 4),
    ]
    # the last stage has no warm-up: it alternates from the start
    assert pipeline_schedule("1f1b", 4, 3, 3) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]


@pytest.mark.parametrize("kind,v", [("gpipe", 1), ("1f1b", 1), ("interleaved-1f1b", 2), ("interleaved-1f1b", 3)])
@pytest.mark.parametrize("p,m", [(2, 4), (3, 6), (4, 8), (4, 4)])
def test_every_stage_runs_every_micro_batch_once_each_way(kind, v, p, m):
    for s in range(p):
        acts = pipeline_schedule(kind, p, m, s, n_virtual=v)
        keys = [(a[1], a[2] if len(a) == 3 else 0) for a in acts]
        fwd = [k for a, k in zip(acts, keys) if a[0] == "F"]
        bwd = [k for a, k in zip(acts, keys) if a[0] == "B"]
        assert sorted(fwd) == sorted(bwd) == sorted((i, c) for i in range(m) for c in range(v))
        assert all(fwd.index(k) <= acts.index(("B", *k) if v > 1 else ("B", k[0])) for k in fwd)


@pytest.mark.parametrize("p,m", [(2, 2), (2, 5), (3, 3), (4, 8), (4, 16)])
def test_timelines_measure_the_formulas(p, m):
    tf, tb = 1.0, 2.0
    for kind in ("gpipe", "1f1b"):
        tl = schedule_timeline(kind, p, m, tf, tb)
        assert tl.makespan == pytest.approx((m + p - 1) * (tf + tb))  # same makespan for both
        assert tl.bubble == pytest.approx(bubble_fraction(p, m)) == pytest.approx((p - 1) / (m + p - 1))
    assert schedule_timeline("gpipe", p, m).in_flight == [m] * p  # GPipe keeps every micro-batch
    assert schedule_timeline("1f1b", p, m).in_flight == [min(p - r, m) for r in range(p)]


@pytest.mark.parametrize("p,m,v", [(2, 4, 2), (4, 8, 2), (4, 8, 4), (3, 6, 3)])
def test_interleaving_divides_the_bubble_by_v(p, m, v):
    tl = schedule_timeline("interleaved-1f1b", p, m, 1.0, 2.0, n_virtual=v)
    assert tl.makespan == pytest.approx(m * 3 + (p - 1) * 3 / v)
    assert tl.bubble == pytest.approx(bubble_fraction(p, m, v)) == pytest.approx((p - 1) / (v * m + p - 1))


def test_published_bubble_numbers():
    # Narayanan et al. 2021, Sec. 2.2: bubble time / ideal time = (p - 1) / m, divided by v when interleaved
    p, m = 8, 32
    b = bubble_fraction(p, m)
    assert b / (1 - b) == pytest.approx((p - 1) / m)
    b4 = bubble_fraction(p, m, 4)
    assert b4 / (1 - b4) == pytest.approx((p - 1) / m / 4)


def test_split_into_stages_keeps_the_models_names():
    torch.manual_seed(0)
    model = GPT(CFG)
    stages = split_into_stages(model, 3)
    assert [list(s.h) for s in stages] == [["0"], ["1"], ["2", "3"]]  # the later stages take the extra block
    names = set()
    for s in stages:
        names |= set(dict(s.named_parameters()))
    assert names == set(dict(model.named_parameters())) | {"lm_head.weight"}  # the last stage's copy of the tie
    assert [list(s.h) for s in split_into_stages(model, 2, balance=[3, 1])] == [["0", "1", "2"], ["3"]]


class _SGD:
    """Plain SGD: an update proportional to the gradient, so parameters differ exactly as gradients do.

    (AdamW divides by sqrt(v): where a gradient is near zero, rounding differences of 1e-7
    in it can move the update by up to lr, which would test Adam, not the pipeline.)
    """

    def __init__(self, params, lr=0.5):
        self.params, self.lr = list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad


def _train_pipeline(kind, p, m, steps=2, backend="sim", b=2, v=1, cfg=CFG):
    torch.manual_seed(0)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(5)
    batches = [
        [(torch.randint(0, 40, (b, 8), generator=g), torch.randint(0, 40, (b, 8), generator=g)) for _ in range(m)]
        for _ in range(steps)
    ]
    stages = split_into_stages(model, p) if v == 1 else interleaved_chunks(model, p, v)

    def loss_fn(logits, y):
        return cross_entropy_loss(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def rank(comm):
        stage = stages[comm.rank]
        opt = _SGD(stage.parameters() if v == 1 else [q for c in stage for q in c.parameters()])
        sched = pipeline_schedule(kind, p, m, comm.rank, n_virtual=v)
        losses = []
        for micro in batches:
            opt.zero_grad()
            losses.append(pipeline_train_step(stage, comm, micro, sched, loss_fn))
            opt.step()
        chunks = [stage] if v == 1 else stage
        return losses, {n: t.detach().clone() for c in chunks for n, t in c.named_parameters()}

    res = run(rank, p, backend=backend).results
    ref_opt = _SGD(model.parameters())
    ref_losses = []
    for micro in batches:
        x = torch.cat([mb[0] for mb in micro])
        y = torch.cat([mb[1] for mb in micro])
        ref_opt.zero_grad()
        loss = model(x, y)[1]
        loss.backward()
        ref_opt.step()
        ref_losses.append(loss.item())
    ref = dict(model.named_parameters())
    for losses, params in res:
        assert losses == pytest.approx(ref_losses, rel=1e-5)
        for name, t in params.items():
            target = ref["wte.weight"] if name == "lm_head.weight" else ref[name]
            # fp32: the micro-batch gradients are summed in another order (~1e-7 relative), times lr
            torch.testing.assert_close(t, target.detach(), rtol=1e-5, atol=1e-5, msg=lambda msg, n=name: f"{n}: {msg}")


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(2, 2), (2, 4), (3, 3), (4, 4), (4, 6)])
def test_pipeline_training_equals_one_device(kind, p, m):
    _train_pipeline(kind, p, m)


# p = 2 is the hard case: activations and gradients share each channel, so both ranks must
# post their sends and receives in the same order (the schedule guarantees it; this proves it)
@pytest.mark.parametrize("p,m,v", [(2, 2, 2), (2, 4, 3), (3, 3, 2), (4, 4, 2), (3, 6, 2)])
def test_interleaved_training_equals_one_device(p, m, v):
    cfg = GPTConfig(vocab_size=40, block_size=8, n_layer=p * v, n_head=2, n_embd=16)
    _train_pipeline("interleaved-1f1b", p, m, v=v, cfg=cfg)


@pytest.mark.gloo
def test_pipeline_training_equals_one_device_on_gloo():
    _train_pipeline("1f1b", 2, 3, backend="gloo")
    cfg = GPTConfig(vocab_size=40, block_size=8, n_layer=4, n_head=2, n_embd=16)
    _train_pipeline("interleaved-1f1b", 2, 2, backend="gloo", v=2, cfg=cfg)


def test_a_rank_that_raises_stops_the_pipeline_and_is_named():
    torch.manual_seed(0)
    stages = split_into_stages(GPT(CFG), 2)
    micro = [(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))] * 2

    def bad_loss(logits, y):
        raise ArithmeticError("the loss broke")

    def rank(comm):
        pipeline_train_step(stages[comm.rank], comm, micro, pipeline_schedule("1f1b", 2, 2, comm.rank), bad_loss)

    with pytest.raises(RankError, match="rank 1 raised ArithmeticError: the loss broke"):
        run(rank, 2, timeout=20)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: split_into_stages(GPT(CFG), 5), "n_layer=4 is too few for 5 stages"),
        (lambda: split_into_stages(GPT(CFG), 2, balance=[1, 2]), "sum to n_layer=4"),
        (lambda: pipeline_schedule("interleaved-1f1b", 4, 6, 0, n_virtual=2), "multiple of n_stages=4"),
        (lambda: pipeline_schedule("1f1b", 4, 6, 0, n_virtual=2), "needs kind='interleaved-1f1b'"),
        (lambda: pipeline_schedule("zb", 4, 6, 0), "kind='zb'"),
        (lambda: pipeline_schedule("gpipe", 4, 6, 4), "stage=4 must be < n_stages=4"),
        (lambda: bubble_fraction(0, 4), "p=0"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_schedule_for_other_micro_batch_counts_is_refused():
    torch.manual_seed(0)
    stages = split_into_stages(GPT(CFG), 2)
    micro = [(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))] * 3

    def rank(comm):
        pipeline_train_step(stages[comm.rank], comm, micro, pipeline_schedule("1f1b", 2, 2, comm.rank), lambda a, b: a.sum())

    with pytest.raises(RankError, match="every one of the 3 micro-batches"):
        run(rank, 2, timeout=20)
