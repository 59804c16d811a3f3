"""The compression pipeline: plans, sizes predicted in closed form, Pareto fronts, the search and its budget,
and compressed checkpoints (pruned shapes and integer weights survive a save and a load; old files still load)."""

import itertools
import random

import pytest
import torch

from minillm.checkpoint import CheckpointError, dequantize_codes, load_checkpoint, save_checkpoint
from minillm.compress.int4 import WeightOnlyLinear
from minillm.compress.int8_linear import Int8Linear
from minillm.compress.model_quant import size_report
from minillm.compress.pipeline import (
    BudgetNotMet,
    Plan,
    apply_plan,
    compress,
    default_plans,
    evaluate_plans,
    kept_count,
    pareto_front,
    predict_bytes,
    select,
)
from minillm.compress.pipeline_checkpoint import load_compressed, quantization_of, save_compressed
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson06

CFG = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=64)
X = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(CFG).eval()


@pytest.fixture(scope="module")
def ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 64, (4000,), generator=g), torch.randint(0, 64, (600,), generator=g)


# --------------------------------------------------------------------------- plans and sizes


def test_plan_rejects_bad_values():
    with pytest.raises(ValueError, match="heads"):
        Plan(heads=0.0)
    with pytest.raises(ValueError, match="mlp"):
        Plan(mlp=1.5)
    with pytest.raises(ValueError, match="weights"):
        Plan(weights="int3")
    with pytest.raises(ValueError, match="order"):
        Plan(order="quantize-first")
    with pytest.raises(ValueError, match="steps"):
        Plan(steps=-1)


def test_plan_names():
    assert Plan().name == "float32"
    assert Plan(0.5, 0.5, 40, "int8").name == "heads 50% mlp 50% -> distill 40 -> int8"
    assert Plan(0.5, 0.5, 40, "int8", "quantize-then-distill").name == "heads 50% mlp 50% -> int8 -> distill 40 (QAT)"
    assert Plan(1.0, 0.5, 40, "int8", drop=2).name == "drop 2 blocks, heads 100% mlp 50% -> distill 40 -> int8"


@pytest.mark.parametrize(
    "n, f, multiple, want",
    [(4, 0.5, 1, 2), (4, 0.75, 1, 3), (4, 0.1, 1, 1), (512, 0.5, 32, 256), (512, 0.3, 32, 160), (512, 0.01, 32, 32),
     (100, 0.5, 32, 50), (8, 1.0, 32, 8)],
)
def test_kept_count(n, f, multiple, want):
    assert kept_count(n, f, multiple) == want


PLANS = [Plan(), Plan(weights="int8"), Plan(weights="int4"), Plan(0.5, 1.0), Plan(1.0, 0.3, 0, "int8"), Plan(0.5, 0.5, 0, "int4"),
         Plan(drop=1), Plan(0.5, 0.5, 0, "int8", drop=1)]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.name)
def test_predict_bytes_equals_the_built_model(gpt, ids, plan):
    """The closed form against size_report of the model the plan really builds (exact, in bytes)."""
    model = apply_plan(gpt, plan, ids[0])
    assert predict_bytes(CFG, plan) == size_report(model)["total_bytes"]


@pytest.mark.parametrize("weights", [None, "int8", "int4"])
def test_predict_bytes_untied_head(ids, weights):
    """An untied output layer is a bias-free Linear, quantized like the others."""
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=64, tie_weights=False)
    torch.manual_seed(0)
    plan = Plan(0.5, 0.5, 0, weights)
    assert predict_bytes(cfg, plan) == size_report(apply_plan(GPT(cfg), plan, ids[0]))["total_bytes"]


def test_predict_bytes_hand_computed():
    """Float32 teacher-like config by hand: 4 bytes per parameter, the tied head counted once."""
    cfg = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=8)
    params = 10 * 8 + 4 * 8 + 2 * 8 + 2 * 2 * 8 + (8 * 24 + 24) + (8 * 8 + 8) + (8 * 32 + 32) + (32 * 8 + 8)
    assert predict_bytes(cfg, Plan()) == 4 * params == 4 * sum(p.numel() for p in GPT(cfg).parameters())
    # int8: one byte per linear weight plus a float32 scale per output row; the rest float32
    lin = 8 * 24 + 8 * 8 + 8 * 32 + 32 * 8
    rows = 24 + 8 + 32 + 8
    assert predict_bytes(cfg, Plan(weights="int8")) == 4 * params - 4 * lin + lin + 4 * rows


