"""LoRA (Hu et al. 2021) against its defining properties and a plain torch.nn reference."""

import math

import pytest
import torch

from minillm.compress.lora import (
    LoRALinear,
    add_lora,
    load_lora,
    lora_state_dict,
    lora_targets,
    merge_lora,
    trainable_parameters,
)
from minillm.model import GPT, GPTConfig, Linear
from minillm.train import AdamW

pytestmark = pytest.mark.lesson02

CFG = GPTConfig(vocab_size=48, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(CFG)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, CFG.vocab_size, (4, CFG.block_size), generator=g)
    return x, torch.roll(x, -1, dims=1)


def _train(model, x, y, steps=5, lr=1e-2):
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        model(x, y)[1].backward()
        opt.step()


def test_at_init_the_adapted_model_equals_the_base_exactly(gpt, batch):
    x, _ = batch
    with torch.no_grad():
        before = gpt(x)[0].clone()
        add_lora(gpt, r=4)
        after = gpt(x)[0]
    assert torch.equal(before, after)  # B = 0: the update adds exact zeros


def test_trainable_count_is_r_times_in_plus_out_per_matrix(gpt):
    r = 4
    expected = 0
    for _, m in gpt.named_modules():
        if isinstance(m, Linear) and m is not gpt.lm_head:
            expected += r * (m.in_features + m.out_features)
    add_lora(gpt, r=r)
    assert trainable_parameters(gpt) == expected
    # c_attn 32->96, c_proj 32->32, c_fc 32->128, mlp c_proj 128->32, per layer, two layers
    assert expected == 2 * r * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))


def test_only_A_and_B_receive_gradients_and_A_is_zero_on_the_first_step(gpt, batch):
    add_lora(gpt, r=2)
    gpt(*batch)[1].backward()
    for name, p in gpt.named_parameters():
        if name.endswith((".A", ".B")):
            assert p.grad is not None, name
            if name.endswith(".A"):
                assert torch.count_nonzero(p.grad) == 0, "A's gradient is B^T(...) and B starts at 0"
            else:
                assert p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None and not p.requires_grad, name


def test_A_is_kaiming_uniform_and_B_is_zero():
    torch.manual_seed(0)
    layer = LoRALinear(Linear(400, 300), r=16)
    bound = 1 / math.sqrt(400)
    assert layer.A.shape == (16, 400) and layer.B.shape == (300, 16)
    assert layer.A.abs().max() <= bound and layer.A.abs().max() > 0.95 * bound
    assert layer.A.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)  # U(-b, b) has std b/√3
    assert torch.count_nonzero(layer.B) == 0


def test_after_training_merge_equals_unmerged(gpt, batch):
    x, y = batch
    add_lora(gpt, r=4, alpha=8)
    _train(gpt, x, y)
    with torch.no_grad():
        adapted = gpt(x)[0].clone()
        merge_lora(gpt)
        merged = gpt(x)[0]
    assert not any(True for m in gpt.modules() if isinstance(m, LoRALinear))
    assert all(p.requires_grad for p in gpt.parameters())
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)  # fp32: W + ΔW rounds differently


def test_save_load_round_trip_and_switching_adapters(gpt, batch):
    x, y = batch
    add_lora(gpt, r=4)
    _train(gpt, x, y, steps=3)
    first = lora_state_dict(gpt)
    with torch.no_grad():
        out_first = gpt(x)[0].clone()
    assert set(first) == {f"{n}.{w}" for n, m in gpt.named_modules() if isinstance(m, LoRALinear) for w in "AB"}
    adapter_bytes = sum(t.numel() * t.element_size() for t in first.values())
    assert adapter_bytes < 0.2 * sum(p.numel() * 4 for p in gpt.parameters())  # kilobytes, not the model
    _train(gpt, x, torch.roll(y, 1, dims=1), steps=3)  # a second task changes the adapters
    second = lora_state_dict(gpt)
    with torch.no_grad():
        assert not torch.allclose(gpt(x)[0], out_first)
        load_lora(gpt, first)
        torch.testing.assert_close(gpt(x)[0], out_first, rtol=0, atol=0)  # exactly the saved adapter
        load_lora(gpt, second)
        assert not torch.allclose(gpt(x)[0], out_first)


