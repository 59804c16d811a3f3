"""Structured pruning: smaller dense GPTs that compute what the masked model computes."""

import pytest
import torch

from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.compress.structured import (
    drop_layers,
    head_importance,
    mask_heads,
    neuron_importance,
    prune_heads,
    prune_neurons,
)
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson03

CFG = GPTConfig(vocab_size=48, block_size=16, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(CFG).eval()


@pytest.fixture
def ids():
    return torch.randint(0, 48, (3, 16), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_pruning_a_head_with_zero_output_weights_changes_nothing(gpt, ids):
    attn = gpt.h[1].attn
    attn.c_proj.weight[:, 8:16] = 0.0  # head 1 of layer 1 writes nothing to the residual stream
    ref = gpt(ids)[0]
    small = prune_heads(gpt, {1: [0, 2, 3]})
    assert small.config.layer_heads == (4, 3)
    torch.testing.assert_close(small(ids)[0], ref, rtol=1e-6, atol=1e-6)  # fp32, the same sums minus zeros


@torch.no_grad()
def test_structured_heads_equal_the_masked_model_and_are_smaller(gpt, ids):
    keep = {0: [1, 3], 1: [0, 1, 2]}
    masked = mask_heads(gpt, {0: [0, 2], 1: [3]})
    small = prune_heads(gpt, keep)
    torch.testing.assert_close(small(ids)[0], masked(ids)[0], rtol=1e-5, atol=1e-5)  # summation order differs
    removed = 3 * (3 * 8 * 32 + 3 * 8 + 32 * 8)  # 3 heads: 3·D rows of c_attn and their biases, D columns of c_proj
    assert gpt.num_params() - small.num_params() == removed


@torch.no_grad()
def test_structured_neurons_equal_zeroing_them(gpt, ids):
    small = prune_neurons(gpt, 0.5)  # keep the 64 strongest of 128 per layer
    assert small.config.layer_mlp == (64, 64)
    scores = neuron_importance(gpt)
    masked = GPT(CFG).eval()
    masked.load_state_dict(gpt.state_dict())
    for block, s in zip(masked.h, scores):
        drop = torch.topk(s, 64, largest=False).indices
        block.mlp.c_proj.weight[:, drop] = 0.0
    torch.testing.assert_close(small(ids)[0], masked(ids)[0], rtol=1e-5, atol=1e-5)
    assert small.num_params() < gpt.num_params()


def test_importance_ranks_by_output_weights_and_by_taylor(gpt, ids):
    with torch.no_grad():
        gpt.h[0].attn.c_proj.weight[:, 16:24] *= 10  # head 2 of layer 0 becomes the loudest
    assert int(head_importance(gpt)[0].argmax()) == 2
    taylor = head_importance(gpt, ids)
    assert [t.shape for t in taylor] == [torch.Size([4]), torch.Size([4])] and all((t >= 0).all() for t in taylor)
    assert all(p.grad is None for p in gpt.parameters())  # calibration leaves no gradients behind
    assert [s.shape for s in neuron_importance(gpt, ids)] == [torch.Size([128])] * 2


def test_a_pruned_model_round_trips_through_a_checkpoint(gpt, ids, tmp_path):
    small = prune_neurons(prune_heads(gpt, 2), 32)
    path = tmp_path / "small.pt"
    save_checkpoint(path, small, half=False)
    loaded, _, _ = load_checkpoint(path)
    assert loaded.config == small.config and loaded.config.layer_heads == (2, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], small(ids)[0], rtol=0, atol=0)  # float32 stored: exact
    assert loaded.generate(ids[:, :4], 4, temperature=0).shape == (3, 8)  # the KV cache handles fewer heads


@torch.no_grad()
def test_drop_layers_skips_the_blocks(gpt, ids):
    short = drop_layers(gpt, [0])
    assert short.config.n_layer == 1 and len(short.h) == 1
    x = gpt.wte(ids) + gpt.wpe(torch.arange(16))
    ref = gpt.lm_head(gpt.ln_f(gpt.h[1](x)))
    torch.testing.assert_close(short(ids)[0], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: prune_heads(m, 0), "keep at least 1"),
        (lambda m: prune_heads(m, 5), "at most 4"),
        (lambda m: prune_heads(m, 1.5), "fraction in"),
        (lambda m: prune_heads(m, {0: [0, 4]}), r"indices in \[0, 4\)"),
        (lambda m: prune_neurons(m, {1: []}), "give 1 to 128"),
        (lambda m: drop_layers(m, [0, 1]), "at least one block"),
        (lambda m: head_importance(m, torch.zeros(2, 1, dtype=torch.long)), "T >= 2"),
        (lambda m: GPTConfig(48, 16, 2, 4, 32, layer_heads=(4,)), "one count per layer"),
        (lambda m: GPTConfig(48, 16, 2, 4, 32, layer_heads=(4, 5)), "exceeds n_head=4"),
    ],
)
def test_bad_input_is_a_clear_error(gpt, call, match):
    with pytest.raises(ValueError, match=match):
        call(gpt)


def test_taylor_scores_work_inside_prune_heads_and_prune_neurons(gpt, ids):
    """prune_heads/prune_neurons run under no_grad; their Taylor scores still get their backward pass."""
    small = prune_neurons(prune_heads(gpt, 2, calibration_ids=ids), 32, calibration_ids=ids)
    assert small.config.layer_heads == (2, 2) and small.config.layer_mlp == (32, 32)
    assert all(p.grad is None for p in gpt.parameters())