def test_apply_plan_builds_the_right_layers(gpt, ids):
    m = apply_plan(gpt, Plan(0.5, 0.5, 0, "int8"), ids[0])
    assert m.config.layer_heads == (1, 1) and m.config.layer_mlp == (128, 128)
    assert isinstance(m.h[0].mlp.c_fc, Int8Linear)
    m4 = apply_plan(gpt, Plan(weights="int4"), ids[0])
    assert isinstance(m4.h[1].attn.c_proj, WeightOnlyLinear) and m4.h[1].attn.c_proj.bits == 4
    assert gpt.config.layer_heads is None  # the original is untouched


SEQ = torch.arange(3000) % 16 * 3 % 64  # a period-16 pattern a small GPT learns in a few dozen steps


@pytest.fixture(scope="module")
def pattern_teacher():
    from minillm.train import train

    torch.manual_seed(0)
    teacher = GPT(CFG)
    train(teacher, SEQ, SEQ[:600], steps=60, batch_size=8, lr=3e-3, warmup=5, eval_every=60, seed=0, progress=False)
    return teacher.eval()


def test_recovery_wins_back_what_pruning_lost(pattern_teacher):
    """On a learnable sequence: prune a trained GPT, then a few distillation steps lower its validation loss a lot."""
    from minillm.evaluate import evaluate_loss

    before = evaluate_loss(apply_plan(pattern_teacher, Plan(0.5, 0.5), SEQ), SEQ[:600])
    after = evaluate_loss(apply_plan(pattern_teacher, Plan(0.5, 0.5, 30), SEQ), SEQ[:600])
    assert after < 0.5 * before


def test_depth_pruning_drops_the_least_harmful_block(pattern_teacher, ids):
    """A trained GPT with block 1 silenced (its residual contributions zeroed): dropping one block removes block 1."""
    from minillm.compress.structured import drop_layers

    m = GPT(CFG).eval()
    m.load_state_dict(pattern_teacher.state_dict())
    with torch.no_grad():
        m.h[1].attn.c_proj.weight.zero_()
        m.h[1].attn.c_proj.bias.zero_()
        m.h[1].mlp.c_proj.weight.zero_()
        m.h[1].mlp.c_proj.bias.zero_()
    out = apply_plan(m, Plan(drop=1), SEQ)
    assert out.config.n_layer == 1
    with torch.no_grad():
        assert torch.allclose(out(X)[0], drop_layers(m, [1])(X)[0]) and torch.allclose(out(X)[0], m(X)[0], atol=1e-5)
    with pytest.raises(ValueError, match="drop at most 1"):
        apply_plan(m, Plan(drop=2), SEQ)


def test_quantize_then_distill_gives_weight_only_layers(gpt, ids):
    m = apply_plan(gpt, Plan(0.5, 0.5, 3, "int8", "quantize-then-distill"), ids[0])
    assert isinstance(m.h[0].mlp.c_fc, WeightOnlyLinear) and m.h[0].mlp.c_fc.bits == 8


# --------------------------------------------------------------------------- Pareto and selection


def _brute_front(pts):
    return [i for i, p in enumerate(pts) if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts)]


def test_pareto_front_fixture():
    pts = [(5, 1.0), (1, 3.0), (2, 2.0), (3, 2.5), (2, 2.0), (6, 0.9), (1, 3.5)]
    assert pareto_front(pts) == [0, 1, 2, 4, 5]  # (3, 2.5) and (1, 3.5) are dominated; equal points both stay


def test_pareto_front_matches_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        pts = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(rng.randint(1, 12))]
        assert pareto_front(pts) == _brute_front(pts)


def test_pareto_front_bad_input():
    with pytest.raises(ValueError, match="points\\[1\\]"):
        pareto_front([(1, 2), (1, float("nan"))])
    with pytest.raises(ValueError, match="pair"):
        pareto_front([(1, 2, 3)])


