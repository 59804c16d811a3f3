"""Pruning masks against hand-computed fixtures, torch.nn.utils.prune and torch.ao.pruning."""

import warnings

import pytest
import torch

from minillm.compress.prune import (
    GradualPruner,
    activation_norms,
    cubic_sparsity,
    global_magnitude_masks,
    magnitude_mask,
    nm_mask,
    prunable_linears,
    prune_model,
    sparsity_report,
    wanda_mask,
)
from minillm.model import GPT, GPTConfig
from minillm.train import AdamW

pytestmark = pytest.mark.lesson03

CFG = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)


def _tie_free(shape, seed=0):
    """A weight whose |w| are all distinct: a random permutation of 1..n with random signs."""
    g = torch.Generator().manual_seed(seed)
    n = torch.Size(shape).numel()
    vals = (torch.randperm(n, generator=g).float() + 1) / n
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return (vals * signs).view(shape)


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(CFG)


def test_magnitude_mask_on_a_hand_computed_fixture():
    w = torch.tensor([[0.1, -0.5, 0.3, -0.05], [2.0, 0.6, -0.01, 0.4]])
    # |w| sorted: .01 .05 .1 .3 | .4 .5 .6 2: the layer's four smallest go
    assert magnitude_mask(w, 0.5).tolist() == [[False, True, False, False], [True, True, False, True]]
    # per row: int(4 * 0.5) = 2 smallest of each row go
    assert magnitude_mask(w, 0.5, scope="row").tolist() == [[False, True, True, False], [True, True, False, False]]
    assert magnitude_mask(w, 0.0).all()


@pytest.mark.parametrize("sparsity", [0.1, 0.25, 0.5, 0.73, 0.9])
def test_layer_scope_equals_torch_l1_unstructured(sparsity):
    import torch.nn.utils.prune as tprune

    w = _tie_free((24, 40), seed=int(sparsity * 100))
    ref = torch.nn.Linear(40, 24)
    with torch.no_grad():
        ref.weight.copy_(w)
    tprune.l1_unstructured(ref, "weight", amount=sparsity)
    assert torch.equal(magnitude_mask(w, sparsity), ref.weight_mask.bool())
    assert int((~magnitude_mask(w, sparsity)).sum()) == round(w.numel() * sparsity)  # exactly the requested count


def test_row_scope_removes_the_same_count_in_every_row():
    w = _tie_free((7, 30))
    mask = magnitude_mask(w, 0.4, scope="row")
    assert ((~mask).sum(1) == int(30 * 0.4)).all()


def test_nm_mask_equals_torch_ao_weight_norm_sparsifier():
    from torch.ao.pruning import WeightNormSparsifier

    w = _tie_free((8, 32), seed=3)
    model = torch.nn.Sequential(torch.nn.Linear(32, 8))
    with torch.no_grad():
        model[0].weight.copy_(w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
        sp.prepare(model, config=[{"tensor_fqn": "0.weight"}])
        sp.step()
    ref = model[0].parametrizations.weight[0].mask.bool()
    mask = nm_mask(w, 2, 4)
    assert torch.equal(mask, ref)
    assert (mask.view(8, 8, 4).sum(-1) == 2).all()  # 2 of every 4, everywhere


def test_nm_mask_with_scores_keeps_the_best_scored():
    w = torch.ones(1, 4)
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2]])
    assert nm_mask(w, 2, 4, scores=scores).tolist() == [[False, True, True, False]]


def test_wanda_weighs_each_input_by_its_activation_norm():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    norms = torch.tensor([10.0, 1.0, 1.0, 0.1])  # scores row 0: 10, 2, 3, 0.4; row 1: 40, 3, 2, 0.1
    assert wanda_mask(w, norms, 0.5).tolist() == [[True, False, True, False], [True, True, False, False]]
    # with equal norms, Wanda is per-row magnitude
    w2 = _tie_free((6, 20))
    assert torch.equal(wanda_mask(w2, torch.ones(20), 0.3), magnitude_mask(w2, 0.3, scope="row"))


def test_activation_norms_are_the_l2_norms_of_each_linears_input(gpt):
    ids = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(1))
    norms = activation_norms(gpt, ids)
    assert set(norms) == set(prunable_linears(gpt)) and "lm_head" not in norms
    seen = {}
    h = gpt.h[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach()))
    with torch.no_grad():
        gpt(ids)
    h.remove()
    torch.testing.assert_close(norms["h.0.mlp.c_fc"], seen["x"].reshape(-1, 32).norm(dim=0), rtol=1e-5, atol=1e-6)


