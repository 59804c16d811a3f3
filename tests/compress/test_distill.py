"""Knowledge distillation losses against closed forms, torch's kl_div, and their gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from minillm.compress.distill import distill, distill_loss, feature_loss, kd_loss, soft_targets
from minillm.model import GPT, GPTConfig, Linear

pytestmark = pytest.mark.lesson05


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 11, generator=g) * 2, torch.randn(3, 5, 11, generator=g) * 2


def test_soft_targets_are_a_tempered_softmax(pair):
    s, _ = pair
    for T in (0.5, 1.0, 4.0):
        torch.testing.assert_close(soft_targets(s, T), torch.softmax(s / T, dim=-1), rtol=1e-6, atol=1e-7)
    # a higher temperature flattens: the entropy grows with T
    ent = [float(-(p * p.log()).sum(-1).mean()) for p in (soft_targets(s, T) for T in (1, 2, 8))]
    assert ent[0] < ent[1] < ent[2] < math.log(11)


def test_kd_loss_is_zero_for_identical_logits(pair):
    s, _ = pair
    for kind in ("forward", "reverse"):
        assert float(kd_loss(s, s.clone(), T=3.0, kind=kind)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.5])
def test_kd_loss_matches_a_float64_closed_form_and_torch_kl_div(pair, T):
    s, t = pair
    p_t = torch.softmax(t.double() / T, -1)
    p_s = torch.softmax(s.double() / T, -1)
    forward = T**2 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    reverse = T**2 * (p_s * (p_s.log() - p_t.log())).sum(-1).mean()
    # fp32 against fp64: a few ulps of each log-probability, summed over 11 classes
    assert float(kd_loss(s, t, T, "forward")) == pytest.approx(float(forward), rel=1e-5)
    assert float(kd_loss(s, t, T, "reverse")) == pytest.approx(float(reverse), rel=1e-5)
    # torch's reference: kl_div(log q, p, batchmean) over flattened tokens is KL(p || q)
    ref = F.kl_div(F.log_softmax(s.reshape(-1, 11) / T, -1), F.softmax(t.reshape(-1, 11) / T, -1), reduction="batchmean")
    assert float(kd_loss(s, t, T)) == pytest.approx(T**2 * float(ref), rel=1e-5)


def test_forward_kd_gradient_is_T_times_q_minus_p_over_tokens(pair):
    s, t = pair
    T = 2.5
    s = s.clone().requires_grad_(True)
    kd_loss(s, t, T).backward()
    n_tokens = 3 * 5
    expected = T * (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1)) / n_tokens
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-7)


def test_no_gradient_reaches_the_teacher(pair):
    s, t = pair
    t = t.clone().requires_grad_(True)
    kd_loss(s.requires_grad_(True), t).backward()
    assert t.grad is None


def test_forward_and_reverse_differ_on_an_asymmetric_pair():
    # teacher bimodal, student sure of one mode: reverse KL (mode seeking) is small, forward large
    teacher = torch.tensor([[4.0, 4.0, -4.0, -4.0]])
    student = torch.tensor([[6.0, -2.0, -4.0, -4.0]])
    fwd, rev = float(kd_loss(student, teacher, 1.0, "forward")), float(kd_loss(student, teacher, 1.0, "reverse"))
    assert fwd > 1.5 * rev > 0


def test_distill_loss_mixes_kd_and_cross_entropy(pair):
    s, t = pair
    y = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    ce = F.cross_entropy(s.reshape(-1, 11), y.reshape(-1))
    torch.testing.assert_close(distill_loss(s, t, y, alpha=0.0), ce, rtol=1e-6, atol=1e-6)
    mixed = 0.3 * kd_loss(s, t, 2.0) + 0.7 * ce
    torch.testing.assert_close(distill_loss(s, t, y, T=2.0, alpha=0.3), mixed, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(distill_loss(s, t, y, alpha=1.0, kind="reverse"), kd_loss(s, t, 2.0, "reverse"))


def test_feature_loss_projects_the_student_width():
    torch.manual_seed(0)
    proj = Linear(8, 16)
    h_s, h_t = torch.randn(2, 3, 8), torch.randn(2, 3, 16)
    torch.testing.assert_close(feature_loss(h_s, h_t, proj), F.mse_loss(proj(h_s), h_t))
    with pytest.raises(ValueError, match=r"proj=Linear\(8, 16\)"):
        feature_loss(h_s, h_t)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda s, t: kd_loss(s, t, T=0), "T=0"),
        (lambda s, t: kd_loss(s, t, T=-1.0), "T=-1"),
        (lambda s, t: kd_loss(s, t, T=float("nan")), "T=nan"),
        (lambda s, t: kd_loss(s, t, T=True), "T=True"),
        (lambda s, t: kd_loss(s, t[..., :10]), "same shape"),
        (lambda s, t: kd_loss(s, t, kind="both"), "kind='both'"),
        (lambda s, t: distill_loss(s, t, torch.zeros(3, 4, dtype=torch.long)), "targets must be"),
        (lambda s, t: distill_loss(s, t, torch.zeros(3, 5, dtype=torch.long), alpha=1.5), "alpha=1.5"),
        (lambda s, t: soft_targets(torch.arange(4), 1.0), "float tensor"),
    ],
)
def test_bad_input_is_a_clear_error(pair, call, match):
    with pytest.raises(ValueError, match=match):
        call(*pair)


def test_distill_trains_a_student_toward_its_teacher():
    torch.manual_seed(0)
    teacher = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32))
    torch.manual_seed(1)
    student = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=1, n_embd=16))
    ids = torch.randint(0, 32, (2000,), generator=torch.Generator().manual_seed(2))
    hist = distill(student, teacher, ids, steps=40, T=2.0, alpha=1.0, batch_size=8, lr=1e-2, warmup=5, progress=False)
    assert len(hist["kd"]) == 40 and max(hist["lr"]) == pytest.approx(1e-2) and 1e-3 < hist["lr"][-1] < 1.1e-3  # cosine to lr/10
    assert sum(hist["kd"][-5:]) / 5 < 0.5 * sum(hist["kd"][:5]) / 5  # the student moves toward the teacher
    torch.manual_seed(1)
    again = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=1, n_embd=16))
    hist2 = distill(again, teacher, ids, steps=40, T=2.0, alpha=1.0, batch_size=8, lr=1e-2, warmup=5, progress=False)
    assert hist2["loss"] == hist["loss"]  # same seed, same student init: the same run
    with pytest.raises(ValueError, match="same tokenizer"):
        distill(GPT(GPTConfig(vocab_size=31, block_size=16, n_layer=1, n_head=1, n_embd=16)), teacher, ids, steps=1)


def test_distill_with_alpha_zero_is_the_courses_training_loop():
    # The fairness claim of the zoo's student-distilled: with alpha=0 distill() *is* minillm.train.train
    # (same init, batches, AdamW groups, schedule and clipping), so only the loss differs.
    from minillm.train import train

    cfg = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=1, n_embd=16)
    torch.manual_seed(0)
    teacher = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32))
    ids = torch.randint(0, 32, (2000,), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    a = GPT(cfg)
    torch.manual_seed(3)
    b = GPT(cfg)
    hist = distill(a, teacher, ids, steps=12, alpha=0.0, batch_size=4, lr=1e-2, warmup=3, seed=5, progress=False)
    ref = train(b, ids, steps=12, batch_size=4, lr=1e-2, warmup=3, eval_every=0, seed=5, progress=False, log=None)
    assert hist["ce"] == pytest.approx(ref["loss"], rel=1e-6)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=n)
    assert hist["seconds"] > 0 and hist["tokens_per_s"] > 0
