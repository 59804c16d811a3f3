"""Lesson 05's study functions: toy KL fits against closed forms, hidden states, tables and figures."""

import math

import pytest
import torch

from minillm.compress import distill_study as ds
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson05

CFG_T = GPTConfig(vocab_size=48, block_size=32, n_layer=2, n_head=2, n_embd=32)
CFG_S = GPTConfig(vocab_size=48, block_size=32, n_layer=1, n_head=1, n_embd=16)


@pytest.fixture(scope="module")
def toy():
    grid, p = ds.bimodal_target()
    return grid, p, {k: ds.fit_toy(p, grid, k) for k in ("forward", "reverse")}


def test_bimodal_target_is_a_symmetric_distribution(toy):
    grid, p, _ = toy
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p, p.flip(0))  # symmetric modes at ±2
    assert int(p.argmax()) in (int((grid + 2).abs().argmin()), int((grid - 2).abs().argmin()))


def test_forward_kl_fit_matches_the_targets_moments(toy):
    # q ∝ exp(a·x + b·x²) is an exponential family: the forward-KL optimum matches E[x] and E[x²] of p
    grid, p, fits = toy
    q = fits["forward"]["q"]
    assert float((q * grid).sum()) == pytest.approx(float((p * grid).sum()), abs=0.02)
    assert float((q * grid**2).sum()) == pytest.approx(float((p * grid**2).sum()), rel=1e-3)
    assert fits["forward"]["std"] > 2.0  # spread across both modes (mode covering)


def test_reverse_kl_fit_sits_on_one_mode_with_kl_log2(toy):
    # q on one of two equal, well-separated modes: KL(q || p) = log 2 exactly in the limit
    _, _, fits = toy
    r = fits["reverse"]
    assert r["mean"] == pytest.approx(2.0, abs=0.02) and r["std"] == pytest.approx(0.4, abs=0.02)
    assert r["reverse"] == pytest.approx(math.log(2), abs=0.005)
    assert r["forward"] > 10 * fits["forward"]["forward"]  # the mode seeker misses the other mode entirely


def test_plot_toy_draws_the_target_and_both_fits(toy):
    grid, p, fits = toy
    fig = ds.plot_toy(grid, p, list(fits.values()))
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    torch.testing.assert_close(torch.tensor(lines[1].get_ydata()), fits["reverse"]["q"].float(), check_dtype=False)


def test_hidden_states_give_the_models_own_logits():
    torch.manual_seed(0)
    m = GPT(CFG_T).eval()
    x = torch.randint(0, 48, (2, 10), generator=torch.Generator().manual_seed(1))
    logits, h = ds.hidden_states(m, x)
    torch.testing.assert_close(logits, m(x)[0], rtol=0, atol=0)
    assert h.shape == (2, 10, 32)


class _Tok:
    def encode(self, s):
        return [ord(c) % 48 for c in s]

    def decode(self, ids):
        return "".join(chr(65 + i % 26) for i in ids)


def test_soft_target_table_is_the_tempered_softmax_of_the_last_position():
    torch.manual_seed(0)
    m = GPT(CFG_T).eval()
    table = ds.soft_target_table(m, _Tok(), "hello", temps=(0.5, 1.0, 4.0), k=5)
    z = m(torch.tensor([_Tok().encode("hello")]))[0][0, -1]
    top = torch.topk(z, 5).indices
    for i, T in enumerate((0.5, 1.0, 4.0)):
        torch.testing.assert_close(torch.tensor(table["probs"][i]), torch.softmax(z / T, -1)[top].detach(), rtol=1e-5, atol=1e-7)
    assert list(table["entropy"]) == sorted(table["entropy"])  # flatter as T grows
    fig = ds.plot_soft_targets(table)
    assert len(fig.axes[0].patches) == 15


def test_feature_distill_learns_the_projection():
    torch.manual_seed(0)
    teacher, student = GPT(CFG_T), GPT(CFG_S)
    ids = torch.randint(0, 48, (3000,), generator=torch.Generator().manual_seed(2))
    hist = ds.feature_distill(student, teacher, ids, steps=25, beta=1.0, batch_size=4, block_size=16, lr=1e-2)
    assert hist["proj"].weight.shape == (32, 16)
    assert sum(hist["feature"][-5:]) < 0.5 * sum(hist["feature"][:5])