class _TorchLoRA(torch.nn.Module):
    """The reference: nn.Linear base and the update written with torch.nn only."""

    def __init__(self, base: torch.nn.Linear, A: torch.Tensor, scaling: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.A = torch.nn.Parameter(A.clone())
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, A.shape[0]))
        self.scaling = scaling

    def forward(self, x):
        return self.base(x) + self.scaling * torch.nn.functional.linear(torch.nn.functional.linear(x, self.A), self.B)


def test_matches_a_plain_torch_nn_reference_over_training():
    torch.manual_seed(0)
    ours = LoRALinear(Linear(24, 40), r=3, alpha=6)
    ref_base = torch.nn.Linear(24, 40)
    with torch.no_grad():
        ref_base.weight.copy_(ours.base.weight)
        ref_base.bias.copy_(ours.base.bias)
    ref = _TorchLoRA(ref_base, ours.A.detach(), scaling=2.0)
    opt_ours = AdamW([ours.A, ours.B], lr=1e-2, weight_decay=0.0)
    opt_ref = torch.optim.AdamW([ref.A, ref.B], lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        x, t = torch.randn(8, 24, generator=g), torch.randn(8, 40, generator=g)
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            ((model(x) - t) ** 2).mean().backward()
            opt.step()
    x = torch.randn(5, 24, generator=g)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)  # fp32, same ops up to summation order
    torch.testing.assert_close(ours.B, ref.B, rtol=1e-5, atol=1e-6)


def test_a_frozen_int4_base_trains_only_the_adapter():
    from minillm.compress.int4 import WeightOnlyLinear

    torch.manual_seed(0)
    fp = Linear(64, 32)
    q = WeightOnlyLinear.from_float(fp.weight, fp.bias, bits=4, group_size=32)
    layer = LoRALinear(q, r=4)
    x = torch.randn(6, 64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), q(x), rtol=0, atol=0)
    layer(x).sum().backward()
    assert layer.B.grad is not None and trainable_parameters(layer) == 4 * (64 + 32)
    with pytest.raises(TypeError, match="dequantize it first"):
        layer.merge()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: add_lora(m, r=4, targets=("c_atn",)), r"valid names: c_attn, c_fc, c_proj, lm_head"),
        (lambda m: add_lora(m, r=0), "r=0"),
        (lambda m: add_lora(m, r=33), "exceeds min"),
        (lambda m: add_lora(m, r=True), "r=True"),
        (lambda m: add_lora(m, r=2, dropout=1.5), "dropout"),
        (lambda m: merge_lora(m), "no LoRA adapters"),
        (lambda m: load_lora(add_lora(m, r=2), {"h.0.attn.c_attn.A": torch.zeros(2, 32)}), "does not match"),
    ],
)
def test_bad_input_is_a_clear_error(gpt, call, match):
    with pytest.raises(ValueError, match=match):
        call(gpt)


def test_lora_targets_lists_the_linear_names(gpt):
    assert lora_targets(gpt) == ["c_attn", "c_fc", "c_proj", "lm_head"]


def test_add_lora_wraps_an_int4_quantized_model_qlora(gpt, batch):
    from minillm.compress.int4 import WeightOnlyLinear
    from minillm.compress.model_quant import quantize_model

    q = quantize_model(gpt, weights="int4", activations=None)
    x, y = batch
    with torch.no_grad():
        before = q(x)[0].clone()
    add_lora(q, r=2, targets=("c_attn",))
    wrapped = [m for m in q.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == CFG.n_layer and all(isinstance(m.base, WeightOnlyLinear) for m in wrapped)
    assert trainable_parameters(q) == CFG.n_layer * 2 * (32 + 96)
    with torch.no_grad():
        assert torch.equal(q(x)[0], before)
    _train(q, x, y, steps=2)
    assert all(torch.count_nonzero(m.B) > 0 for m in wrapped)