def test_global_masks_use_one_threshold_and_remove_exactly_the_count(gpt):
    masks = global_magnitude_masks(gpt, 0.6)
    layers = prunable_linears(gpt)
    total = sum(m.weight.numel() for m in layers.values())
    removed = sum(int((~mk).sum()) for mk in masks.values())
    assert removed == round(total * 0.6)
    kept_min = min(float(layers[n].weight.detach().abs()[mk].min()) for n, mk in masks.items())
    dropped_max = max(float(layers[n].weight.detach().abs()[~mk].max()) for n, mk in masks.items())
    assert dropped_max <= kept_min  # one threshold for all layers
    # the smaller-initialised residual projections lose more than c_fc
    sp = {n: float((~mk).float().mean()) for n, mk in masks.items()}
    assert sp["h.0.attn.c_proj"] > sp["h.0.mlp.c_fc"]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "2:4"])
def test_prune_model_zeroes_the_masked_weights_and_reports_them(gpt, method):
    ids = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(1))
    model, masks = prune_model(gpt, method, 0.5, calibration_ids=ids if method == "wanda" else None)
    for name, m in prunable_linears(model).items():
        assert torch.equal(m.weight == 0, ~masks[name])
    rows = sparsity_report(model)
    assert rows[-1]["name"] == "total" and rows[-1]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert all(r["zeros"] == int((~masks[r["name"]]).sum()) for r in rows[:-1])


def test_cubic_schedule_matches_zhu_and_gupta():
    assert cubic_sparsity(0, 0.0, 0.8, 10) == 0.0
    assert cubic_sparsity(10, 0.0, 0.8, 10) == pytest.approx(0.8)
    assert cubic_sparsity(5, 0.0, 0.8, 10) == pytest.approx(0.8 * (1 - 0.5**3))  # 0.7: most pruning early
    assert cubic_sparsity(20, 0.1, 0.8, 10) == pytest.approx(0.8)


def test_gradual_pruner_keeps_pruned_weights_at_zero_while_training(gpt):
    ids = torch.randint(0, 40, (4, 16), generator=torch.Generator().manual_seed(2))
    pruner = GradualPruner(gpt, s_final=0.75, n_steps=6, scope="global")
    opt = AdamW(gpt.parameters(), lr=1e-2)
    applied = []
    for _ in range(8):
        opt.zero_grad()
        gpt(ids, ids)[1].backward()
        opt.step()
        applied.append(pruner.step())
        report = sparsity_report(gpt)[-1]
        assert report["sparsity"] == pytest.approx(applied[-1], abs=1e-3)
    assert applied == sorted(applied) and applied[-1] == pytest.approx(0.75)
    last = {n: mk.clone() for n, mk in pruner.masks.items()}
    opt.zero_grad()
    gpt(ids, ids)[1].backward()
    opt.step()  # the optimizer revives pruned weights ...
    pruner.step()  # ... and the pruner zeroes them again, with the same mask
    for name, m in prunable_linears(gpt).items():
        assert torch.equal(pruner.masks[name], last[name]) and torch.equal(m.weight == 0, ~last[name])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: magnitude_mask(m.h[0].mlp.c_fc.weight, 1.0), "sparsity=1"),
        (lambda m: magnitude_mask(m.h[0].mlp.c_fc.weight, -0.1), "sparsity=-0.1"),
        (lambda m: magnitude_mask(m.h[0].mlp.c_fc.weight, 0.5, scope="col"), "scope='col'"),
        (lambda m: magnitude_mask(torch.ones(4), 0.5), r"float matrix \[out, in\]"),
        (lambda m: nm_mask(torch.ones(3, 6), 2, 4), "m=4 does not divide"),
        (lambda m: nm_mask(torch.ones(3, 8), 5, 4), "n=5 must be <= m=4"),
        (lambda m: wanda_mask(torch.ones(3, 8), torch.ones(7), 0.5), "8 input-feature norms"),
        (lambda m: prune_model(m, "wanda", 0.5), "pass calibration_ids"),
        (lambda m: prune_model(m, "2:4", 0.6), "always 0.5"),
        (lambda m: prune_model(m, "random", 0.5), "method='random'"),
        (lambda m: activation_norms(m, torch.randn(2, 16)), "calibration_ids must be token ids"),
        (lambda m: GradualPruner(m, s_final=0.3, n_steps=5, s_init=0.5), "only grows"),
    ],
)
def test_bad_input_is_a_clear_error(gpt, call, match):
    with pytest.raises(ValueError, match=match):
        call(gpt)
