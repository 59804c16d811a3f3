"""The hand-written backward passes in minillm.kernels.

gradcheck compares each analytic gradient with finite differences in float64
(torch's default tolerances: atol=1e-5, rtol=1e-3). The float32 comparisons
against torch's own layers use atol=1e-5 (the same sums in another order).
"""

import pytest
import torch
import torch.nn.functional as F

from minillm import kernels
from minillm.model import causal_attention, cross_entropy, gelu

pytestmark = pytest.mark.lesson01


def _d(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)


def test_layer_norm_gradcheck():
    x, w, b = _d(2, 3, 5), _d(5, seed=1), _d(5, seed=2)
    assert torch.autograd.gradcheck(lambda x, w, b: kernels.layer_norm(x, w, b), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: kernels.layer_norm(x, w, None), (x, w))


def test_gelu_gradcheck():
    assert torch.autograd.gradcheck(kernels.gelu, (_d(4, 7) * 3,))


def test_attention_gradcheck():
    q, k, v = _d(1, 2, 4, 3), _d(1, 2, 4, 3, seed=1), _d(1, 2, 4, 3, seed=2)
    assert torch.autograd.gradcheck(kernels.causal_attention_core, (q, k, v))
    # a query block shorter than the keys (the KV-cache case)
    q2 = _d(1, 2, 2, 3, seed=3)
    assert torch.autograd.gradcheck(kernels.causal_attention_core, (q2, k, v))


def test_cross_entropy_gradcheck():
    z = _d(6, 5)
    t = torch.tensor([0, 4, -1, 2, 2, 1])
    assert torch.autograd.gradcheck(lambda z: kernels.cross_entropy_loss(z, t), (z,))


def test_fused_equal_readable_and_torch():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 4) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(kernels.causal_attention_core(q, k, v), ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(kernels.causal_attention_core(q, k, v), causal_attention(q, k, v), atol=1e-6, rtol=1e-5)
    z = torch.randn(10, 7) * 5
    t = torch.randint(0, 7, (10,))
    torch.testing.assert_close(kernels.cross_entropy_loss(z, t), F.cross_entropy(z, t), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(kernels.cross_entropy_loss(z, t), cross_entropy(z, t), atol=1e-6, rtol=1e-5)
    x = torch.randn(3, 8)
    torch.testing.assert_close(kernels.gelu(x), F.gelu(x), atol=1e-6, rtol=1e-5)


def test_from_scratch_functions_equal_the_fused_inference_kernels_and_the_definitions():
    # With grad, layer_norm and gelu run the tensor-operation Functions; without, torch's
    # fused kernels. float32, values up to ~10 and a row mean far from zero: atol 1e-5.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 9, 64, generator=g) * 3 + 2
    w, b = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        ln_fused, gelu_fused = kernels.layer_norm(x, w, b), kernels.gelu(x)
    ln_scratch, gelu_scratch = kernels.layer_norm(xg, w, b), kernels.gelu(xg)
    assert ln_scratch.grad_fn is not None and gelu_scratch.grad_fn is not None  # the Function ran
    torch.testing.assert_close(ln_scratch.detach(), ln_fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gelu_scratch.detach(), gelu_fused, atol=1e-5, rtol=1e-5)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    torch.testing.assert_close(ln_fused, (x - mean) / torch.sqrt(var + 1e-5) * w + b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gelu_fused, gelu(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_attention_query_blocks_gradcheck(monkeypatch, block):
    # Each query block multiplies only against the keys it can see; exercise the split on
    # small shapes (blocks of 1-3 queries instead of 64), including an uneven last block
    # and queries shorter than the keys (the KV-cache case).
    monkeypatch.setattr(kernels, "QUERY_BLOCK", block)
    q, k, v = _d(1, 2, 7, 3), _d(1, 2, 7, 3, seed=1), _d(1, 2, 7, 3, seed=2)
    assert torch.autograd.gradcheck(kernels.causal_attention_core, (q, k, v))
    q2 = _d(1, 2, 5, 3, seed=3)
    assert torch.autograd.gradcheck(kernels.causal_attention_core, (q2, k, v))


def test_blocked_attention_matches_torch_at_training_length():
    # At T = 256 the default split is on: values and gradients against SDPA (float32;
    # the tolerances cover float32 summation in a different order).
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 256, 32, requires_grad=True) for _ in range(3))
    assert len(kernels._query_blocks(256, 256)) == 256 // kernels.QUERY_BLOCK > 1
    y = kernels.causal_attention_core(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-4)
    dy = torch.randn_like(y)
    g = torch.autograd.grad(y, (q, k, v), dy)
    g_ref = torch.autograd.grad(ref, (q, k, v), dy)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # the inference path shares the blocked forward
        torch.testing.assert_close(kernels.causal_attention_core(q, k, v), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("Tq, Tk", [(1, 1), (1, 37), (64, 64), (100, 100), (70, 200), (256, 256)])
def test_inference_attention_equals_the_training_path_and_the_definition(Tq, Tk):
    # The no-grad path reuses one score buffer, softmaxes in place and writes Y into a
    # [B, T, H, D] buffer; it must give the training path's values (same fp32 ops: exact)
    # and the readable definition's to 1e-6 (fp32 attention outputs are O(1)).
    g = torch.Generator().manual_seed(Tq * 1000 + Tk)
    q = torch.randn(2, 3, Tq, 16, generator=g)
    k, v = torch.randn(2, 3, Tk, 16, generator=g), torch.randn(2, 3, Tk, 16, generator=g)
    with torch.no_grad():
        fast = kernels.causal_attention_core(q, k, v)
    train = kernels.causal_attention_core(q.requires_grad_(), k, v).detach()
    assert fast.shape == (2, 3, Tq, 16)
    torch.testing.assert_close(fast, train, atol=0, rtol=0)
    torch.testing.assert_close(fast, causal_attention(q.detach(), k, v), atol=1e-6, rtol=1e-5)
