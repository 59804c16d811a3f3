"""minillm.train against torch.optim.AdamW and closed forms."""

import math

import pytest
import torch

from minillm.model import GPT, GPTConfig
from minillm.train import AdamW, adamw_update, clip_grad_norm_, cosine_lr, param_groups

pytestmark = pytest.mark.lesson01


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 4, generator=g)
    x = torch.randn(32, 4, generator=g)
    y = torch.randn(32, 6, generator=g)
    return w, x, y


def test_adamw_matches_torch_after_100_steps():
    w0, x, y = _problem()
    ours_p = w0.clone().requires_grad_(True)
    ref_p = w0.clone().requires_grad_(True)
    ours = AdamW([ours_p], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ref = torch.optim.AdamW([ref_p], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    for _ in range(100):
        for p, opt in ((ours_p, ours), (ref_p, ref)):
            opt.zero_grad()
            ((x @ p.t() - y) ** 2).mean().backward()
            opt.step()
    # Same fp32 arithmetic, different kernel order: the issue asks for 1e-6 after 100 steps.
    torch.testing.assert_close(ours_p, ref_p, atol=1e-6, rtol=1e-6)


def _gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16, **kw))


def test_param_groups_are_nanogpts_two_groups():
    model = _gpt()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = sorted(names[id(p)] for p in decay["params"])
    no_decay_names = sorted(names[id(p)] for p in no_decay["params"])
    # 2-D: every linear weight and both embeddings (wte is tied to lm_head, so it appears once).
    assert "wte.weight" in decay_names and "wpe.weight" in decay_names
    assert all(n.endswith("weight") for n in decay_names)
    assert "h.0.attn.c_attn.weight" in decay_names and "h.1.mlp.c_proj.weight" in decay_names
    # 1-D: biases and LayerNorm weights.
    assert "h.0.attn.c_attn.bias" in no_decay_names and "ln_f.weight" in no_decay_names
    assert all(dict(model.named_parameters())[n].dim() == 1 for n in no_decay_names)
    # Every parameter exactly once.
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params(non_embedding=False)


def test_adamw_groups_match_torch_over_50_steps():
    # bias=False: the key bias's gradient is zero in exact arithmetic (it shifts every
    # score of a row equally, and softmax ignores that), so in float32 it is rounding
    # noise that Adam scales up to lr-sized steps: no two kernels agree on it. Without
    # biases the no-decay group holds the LayerNorm weights.
    ours_m, ref_m = _gpt(1, bias=False), _gpt(1, bias=False)
    x = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(2))
    y = torch.roll(x, -1, dims=1)
    ours_groups = param_groups(ours_m, 0.1)
    ours_groups[1]["lr"] = 3e-3  # a group with its own lr, as torch allows
    ref_groups = param_groups(ref_m, 0.1)
    ref_groups[1]["lr"] = 3e-3
    ours = AdamW(ours_groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref = torch.optim.AdamW(ref_groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(50):
        for model, opt in ((ours_m, ours), (ref_m, ref)):
            opt.zero_grad()
            model(x, y)[1].backward()
            opt.step()
    # The same float32 operations in torch's order, on the same gradients: the same bits after
    # 50 steps (the issue asked for 1e-6; a different order drifted to 1.3e-6 here).
    for (name, p), q in zip(ours_m.named_parameters(), ref_m.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=lambda m: f"{name}: {m}")
    assert ours.param_groups[1]["weight_decay"] == 0.0 and len(ours.param_groups[1]["params"]) == 5  # 2·2 + ln_f


def test_adamw_group_lr_follows_the_schedule_unless_set():
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = AdamW([{"params": [p]}, {"params": [q], "lr": 0.0}], lr=0.1, weight_decay=0.0)
    opt.lr = 0.5  # the schedule changes the default lr
    p.grad, q.grad = torch.ones(2), torch.ones(2)
    opt.step()
    # First step moves by lr·sign(g): 0.5 for the group without its own lr, 0 for lr=0.
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(q.detach(), torch.ones(2), atol=0, rtol=0)


def test_adamw_update_is_the_same_step_as_the_class():
    w0, x, y = _problem(1)
    p = w0.clone().requires_grad_(True)
    opt = AdamW([p], lr=3e-3, weight_decay=0.01)
    m = torch.zeros_like(w0)
    v = torch.zeros_like(w0)
    w = w0.clone()
    for t in range(1, 6):
        wr = w.clone().requires_grad_(True)
        ((x @ wr.t() - y) ** 2).mean().backward()
        w, m, v = adamw_update(w, wr.grad, m, v, t, lr=3e-3, weight_decay=0.01)
        opt.zero_grad()
        ((x @ p.t() - y) ** 2).mean().backward()
        opt.step()
    torch.testing.assert_close(p.detach(), w, atol=1e-6, rtol=1e-6)  # fp32, one formula two codings


def test_adamw_first_step_moves_by_lr():
    """Closed form: with bias correction, the first Adam step is lr·sign(g) (for |g| >> eps)."""
    p = torch.tensor([1.0, -2.0])
    g = torch.tensor([0.5, -3.0])
    new, _, _ = adamw_update(p, g, torch.zeros(2), torch.zeros(2), 1, lr=0.1, weight_decay=0.0)
    torch.testing.assert_close(new, p - 0.1 * torch.sign(g), atol=1e-6, rtol=0)


def test_adamw_rejects_bad_arguments():
    with pytest.raises(ValueError, match="step=0"):
        adamw_update(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0, lr=1e-3)
    with pytest.raises(ValueError, match="betas"):
        AdamW([torch.zeros(1, requires_grad=True)], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="lr=-1"):
        AdamW([torch.zeros(1, requires_grad=True)], lr=-1.0)
    with pytest.raises(ValueError, match=r"params\[0\] has unknown keys \['momentum'\]"):
        AdamW([{"params": [torch.zeros(1, requires_grad=True)], "momentum": 0.9}])
    with pytest.raises(ValueError, match="no trainable parameters"):
        AdamW([])


def test_cosine_schedule_shape():
    lrs = [cosine_lr(s, 1.0, warmup=10, total=110, min_lr=0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:]))  # monotone after warm-up


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a = [torch.randn(3, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    b = [t.detach().clone().requires_grad_(True) for t in a]
    for t in a + b:
        t.grad = None
    for ps in (a, b):
        (ps[0].sum() * 5 + (ps[1] ** 2).sum() * 3).backward()
    n1 = clip_grad_norm_(a, 1.0)
    n2 = torch.nn.utils.clip_grad_norm_(b, 1.0)
    assert n1 == pytest.approx(float(n2), rel=1e-6)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-6, rtol=1e-5)  # torch adds eps=1e-6 too
