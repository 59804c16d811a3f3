"""SmoothQuant scales and folding, outlier injection (lesson 04)."""

import pytest
import torch

from minillm.compress.quantize import (
    Int8Linear,
    collect_act_absmax,
    inject_outliers,
    quantize_model,
    smooth_model,
    smoothquant_scales,
)
from minillm.compress.smoothquant import smooth_pairs
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson04


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=48, block_size=16, n_layer=2, n_head=2, n_embd=32))
    # Give LayerNorms non-trivial affine parameters, as a trained model has.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".ln_" in name:
                p.add_(0.3 * torch.randn_like(p))
    return m.eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 48, (4, 16), generator=torch.Generator().manual_seed(1))


def test_smoothquant_scales_formula():
    a, w = torch.tensor([4.0, 1.0, 9.0]), torch.tensor([1.0, 4.0, 0.25])
    # s = a^0.5 / w^0.5 (Xiao et al. 2023, Eq. 4), by hand: [2, 0.5, 6]
    torch.testing.assert_close(smoothquant_scales(a, w), torch.tensor([2.0, 0.5, 6.0]), rtol=1e-6, atol=0)
    torch.testing.assert_close(smoothquant_scales(a, w, alpha=1.0), a, rtol=1e-6, atol=0)  # all into weights
    torch.testing.assert_close(smoothquant_scales(a, w, alpha=0.0), 1 / w, rtol=1e-6, atol=0)


def test_smoothing_is_exact_in_math_and_balances_ranges():
    g = torch.Generator().manual_seed(2)
    X, W = torch.randn(64, 32, generator=g), torch.randn(16, 32, generator=g) * 0.1
    X[:, [3, 20]] *= 40.0  # outlier channels
    s = smoothquant_scales(X.abs().amax(0), W.abs().amax(0), alpha=0.5)
    # (X/s)(W·s)^T = X W^T; float32 reassociation only: rtol 1e-5
    torch.testing.assert_close((X / s) @ (W * s).t(), X @ W.t(), rtol=1e-5, atol=1e-5)
    # at alpha=0.5 each channel's activation range equals its weight range: sqrt(a_j·w_j)
    torch.testing.assert_close((X / s).abs().amax(0), (W * s).abs().amax(0), rtol=1e-5, atol=0)
    assert float((X / s).abs().amax()) < 0.2 * float(X.abs().amax())  # outliers flattened


def test_smooth_model_leaves_logits_unchanged_and_original_untouched(gpt, ids):
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    ref, _ = gpt(ids)
    sm = smooth_model(gpt, calibration=ids)
    fold_only = quantize_model(gpt, weights=None, activations=None, method="smoothquant", calibration=ids)
    # The fold is exact in real arithmetic; float32 rounding of w/s and x·s gives ~1e-6 relative.
    torch.testing.assert_close(sm(ids)[0], ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fold_only(ids)[0], ref, rtol=1e-4, atol=1e-5)
    for k, v in gpt.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    assert not torch.equal(sm.h[0].ln_1.weight, gpt.h[0].ln_1.weight)  # and the copy did change
    assert [p[0] for p in smooth_pairs(gpt)] == ["h.0.attn.c_attn", "h.0.mlp.c_fc", "h.1.attn.c_attn", "h.1.mlp.c_fc"]


def test_inject_outliers_keeps_function_and_creates_outliers(gpt, ids):
    om = inject_outliers(gpt, n_channels=2, factor=20.0, seed=0)
    # Scaling LN channel j by 20 and the next Linear's column j by 1/20 is exact in real
    # arithmetic; float32 gives ~1e-6 relative.
    torch.testing.assert_close(om(ids)[0], gpt(ids)[0], rtol=1e-4, atol=1e-5)
    chans = om.outlier_channels
    stats = collect_act_absmax(om, ids)["h.1.mlp.c_fc"]
    normal = [c for c in range(32) if c not in chans]
    assert float(stats[chans].min()) > 5 * float(stats[normal].max())


@torch.no_grad()
def test_smoothquant_and_llm_int8_repair_w8a8_on_outliers(gpt, ids):
    om = inject_outliers(gpt, n_channels=2, factor=30.0, seed=0)
    ref, _ = om(ids)
    err = lambda m: float((m(ids)[0] - ref).norm() / ref.norm())  # noqa: E731
    rtn_model = quantize_model(om, "int8", "int8")
    assert isinstance(rtn_model.h[0].attn.c_attn, Int8Linear)
    rtn = err(rtn_model)
    sq = err(quantize_model(om, "int8", "int8", method="smoothquant", calibration=ids))
    llm = err(quantize_model(om, "int8", "int8", method="llm_int8", threshold=6.0))
    # Per-token int8 spends its levels on the outlier channels. SmoothQuant moves the
    # range into the weights and must win clearly (measured: ~7x smaller error).
    assert sq < 0.5 * rtn
    # LLM.int8() keeps the outlier features in float but, like bitsandbytes, multiplies
    # them with int8 weights; our injection shrank those weight columns 30x, so their
    # rounding error grows and the gain is smaller (measured: ~1.6x). It must still win.
    assert llm < rtn


def test_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        smoothquant_scales(torch.ones(3), torch.ones(3), alpha=1.5)
    with pytest.raises(ValueError, match=r"\[K\]"):
        smoothquant_scales(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="calibration"):
        smooth_model(GPT(GPTConfig(8, 4, 1, 1, 8)))
    with pytest.raises(ValueError, match="factor"):
        inject_outliers(GPT(GPTConfig(8, 4, 1, 1, 8)), factor=-1)