def test_kind_comparison_leaves_the_student_alone_and_moves_toward_the_teacher():
    torch.manual_seed(0)
    teacher, student = GPT(CFG_T), GPT(CFG_S)
    before = [p.clone() for p in student.parameters()]
    ids = torch.randint(0, 48, (3000,), generator=torch.Generator().manual_seed(2))
    rows = ds.kind_comparison(student, teacher, ids, ids, steps=15, batch_size=4, block_size=16, lr=1e-2)
    assert [r["kind"] for r in rows] == ["start", "forward", "reverse"]
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))
    start, fwd, rev = rows
    assert fwd["forward_kl"] < start["forward_kl"] and rev["reverse_kl"] < start["reverse_kl"]
    assert 0 <= fwd["mass_outside_teacher_top90"] <= 1 and 0 <= rev["top1_agreement"] <= 1


def test_summarize_is_mean_and_sample_sd():
    rows = [{"method": "a", "val_loss": v, "recall": r} for v, r in ((1.0, 0.2), (2.0, 0.4), (4.0, 0.6))]
    rows.append({"method": "b", "val_loss": 3.0, "recall": 0.5})
    s = ds.summarize(rows)
    assert s["a"]["val_loss"] == pytest.approx((7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)))
    assert s["b"]["recall"] == (0.5, 0.0)
    fig = ds.plot_students(rows, key="method")
    heights = [b.get_height() for b in fig.axes[0].patches]
    assert heights == pytest.approx([7 / 3, 3.0])
    # an error bar for "a" (3 runs, sd > 0), none for "b": one run has no spread to draw
    assert len(fig.axes[0].collections) == 1
    (segment,) = fig.axes[0].collections[0].get_segments()
    assert sorted(segment[:, 1]) == pytest.approx([7 / 3 - s["a"]["val_loss"][1], 7 / 3 + s["a"]["val_loss"][1]])


def test_continuation_loss_scores_only_the_tokens_after_the_prompt():
    torch.manual_seed(0)
    m = GPT(CFG_T).eval()
    seqs = torch.randint(0, 48, (3, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = m(seqs[:, :-1])[0]
    ref = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 48), seqs[:, 5:].reshape(-1))  # prompt of 5
    assert ds.continuation_loss(m, seqs, 5) == pytest.approx(ref.item(), rel=1e-5)


def test_teacher_text_is_greedy_and_sequence_level_leaves_the_student_alone():
    torch.manual_seed(0)
    teacher, student = GPT(CFG_T).eval(), GPT(CFG_S)
    prompts = torch.randint(0, 48, (2, 4), generator=torch.Generator().manual_seed(5))
    gen = ds.teacher_text(teacher, prompts, new_tokens=3)
    assert gen.shape == (2, 7) and torch.equal(gen[:, :4], prompts)
    assert torch.equal(gen[:, 4], teacher(prompts)[0][:, -1].argmax(-1))
    before = [p.clone() for p in student.parameters()]
    ids = torch.randint(0, 48, (3000,), generator=torch.Generator().manual_seed(6))
    out = ds.sequence_level(student, teacher, ids, ids, n_prompts=16, prompt_len=4, new_tokens=8, steps=30, lr=1e-2)
    assert out["generated"].shape == (32, 12)
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))
    # a random teacher's greedy text repeats itself: training on it lowers the loss on held-out
    # teacher text far below the loss after training on as many random tokens
    t, r = out["on teacher text"], out["on real text"]
    assert t["teacher_text_loss"] < 0.8 * min(out["before"]["teacher_text_loss"], r["teacher_text_loss"])


def test_tour_step_writes_a_table_and_a_picture(tmp_path, capsys, monkeypatch):
    import minillm.data

    full = minillm.data.fact_recall_task
    monkeypatch.setattr(minillm.data, "fact_recall_task", lambda n=200, **kw: full(min(n, 30), **kw))  # keep the test fast
    md = ds.tour_step(tmp_path)
    out = capsys.readouterr().out
    assert (tmp_path / "distillation.png").stat().st_size > 1000
    rows = [line for line in md.splitlines() if line.startswith("| student")]
    assert len(rows) == 2 and "| student-distilled | 182,848 |" in md
    loss = {r.split("|")[1].strip(): float(r.split("|")[3]) for r in rows}
    assert loss["student-distilled"] < loss["student"]  # the shipped distilled student is better on held-out text
    assert "distillation: teacher" in out