ROWS = [
    {"name": "float32", "bytes": 100, "latency_ms": 10.0, "val_loss": 1.0, "loss_increase": 0.0},
    {"name": "a", "bytes": 30, "latency_ms": 11.0, "val_loss": 1.0, "loss_increase": 0.0},
    {"name": "b", "bytes": 20, "latency_ms": 6.0, "val_loss": 1.04, "loss_increase": 0.04},
    {"name": "c", "bytes": 10, "latency_ms": 5.0, "val_loss": 1.2, "loss_increase": 0.2},
]


def test_select():
    assert select(ROWS, None, 0.05) == 2
    assert select(ROWS, 25, 0.01) is None
    assert select(ROWS) == 3
    assert select(ROWS, None, 0.0) == 1
    assert select(ROWS, None, 0.05, objective="latency") == 2
    assert select(ROWS, None, None, max_latency_ms=5.5, objective="size") == 3
    with pytest.raises(ValueError, match="objective"):
        select(ROWS, objective="speed")


# --------------------------------------------------------------------------- the search


@pytest.fixture(scope="module")
def searched(gpt, ids):
    plans = [Plan(weights="int8"), Plan(0.5, 0.5, 2), Plan(0.5, 0.5, 2, "int8")]
    return evaluate_plans(gpt, plans, ids[0], ids[1], rounds=2)


def test_evaluate_plans_rows(searched):
    rows, models = searched
    assert [r["name"] for r in rows] == ["float32", "int8", "heads 50% mlp 50% -> distill 2", "heads 50% mlp 50% -> distill 2 -> int8"]
    assert len(models) == 4 and rows[0]["loss_increase"] == 0.0
    for r, m in zip(rows, models):
        assert r["bytes"] == size_report(m)["total_bytes"] == predict_bytes(CFG, Plan(r["heads"], r["mlp"], r["steps"], r["weights"]))
        assert r["latency_ms"] > 0 and r["recall"] is None
    for key, cost in (("pareto_size", "bytes"), ("pareto_latency", "latency_ms")):
        front = set(pareto_front([(r[cost], r["val_loss"]) for r in rows]))
        assert [r[key] for r in rows] == [i in front for i in range(4)]


def test_prune_then_quantize_shares_the_recovered_model(searched):
    """The int8 row of a pruned plan quantizes the same recovered float model (int8 changes the loss by < 1%)."""
    rows, _ = searched
    assert rows[3]["val_loss"] == pytest.approx(rows[2]["val_loss"], rel=0.01)


def test_compress_meets_the_budget(gpt, ids):
    plans = [Plan(weights="int8"), Plan(0.5, 0.5, 0, "int8")]
    model, report = compress(gpt, target_bytes=predict_bytes(CFG, Plan(weights="int8")), max_loss_increase=1.0,
                             calibration_ids=ids[0], val_ids=ids[1], plans=plans, n_questions=0)
    best = report.best
    assert best["bytes"] <= predict_bytes(CFG, Plan(weights="int8")) and best["loss_increase"] <= 1.0
    assert best["bytes"] == min(r["bytes"] for r in report.rows if r["meets"])
    assert size_report(model)["total_bytes"] == best["bytes"]
    assert "**" + best["name"] + "**" in report.to_markdown()


def test_compress_unmeetable_budget_names_the_best_point(gpt, ids):
    with pytest.raises(BudgetNotMet, match="best point reached is 'int8'") as e:
        compress(gpt, target_bytes=1000, max_loss_increase=0.05, calibration_ids=ids[0], val_ids=ids[1],
                 plans=[Plan(weights="int8")], n_questions=0)
    assert e.value.best["name"] == "int8" and len(e.value.report.rows) == 2 and e.value.report.chosen is None


