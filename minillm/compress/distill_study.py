"""Lesson 05's measurements: distilling the teacher into the student, as data and as figures.

- :func:`soft_target_table` / :func:`plot_soft_targets` / :func:`temperature_widget`: the teacher's
  next-token distribution at several temperatures (its "dark knowledge").
- :func:`bimodal_target`, :func:`fit_toy`, :func:`plot_toy`: forward KL covers both modes of a bimodal
  target, reverse KL picks one (a one-Gaussian student on a 1-D grid).
- :func:`kind_comparison`: the same on the model: the student distilled a few steps with each kind.
- :func:`feature_distill`: hidden-state (FitNets) distillation through a learned projection.
- :func:`teacher_text`, :func:`sequence_level`: sequence-level distillation on teacher-generated text.
- :func:`student_table`, :func:`seed_study`, :func:`summarize`, :func:`spread_table`, :func:`plot_students`:
  hard-label against distilled students on validation loss and fact recall (mean and spread over seeds).
- :func:`tour_step` for ``minillm tour``.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot). Every run is seeded.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from minillm.evaluate import accuracy, evaluate_loss
from minillm.kernels import cross_entropy_loss
from minillm.model import GPT, GPTConfig, Linear
from minillm.train import AdamW, clip_grad_norm_, cosine_lr, param_groups
from minillm.validate import check_choice, check_int, check_number

from .distill import KINDS, distill, feature_loss, kd_loss, soft_targets

__all__ = [
    "soft_target_table",
    "plot_soft_targets",
    "temperature_widget",
    "bimodal_target",
    "fit_toy",
    "plot_toy",
    "kind_comparison",
    "hidden_states",
    "feature_distill",
    "teacher_text",
    "continuation_loss",
    "sequence_level",
    "student_table",
    "seed_study",
    "summarize",
    "spread_table",
    "plot_students",
    "tour_step",
]


# --------------------------------------------------------------------------- dark knowledge


@torch.no_grad()
def soft_target_table(model: GPT, tokenizer, prompt: str, temps: Sequence[float] = (0.5, 1.0, 2.0, 4.0), k: int = 8) -> dict:
    """The model's next-token probabilities after ``prompt`` at each temperature, for its top ``k`` tokens.

    Returns ``{"tokens": [k str], "temps": [n], "probs": ndarray [n, k], "rest": ndarray [n]
    (mass outside the top k), "entropy": ndarray [n] (nats, over the whole vocabulary)}``. The
    tokens are ranked by their T=1 probability.
    """
    k = check_int("k", k)
    temps = [check_number("T", T, strict=True) for T in temps]
    ids = torch.tensor([tokenizer.encode(prompt)[-model.config.block_size :]])
    model.eval()
    z = model(ids)[0][0, -1]
    top = torch.topk(z, k).indices
    probs = torch.stack([soft_targets(z, T) for T in temps])  # [n, V]
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
    kept = probs[:, top]
    return {
        "tokens": [tokenizer.decode([int(i)]) for i in top],
        "temps": temps,
        "probs": kept.numpy(),
        "rest": (1 - kept.sum(-1)).numpy(),
        "entropy": ent.numpy(),
    }


def plot_soft_targets(table: dict) -> Figure:
    """Grouped bars: one group per top-k token, one bar per temperature."""
    n, k = table["probs"].shape
    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.subplots()
    width = 0.8 / n
    x = np.arange(k)
    for i, T in enumerate(table["temps"]):
        ax.bar(x + (i - (n - 1) / 2) * width, table["probs"][i], width, label=f"T = {T:g} (entropy {table['entropy'][i]:.2f})")
    ax.set_xticks(x, [repr(t) for t in table["tokens"]], fontsize=8)
    ax.set_ylabel("probability")
    ax.set_title("The teacher's next token: a higher temperature shows how it ranks the wrong answers", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def temperature_widget(model: GPT, tokenizer, prompt: str, k: int = 8):
    """A temperature slider over :func:`soft_target_table` (one temperature) and its bar chart."""
    import ipywidgets as w
    from IPython.display import display

    def show(T):
        table = soft_target_table(model, tokenizer, prompt, (T,), k)
        print(f"T = {T:.2f}: top-{k} tokens hold {1 - table['rest'][0]:.0%} of the mass; entropy {table['entropy'][0]:.2f} nats")
        display(plot_soft_targets(table))
        return table

    style = {"description_width": "initial"}
    return w.interactive(
        show, T=w.FloatLogSlider(value=1.0, base=2, min=-2, max=4, step=0.25, description="temperature T", style=style)
    )


# --------------------------------------------------------------------------- forward vs reverse KL, toy


def bimodal_target(
    n: int = 61, modes: tuple[float, float] = (-2.0, 2.0), width: float = 0.4, weights: tuple[float, float] = (0.5, 0.5)
) -> tuple[Tensor, Tensor]:
    """A two-Gaussian mixture on ``n`` grid points in [-4, 4]: returns ``(grid [n], probs [n])``."""
    n = check_int("n", n, minimum=3)
    width = check_number("width", width, strict=True)
    grid = torch.linspace(-4, 4, n, dtype=torch.float64)
    dens = sum(wt * torch.exp(-0.5 * ((grid - m) / width) ** 2) for m, wt in zip(modes, weights))
    return grid, dens / dens.sum()


def fit_toy(
    target: Tensor, grid: Tensor, kind: str = "forward", steps: int = 400, lr: float = 0.1, init_mean: float = 1.0, init_std: float = 0.5
) -> dict:
    """Fit a single discretised Gaussian q (mean, log-std) to ``target`` [n] by minimising ``kd_loss`` at T=1.

    Returns ``{"kind", "q" [n], "mean", "std", "forward", "reverse"}`` (the two KLs at the end, nats).
    Forward KL(p ‖ q) is mode covering (q spreads over both modes); reverse KL(q ‖ p) is mode seeking
    (q settles on the mode nearer its start, ``init_mean``).
    """
    check_choice("kind", kind, KINDS)
    steps = check_int("steps", steps)
    mean = torch.tensor(float(init_mean), dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(math.log(check_number("init_std", init_std, strict=True)), dtype=torch.float64, requires_grad=True)
    opt = AdamW([mean, log_std], lr=lr, weight_decay=0.0)
    t_logits = target.clamp_min(1e-300).log()[None]
    for _ in range(steps):
        logits = (-0.5 * ((grid - mean) / log_std.exp()) ** 2)[None]
        loss = kd_loss(logits.double(), t_logits, 1.0, kind)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = (-0.5 * ((grid - mean) / log_std.exp()) ** 2)[None]
        q = torch.softmax(logits, -1)[0]
        return {
            "kind": kind,
            "q": q,
            "mean": float(mean),
            "std": float(log_std.exp()),
            "forward": float(kd_loss(logits, t_logits, 1.0, "forward")),
            "reverse": float(kd_loss(logits, t_logits, 1.0, "reverse")),
        }


def plot_toy(grid: Tensor, target: Tensor, fits: Sequence[dict]) -> Figure:
    """The bimodal target and each fitted one-Gaussian student."""
    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    ax.fill_between(grid.numpy(), target.numpy(), color="#cccccc", label="teacher p (two modes)")
    colors = {"forward": "#4c72b0", "reverse": "#dd8452"}
    for f in fits:
        ax.plot(grid.numpy(), f["q"].numpy(), color=colors[f["kind"]], linewidth=2,
                label=f"student q, {f['kind']} KL (mean {round(f['mean'], 2) + 0.0:+.2f}, std {f['std']:.2f})")
    ax.set_xlabel("outcome")
    ax.set_ylabel("probability")
    ax.set_title("Forward KL covers both modes; reverse KL picks one", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- forward vs reverse KL, the model


@torch.no_grad()
def _agreement(student: GPT, teacher: GPT, x: Tensor, top_p: float = 0.9) -> dict:
    """How the student's next-token distributions sit against the teacher's on the batch ``x`` [B, T]."""
    s = torch.log_softmax(student(x)[0].float(), -1)
    t = torch.log_softmax(teacher(x)[0].float(), -1)
    ps, pt = s.exp(), t.exp()
    sorted_t, order = pt.sort(-1, descending=True)
    in_nucleus = (sorted_t.cumsum(-1) - sorted_t) < top_p  # the teacher's top-p set
    nucleus = torch.zeros_like(pt, dtype=torch.bool).scatter_(-1, order, in_nucleus)
    return {
        "forward_kl": float(kd_loss(s, t, 1.0, "forward")),
        "reverse_kl": float(kd_loss(s, t, 1.0, "reverse")),
        "student_entropy": float(-(ps * s).sum(-1).mean()),
        "teacher_entropy": float(-(pt * t).sum(-1).mean()),
        "mass_outside_teacher_top90": float((ps * ~nucleus).sum(-1).mean()),
        "top1_agreement": float((s.argmax(-1) == t.argmax(-1)).float().mean()),
    }


def kind_comparison(
    student: GPT, teacher: GPT, train_ids: Tensor, val_ids: Tensor, *, steps: int = 40, T: float = 1.0,
    batch_size: int = 8, block_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = False,
) -> list[dict]:
    """Distil a copy of ``student`` with ``alpha=1`` for ``steps`` steps with each KL kind; measure on ``val_ids``.

    Returns one row per kind (``"start"`` first: the student before): the forward and reverse KL to the
    teacher (nats/token at T=1), both entropies, the student's mass outside the teacher's top-90%
    set, top-1 agreement and validation loss. The original ``student`` is untouched.
    """
    g = torch.Generator().manual_seed(seed + 1)
    starts = torch.randint(0, val_ids.numel() - block_size - 1, (16,), generator=g)
    x = torch.stack([val_ids[i : i + block_size] for i in starts]).long()
    val = lambda m: evaluate_loss(m, val_ids, 8, block_size=block_size, n_batches=4)  # noqa: E731
    rows = [{"kind": "start", **_agreement(student, teacher, x), "val_loss": val(student)}]
    for kind in KINDS:
        s = copy.deepcopy(student)
        distill(s, teacher, train_ids, steps=steps, T=T, alpha=1.0, kind=kind, batch_size=batch_size,
                block_size=block_size, lr=lr, warmup=min(5, steps - 1), seed=seed, progress=progress)
        rows.append({"kind": kind, **_agreement(s, teacher, x), "val_loss": val(s)})
    return rows


# --------------------------------------------------------------------------- hidden states (FitNets)


def hidden_states(model: GPT, idx: Tensor) -> tuple[Tensor, Tensor]:
    """One forward pass: ``(logits [B, T, V], h [B, T, D])``, h the residual stream after the last block."""
    T = idx.size(1)
    x = model.drop(model.wte(idx.long()) + model.wpe(torch.arange(T)))
    for block in model.h:
        x = block(x)
    return model.lm_head(model.ln_f(x)), x


def feature_distill(
    student: GPT, teacher: GPT, train_ids: Tensor, *, steps: int = 30, beta: float = 1.0, T: float = 2.0,
    alpha: float = 0.5, batch_size: int = 8, block_size: int = 64, lr: float = 3e-3, seed: int = 0,
) -> dict:
    """Train ``student`` with ``distill_loss + beta · feature_loss(h_s, h_t, proj)``, proj a fresh Linear(D_s, D_t).

    The projection trains with the student (it is thrown away afterwards). Returns the history:
    ``{"kd", "ce", "feature" (per step), "proj": the trained Linear}``. ``beta=0`` gives plain
    logit distillation with the same batches, for comparison.
    """
    from minillm.data import get_batch

    steps = check_int("steps", steps)
    beta = check_number("beta", beta)
    torch.manual_seed(seed)
    proj = Linear(student.config.n_embd, teacher.config.n_embd)
    opt = AdamW(param_groups(student, 0.01) + [{"params": list(proj.parameters()), "weight_decay": 0.0}], lr=lr)
    g = torch.Generator().manual_seed(seed)
    hist: dict = {"kd": [], "ce": [], "feature": []}
    teacher.eval()
    student.train()
    for step in range(steps):
        opt.lr = cosine_lr(step, lr, min(5, steps - 1), steps, lr / 10)
        x, y = get_batch(train_ids, batch_size, block_size, generator=g)
        with torch.no_grad():
            t_logits, t_h = hidden_states(teacher, x)
        s_logits, s_h = hidden_states(student, x)
        kd = kd_loss(s_logits, t_logits, T)
        ce = cross_entropy_loss(s_logits.reshape(-1, s_logits.size(-1)), y.reshape(-1))
        feat = feature_loss(s_h, t_h, proj)
        loss = alpha * kd + (1 - alpha) * ce + beta * feat
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(list(student.parameters()) + list(proj.parameters()), 1.0)
        opt.step()
        for key, v in (("kd", kd), ("ce", ce), ("feature", feat)):
            hist[key].append(v.item())
    student.eval()
    hist["proj"] = proj
    return hist


# --------------------------------------------------------------------------- sequence level (Kim & Rush)


@torch.no_grad()
def teacher_text(teacher: GPT, prompts: Tensor, new_tokens: int = 96, temperature: float = 0.0, seed: int = 0) -> Tensor:
    """Continue each prompt [B, P] with the teacher (greedy by default): returns [B, P + new_tokens] ids."""
    g = torch.Generator().manual_seed(seed)
    return teacher.generate(prompts, new_tokens, temperature=temperature, generator=g)


def _windows(ids: Tensor, n: int, length: int, g: torch.Generator) -> Tensor:
    starts = torch.randint(0, ids.numel() - length, (n,), generator=g)
    return torch.stack([ids[i : i + length] for i in starts]).long()


def _targets(seqs: Tensor, prompt_len: int) -> tuple[Tensor, Tensor]:
    """Inputs and next-token targets of [B, L] sequences, the prompt's own tokens not scored (-1)."""
    y = seqs[:, 1:].clone()
    y[:, : prompt_len - 1] = -1
    return seqs[:, :-1], y