def test_spread_table_is_mean_sd_and_range_of_the_per_seed_numbers():
    import numpy as np

    vals = {"hard labels": ([2.9, 2.85, 2.88], [0.18, 0.21, 0.19]), "distilled": ([2.99, 2.92, 2.96], [0.21, 0.21, 0.2])}
    rows = [{"seed": i, "method": m, "val_loss": v[0][i], "recall": v[1][i]} for i in range(3) for m, v in vals.items()]
    table = ds.spread_table(rows)
    assert [r["method"] for r in table] == ["hard labels", "distilled"] and all(r["n"] == 3 for r in table)
    for r in table:
        for metric, per_seed in zip(("val_loss", "recall"), vals[r["method"]]):
            x = np.array(per_seed)
            assert r[metric] == pytest.approx(x.mean(), abs=1e-12)
            assert r[f"{metric}_sd"] == pytest.approx(x.std(ddof=1), abs=1e-12)
            assert (r[f"{metric}_min"], r[f"{metric}_max"]) == (x.min(), x.max())
    one = ds.spread_table(rows[:1])
    assert one[0]["val_loss_sd"] == 0.0 and one[0]["val_loss_min"] == one[0]["val_loss_max"] == 2.9


@pytest.fixture(scope="module")
def tiny_study():
    from minillm import zoo
    from minillm.data import encode_splits, fact_recall_task, load_corpus

    teacher, tok = zoo.load("teacher")
    train_ids, val_ids = encode_splits(load_corpus(n_stories=60), tok)
    cfg = GPTConfig(vocab_size=teacher.config.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=16)
    qs = fact_recall_task(5)
    kw = dict(config=cfg, seeds=(0, 1), steps=3, batch_size=2, block_size=16, eval_batches=2, progress=False)
    return teacher, tok, train_ids, val_ids, qs, cfg, ds.seed_study(teacher, train_ids, val_ids, tok, qs, **kw)


def test_seed_study_trains_each_seed_both_ways_like_distill(tiny_study):
    from minillm.compress.distill import distill
    from minillm.evaluate import evaluate_loss

    teacher, tok, train_ids, val_ids, qs, cfg, rows = tiny_study
    assert [(r["seed"], r["method"]) for r in rows] == [
        (0, "hard labels"), (0, "distilled"), (1, "hard labels"), (1, "distilled")]
    assert all(0 <= r["recall"] <= 1 and r["seconds"] > 0 for r in rows)
    # the reference: the same student trained by hand with distill(), same seed, init and batches
    for row, alpha in zip(rows[2:], (0.0, 0.5)):
        torch.manual_seed(1)
        s = GPT(cfg)
        distill(s, teacher, train_ids, steps=3, T=2.0, alpha=alpha, batch_size=2, block_size=16, warmup=0, seed=1, progress=False)
        assert row["val_loss"] == pytest.approx(evaluate_loss(s, val_ids, 8, block_size=16, n_batches=2), abs=1e-6)
    assert rows[0]["val_loss"] != rows[1]["val_loss"]  # the loss differs, so the students differ
    table = ds.spread_table(rows)
    assert table[0]["val_loss"] == pytest.approx((rows[0]["val_loss"] + rows[2]["val_loss"]) / 2)
    fig = ds.plot_students(rows, key="method", title="2 seeds", chance=0.2)
    assert [b.get_height() for b in fig.axes[0].patches] == pytest.approx([table[0]["val_loss"], table[1]["val_loss"]])
    dots = [ln for ln in fig.axes[1].get_lines() if ln.get_marker() == "."]  # one per method, a dot per seed
    assert sorted(y for ln in dots for y in ln.get_ydata()) == pytest.approx(sorted(r["recall"] for r in rows))
    assert [ln.get_ydata()[0] for ln in fig.axes[1].get_lines() if ln.get_linestyle() == ":"] == [0.2]


def test_seed_study_rejects_no_seeds(tiny_study):
    teacher, tok, train_ids, val_ids, qs, cfg, _ = tiny_study
    with pytest.raises(ValueError, match="seeds"):
        ds.seed_study(teacher, train_ids, val_ids, tok, qs, config=cfg, seeds=(), steps=2, progress=False)