@pytest.mark.parametrize(
    "kwargs, match",
    [({"target_bytes": -5}, "target_bytes"), ({"max_loss_increase": -0.1}, "max_loss_increase"),
     ({"objective": "speed"}, "objective"), ({"steps": -1}, "steps")],
)
def test_compress_bad_arguments(gpt, ids, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress(gpt, calibration_ids=ids[0], val_ids=ids[1], **kwargs)


def test_default_plans():
    plans = default_plans(10, ("int8", "int4"))
    assert Plan(weights="int8") in plans and Plan(0.5, 0.5, 10, "int4") in plans and Plan() not in plans
    assert len(plans) == 2 + 4 * 3
    with pytest.raises(ValueError, match="weights"):
        default_plans(10, ("int3",))


def test_grid_is_small():
    """The default search stays cheap: a handful of distillation runs (one per pruning point)."""
    pruned = {(p.heads, p.mlp, p.steps, p.drop) for p in default_plans() if p.pruned}
    assert len(pruned) == 4 and len(list(itertools.chain(default_plans()))) == 9


# --------------------------------------------------------------------------- compressed checkpoints


@pytest.mark.parametrize("plan", [Plan(0.5, 0.5, 0, "int8"), Plan(1.0, 0.5, 0, "int4"), Plan(0.5, 1.0)], ids=lambda p: p.name)
def test_round_trip_gives_the_same_outputs(gpt, ids, plan, tmp_path):
    """save_compressed -> load_compressed: the same integer codes and logits (exact: scales are stored in float32)."""
    m = apply_plan(gpt, plan, ids[0])
    path = save_compressed(tmp_path / "m.pt", m, meta={"note": "x"})
    back, _, meta = load_compressed(path)
    assert back.config == m.config and meta["note"] == "x" and meta["quantization"] == quantization_of(m)
    with torch.no_grad():
        # float16 storage of embeddings and LayerNorms: the random init is not on the float16 grid
        assert torch.allclose(back(X)[0], m(X)[0], atol=2e-2)
    if plan.weights == "int8":
        assert torch.equal(back.h[0].mlp.c_fc.q_weight, m.h[0].mlp.c_fc.q_weight)


def test_plain_loader_reads_the_dequantized_float_model(gpt, ids, tmp_path):
    """Any reader (the zoo's loader) gets a float GPT whose weights equal code * scale of the saved int8 layers."""
    m = apply_plan(gpt, Plan(0.5, 0.5, 0, "int8"), ids[0])
    f, _, meta = load_checkpoint(save_compressed(tmp_path / "m.pt", m))
    lin = m.h[1].attn.c_attn
    assert isinstance(lin, Int8Linear) and meta["quantization"]["weights"] == "int8"
    want = lin.q_weight.float() * lin.w_scale[:, None]
    assert torch.equal(f.h[1].attn.c_attn.weight, want)
    assert f.config.layer_heads == (1, 1)


def test_quantized_file_is_smaller(gpt, ids, tmp_path):
    m = apply_plan(gpt, Plan(weights="int8"), ids[0])
    a = save_compressed(tmp_path / "q.pt", m).stat().st_size
    b = save_checkpoint(tmp_path / "f.pt", gpt).stat().st_size  # float16
    assert a < 0.75 * b


def test_old_checkpoints_still_load(gpt, tmp_path):
    path = save_checkpoint(tmp_path / "old.pt", gpt)
    payload = torch.load(path, weights_only=True)
    assert "quantized" not in payload
    m, _, _ = load_checkpoint(path)
    assert m.config == CFG


def test_dequantize_codes_groups():
    codes = torch.tensor([[1, 2, 3, 4], [-1, -2, -3, -4]], dtype=torch.int8)
    scale = torch.tensor([[0.5, 2.0], [1.0, 0.25]])
    want = torch.tensor([[0.5, 1.0, 6.0, 8.0], [-1.0, -2.0, -0.75, -1.0]])
    assert torch.equal(dequantize_codes(codes, scale), want)


def test_bad_quantized_arguments(gpt, tmp_path):
    w = gpt.h[0].mlp.c_fc.weight
    with pytest.raises(ValueError, match="not weights of the model"):
        save_checkpoint(tmp_path / "x.pt", gpt, quantized={"nope.weight": (w.to(torch.int8), torch.ones(w.shape[0], 1))})
    with pytest.raises(ValueError, match="G dividing"):
        save_checkpoint(tmp_path / "x.pt", gpt, quantized={"h.0.mlp.c_fc.weight": (w.to(torch.int8), torch.ones(w.shape[0], 3))})


def test_tampered_quantized_file_is_rejected(gpt, ids, tmp_path):
    path = save_compressed(tmp_path / "m.pt", apply_plan(gpt, Plan(weights="int8"), ids[0]))
    payload = torch.load(path, weights_only=True)
    payload["quantized"].append("h.0.ln_1.weight")  # claims a float tensor holds codes
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="bad quantized weight"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- figures and the widget


def test_front_data_and_plot(searched):
    from minillm.compress.pipeline_study import front_data, plot_pareto

    rows, _ = searched
    d = front_data(rows, "bytes")
    assert d["x"] == pytest.approx([r["bytes"] / 1e6 for r in rows])
    assert sorted(d["front"]) == pareto_front([(r["bytes"], r["val_loss"]) for r in rows])
    fig = plot_pareto(rows, chosen=1, max_loss_increase=0.05)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax, cost in zip(axes, ("bytes", "latency_ms")):
        front = front_data(rows, cost)["front"]
        step = [l for l in ax.get_lines() if l.get_label() == "Pareto front"][0]
        assert list(step.get_xdata()) == pytest.approx([front_data(rows, cost)["x"][i] for i in front])
        budget = [l for l in ax.get_lines() if "loss budget" in l.get_label()][0]
        assert budget.get_ydata()[0] == pytest.approx(rows[0]["val_loss"] * 1.05)
    # The size and latency budgets are vertical lines where the sliders put them.
    fig = plot_pareto(rows, chosen=1, max_loss_increase=0.05, max_mb=1.25, max_latency_ms=7.5)
    for ax, unit, x in zip(fig.get_axes(), ("MB", "ms"), (1.25, 7.5)):
        line = [l for l in ax.get_lines() if l.get_label().endswith(f"{unit} budget")][0]
        assert list(line.get_xdata()) == pytest.approx([x, x])
        assert f"{x:.3g} {unit} budget" in [t.get_text() for t in ax.get_legend().get_texts()]  # each panel explains its line
    with pytest.raises(ValueError, match="cost"):
        front_data(rows, "flops")


def test_budget_choice_and_widget():
    from ipywidgets import Widget

    from minillm.compress.pipeline_study import budget_choice, budget_widget

    assert budget_choice(ROWS, None, None, 0.05)["name"] == "b"
    assert budget_choice(ROWS, 0.00002, None, 0.05)["name"] == "b"  # 20 bytes = 0.00002 MB: "b" fits exactly
    assert budget_choice(ROWS, 0.000019, None, 0.05) is None
    assert budget_choice(ROWS, None, 5.5, None)["name"] == "c"
    assert budget_choice(ROWS, None, None, 0.05, "latency")["index"] == 2
    w = budget_widget([{**r, "bytes": r["bytes"] * 100_000} for r in ROWS])  # 10, 3, 2 and 1 MB
    try:
        max_mb, max_ms, loss, objective = w.children[:4]
        w.update()
        assert w.result["name"] == "b"  # defaults: every size and latency, +5% loss
        loss.value = 20.0
        assert w.result["name"] == "c"
        max_mb.value = max_mb.min
        assert w.result["name"] == "c"
        loss.value = 0.0
        assert w.result is None
    finally:
        Widget.close_all()


def test_loss_axis_top_cuts_only_a_few_far_outliers():
    from minillm.compress.pipeline_study import loss_axis_top, plot_pareto

    # lesson 06's shape: two configurations pruned without recovery at +190%, the rest within +15%
    losses = [0.403, 0.403, 0.404, 0.413, 0.414, 0.420, 1.165, 1.165, 0.453, 0.453, 0.459, 0.453]
    top = loss_axis_top(losses, 0.05)
    assert top == pytest.approx(0.403 * 1.25)  # max(25%, 3 x the 5% budget) above the original
    assert loss_axis_top(losses[:6], 0.05) is None  # nothing far off: nothing cut
    assert loss_axis_top([1.0, 3.0, 3.0, 1.1], 0.05) is None  # half the points far off: showing them beats cutting
    assert loss_axis_top([1.0, 1.2, 1.5, 1.0, 1.0, 1.0], 0.2) is None  # 3 x 20% = 60% keeps 1.5 in view
    with pytest.raises(ValueError, match="losses is empty"):
        loss_axis_top([])
    rows = [{"name": f"r{i}", "bytes": 1000 * (12 - i), "latency_ms": 1.0 + i, "val_loss": y,
             "weights": None} for i, y in enumerate(losses)]
    fig = plot_pareto(rows, 0, 0.05)
    for ax in fig.get_axes():
        assert ax.get_ylim()[1] == pytest.approx(top)
        assert any("off scale: 2 with loss up to 1.17" in t.get_text() for t in ax.texts)