@torch.no_grad()
def continuation_loss(model: GPT, seqs: Tensor, prompt_len: int) -> float:
    """Mean cross-entropy (nats/token) of ``model`` on the tokens after the first ``prompt_len`` of each row of ``seqs``."""
    was = model.training
    model.eval()
    loss = float(model(*_targets(seqs, prompt_len))[1])
    model.train(was)
    return loss


def _finetune(model: GPT, seqs: Tensor, prompt_len: int, steps: int, lr: float, seed: int, batch_size: int = 8) -> None:
    """A few steps of AdamW (cosine schedule, clipping) on random rows of ``seqs``, scoring only the continuations."""
    g = torch.Generator().manual_seed(seed)
    opt = AdamW(param_groups(model, 0.01), lr=lr)
    model.train()
    for step in range(steps):
        opt.lr = cosine_lr(step, lr, min(5, steps - 1), steps, lr / 10)
        rows = torch.randint(0, seqs.size(0), (batch_size,), generator=g)
        loss = model(*_targets(seqs[rows], prompt_len))[1]
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


def sequence_level(student: GPT, teacher: GPT, real_ids: Tensor, val_ids: Tensor, *, n_prompts: int = 16,
                   prompt_len: int = 16, new_tokens: int = 96, steps: int = 30, lr: float = 3e-4, seed: int = 0) -> dict:
    """Fine-tune copies of ``student`` on teacher-generated continuations and on real ones; compare.

    ``2 · n_prompts`` windows of ``prompt_len`` tokens of ``real_ids`` are continued greedily by the
    teacher for ``new_tokens`` (Kim & Rush use beam search; greedy is its one-beam case); the first half
    trains, the second half is held out. The real-text run trains on as many windows of ``real_ids`` of
    the same length, and real text is scored on windows of ``val_ids``; every loss counts only the tokens
    after each window's first ``prompt_len``. Returns ``{"generated": [2·n_prompts, prompt_len + new_tokens],
    "teacher": {...}, "before": {...}, "on teacher text": {...}, "on real text": {...}}``, each inner dict
    holding ``teacher_text_loss`` (held-out generated text) and ``real_text_loss``. ``student`` is untouched.
    """
    n_prompts = check_int("n_prompts", n_prompts)
    g = torch.Generator().manual_seed(seed)
    length = prompt_len + new_tokens
    gen = teacher_text(teacher, _windows(real_ids, 2 * n_prompts, prompt_len, g), new_tokens, seed=seed)
    gen_train, gen_held = gen[:n_prompts], gen[n_prompts:]
    real_train, real_held = _windows(real_ids, n_prompts, length, g), _windows(val_ids, n_prompts, length, g)

    def score(m: GPT) -> dict:
        return {"teacher_text_loss": continuation_loss(m, gen_held, prompt_len),
                "real_text_loss": continuation_loss(m, real_held, prompt_len)}

    out = {"generated": gen, "teacher": score(teacher), "before": score(student)}
    for name, seqs in (("on teacher text", gen_train), ("on real text", real_train)):
        s = copy.deepcopy(student)
        _finetune(s, seqs, prompt_len, steps, lr, seed)
        out[name] = score(s)
    return out


# --------------------------------------------------------------------------- hard labels vs distilled


def student_table(models: dict, val_ids: Tensor, tokenizer, questions, n_batches: int = 8) -> list[dict]:
    """Validation loss (nats/token, ``n_batches`` × 8 blocks) and fact recall of each named model."""
    return [
        {"model": name, "params": m.num_params(), "val_loss": evaluate_loss(m, val_ids, 8, n_batches=n_batches),
         "recall": accuracy(m, tokenizer, questions)}
        for name, m in models.items()
    ]


def seed_study(
    teacher: GPT, train_ids: Tensor, val_ids: Tensor, tokenizer, questions, *, config: GPTConfig,
    seeds: Sequence[int] = (0, 1, 2), steps: int = 300, batch_size: int = 16, block_size: int = 64,
    lr: float = 3e-3, T: float = 2.0, alpha: float = 0.5, kind: str = "forward", eval_batches: int = 8,
    progress: bool = True,
) -> list[dict]:
    """For each seed, train ``config`` from the same init on the same batches twice: hard labels and distilled.

    Hard labels use :func:`distill` with ``alpha=0`` (pure cross-entropy, the same loop, optimizer and
    schedule), so the two runs differ only in the loss. The lesson (a short schedule) and the benchmark
    (a longer one) both call this. Returns one row per (seed, method): ``{"seed", "method", "val_loss"
    (nats/token on ``eval_batches`` × 8 windows of ``block_size`` tokens of ``val_ids``), "recall"
    (fraction of ``questions`` right), "seconds" (training wall time)}``. A tqdm bar counts the runs.
    """
    from tqdm.auto import tqdm

    seeds = [check_int("seed", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed, e.g. seeds=(0, 1, 2)")
    runs = [(seed, method, a) for seed in seeds for method, a in (("hard labels", 0.0), ("distilled", alpha))]
    rows = []
    for seed, method, a in tqdm(runs, desc="seed study", disable=not progress, leave=False):
        torch.manual_seed(seed)
        s = GPT(config)
        hist = distill(s, teacher, train_ids, steps=steps, T=T, alpha=a, kind=kind, batch_size=batch_size,
                       block_size=block_size, lr=lr, warmup=min(20, steps // 10), seed=seed, progress=False)
        val = evaluate_loss(s, val_ids, 8, block_size=block_size, n_batches=eval_batches)
        rows.append({"seed": seed, "method": method, "val_loss": val, "recall": accuracy(s, tokenizer, questions),
                     "seconds": hist["seconds"]})
    return rows


def summarize(rows: list[dict], key: str = "method") -> dict:
    """Mean and sample standard deviation of ``val_loss`` and ``recall`` per ``key``: ``{name: {metric: (mean, sd)}}``."""
    out: dict = {}
    for name in dict.fromkeys(r[key] for r in rows):
        sel = [r for r in rows if r[key] == name]
        out[name] = {m: (statistics.fmean(r[m] for r in sel), statistics.stdev(r[m] for r in sel) if len(sel) > 1 else 0.0)
                     for m in ("val_loss", "recall")}
    return out


def spread_table(rows: list[dict], key: str = "method") -> list[dict]:
    """One row per ``key`` value (first-seen order): ``n`` and, for ``val_loss`` and ``recall``, the mean, the
    sample standard deviation (``_sd``, 0 for one row) and the range (``_min``, ``_max``) over its rows.
    """
    summary = summarize(rows, key)
    out = []
    for name, stats in summary.items():
        sel = [r for r in rows if r[key] == name]
        row: dict = {key: name, "n": len(sel)}
        for m, (mean, sd) in stats.items():
            row.update({m: mean, f"{m}_sd": sd, f"{m}_min": min(r[m] for r in sel), f"{m}_max": max(r[m] for r in sel)})
        out.append(row)
    return out


def plot_students(rows: list[dict], key: str = "model", title: str | None = None, chance: float | None = None) -> Figure:
    """Bars of validation loss and fact recall per ``key``; with several rows per name, mean ± sd and the points.

    ``chance`` (e.g. ``minillm.data.chance_accuracy(questions)``) draws the recall of random guessing.
    """
    summary = summarize(rows, key)
    names = list(summary)
    fig = Figure(figsize=(7, 3.0 if title else 2.8))
    if title:
        fig.suptitle(title, fontsize=9)
    axes = fig.subplots(1, 2)
    colors = ["#8c8c8c", "#dd8452", "#4c72b0", "#55a868"]
    labels = ("validation loss (lower is better)", "fact recall (higher is better)")
    for ax, m, label in zip(axes, ("val_loss", "recall"), labels):
        means = [summary[n][m][0] for n in names]
        sds = [summary[n][m][1] for n in names]
        ax.bar(range(len(names)), means, color=colors[: len(names)])
        for i, n in enumerate(names):
            pts = [r[m] for r in rows if r[key] == n]
            if len(pts) > 1:  # one run has no spread to draw: no error bar for it
                ax.errorbar(i, means[i], yerr=sds[i], color="k", capsize=4)
                ax.plot([i] * len(pts), pts, "k.", markersize=4)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        if m == "val_loss":
            lo = min(means) - 3 * max(max(sds), 0.02)
            ax.set_ylim(max(0.0, lo), max(means) + 3 * max(max(sds), 0.02))
        else:
            ax.set_ylim(0, 1)
            if chance is not None:
                ax.axhline(chance, color="k", linestyle=":", linewidth=1, label=f"chance {chance:.0%}")
                ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- tour


def tour_step(out_dir) -> str:
    """The distillation step of ``minillm tour``: the zoo's hard-label and distilled students against the teacher.

    Loads the three zoo models, prints and returns their validation loss and fact recall, and saves
    ``distillation.png``.
    """
    from pathlib import Path

    from minillm import zoo
    from minillm.data import encode_splits, fact_recall_task, load_corpus

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {}
    for name in ("teacher", "student", "student-distilled"):
        models[name], tok = zoo.load(name)
    _, val_ids = encode_splits(load_corpus(n_stories=600), tok)
    rows = student_table(models, val_ids, tok, fact_recall_task(300), n_batches=2)
    for r in rows:
        print(f"distillation: {r['model']:<18} {r['params']:>10,} parameters  "
              f"val loss {r['val_loss']:.3f}  fact recall {r['recall']:.0%}")
    plot_students(rows).savefig(out_dir / "distillation.png", dpi=100)
    table = "\n".join(f"| {r['model']} | {r['params']:,} | {r['val_loss']:.3f} | {r['recall']:.0%} |" for r in rows)
    return (
        "## Distillation: a student taught by the teacher\n\n"
        "| model | parameters | validation loss | fact recall (300 questions) |\n|---|---:|---:|---:|\n"
        f"{table}\n\nBoth students have the same shape, seed, data, batches and schedule; the distilled one also "
        "matched the teacher's temperature-2 distribution (half the loss, Hinton et al. 2015).\n\n"
        "![distillation](distillation.png)\n"
    )
