"""Lesson 03's measurements: pruning the teacher and timing sparse kernels, as data and as figures.

- :func:`sparsity_sweep`: validation loss and fact recall against sparsity for magnitude,
  Wanda and 2:4 pruning (copies of the model; the original is untouched).
- :func:`sensitivity_scan`: the loss when one block at a time is pruned, per sparsity.
- :func:`recover`: a short fine-tune with :class:`~minillm.compress.prune.GradualPruner`.
- :func:`sparse_timing`: dense, from-scratch CSR and ``torch.sparse`` matmuls across sparsities.
- :func:`plot_masks`, :func:`plot_sweep`, :func:`plot_sensitivity`, :func:`plot_sparse_timing`,
  and :func:`prune_widget` (sparsity and method against loss and recall).

Figures are built with ``matplotlib.figure.Figure`` (no pyplot).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from minillm.evaluate import accuracy, evaluate_loss
from minillm.model import GPT
from minillm.timing import interleaved_best
from minillm.train import AdamW

from .prune import GradualPruner, magnitude_mask, nm_mask, prunable_linears, prune_model, wanda_mask
from .sparse import csr_matmul, to_csr

__all__ = [
    "sparsity_sweep",
    "sensitivity_scan",
    "recover",
    "sparse_timing",
    "plot_masks",
    "plot_sweep",
    "plot_sensitivity",
    "plot_sparse_timing",
    "prune_widget",
    "tour_step",
]


def _quality(model: GPT, val_ids: Tensor, tokenizer=None, questions=None, n_batches: int = 4) -> dict:
    out = {"val_loss": evaluate_loss(model, val_ids, 8, n_batches=n_batches)}
    if tokenizer is not None and questions:
        out["recall"] = accuracy(model, tokenizer, questions)
    return out


def sparsity_sweep(
    model: GPT,
    val_ids: Tensor,
    calibration_ids: Tensor,
    sparsities: Sequence[float] = (0.3, 0.5, 0.7, 0.9),
    methods: Sequence[str] = ("magnitude", "wanda", "2:4"),
    tokenizer=None,
    questions=None,
) -> list[dict]:
    """Rows {method, sparsity, val_loss[, recall]} for each method and sparsity (2:4 only at 0.5), plus the dense row."""
    rows = [{"method": "dense", "sparsity": 0.0, **_quality(model, val_ids, tokenizer, questions)}]
    for method in methods:
        for s in ([0.5] if method == "2:4" else sparsities):
            pruned, _ = prune_model(copy.deepcopy(model), method, s, calibration_ids if method == "wanda" else None)
            rows.append({"method": method, "sparsity": s, **_quality(pruned, val_ids, tokenizer, questions)})
    return rows


def sensitivity_scan(model: GPT, val_ids: Tensor, sparsities: Sequence[float] = (0.5, 0.8, 0.95)) -> np.ndarray:
    """Validation loss [n_layer, len(sparsities)] when only block l's linears are magnitude-pruned."""
    out = np.zeros((model.config.n_layer, len(sparsities)))
    for l in range(model.config.n_layer):
        for j, s in enumerate(sparsities):
            m = copy.deepcopy(model)
            with torch.no_grad():
                for name, lin in prunable_linears(m).items():
                    if name.startswith(f"h.{l}."):
                        lin.weight.mul_(magnitude_mask(lin.weight, s))
            out[l, j] = evaluate_loss(m, val_ids, 8, n_batches=2)
    return out


def recover(
    model: GPT, train_ids: Tensor, s_final: float, steps: int = 60, lr: float = 3e-4, batch_size: int = 8, seed: int = 0
) -> tuple[GPT, list[float]]:
    """A copy of ``model`` pruned gradually to ``s_final`` (magnitude, global) while it fine-tunes; returns (model, losses)."""
    from minillm.data import get_batch

    m = copy.deepcopy(model).train()
    opt = AdamW(m.parameters(), lr=lr, weight_decay=0.0)
    pruner = GradualPruner(m, s_final, n_steps=max(1, steps * 2 // 3), scope="global")
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x, y = get_batch(train_ids, batch_size, min(128, m.config.block_size), generator=g)
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()  # prune to the schedule's sparsity and keep pruned weights at zero
        losses.append(loss.item())
    return m.eval(), losses


@torch.no_grad()
def sparse_timing(sparsities: Sequence[float] = (0.5, 0.7, 0.9, 0.95, 0.99), n: int = 512, batch: int = 64, rounds: int = 5) -> list[dict]:
    """Seconds for x [batch, n] @ Wᵀ with W [n, n] pruned to each sparsity: dense, our CSR, torch.sparse CSR."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n, generator=g)
    rows = []
    for s in sparsities:
        w = torch.randn(n, n, generator=g)
        w = w * magnitude_mask(w, s)
        ours = to_csr(w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "sparse CSR support is in beta"
            theirs = w.to_sparse_csr()
        xt = x.t().contiguous()
        t = interleaved_best(
            {"dense": lambda: x @ w.t(), "ours": lambda: csr_matmul(x, ours), "torch": lambda: theirs @ xt}, rounds=rounds
        )
        rows.append({"sparsity": s, "dense_s": t["dense"], "csr_s": t["ours"], "torch_sparse_s": t["torch"],
                     "csr_bytes": ours.nbytes, "dense_bytes": w.numel() * 4})
    return rows


def plot_masks(weight: Tensor, sparsity: float = 0.5) -> Figure:
    """A small weight matrix's kept entries under magnitude (layer), magnitude (row), Wanda-like and 2:4 masks."""
    w = weight.detach()
    norms = torch.linspace(0.2, 2.0, w.shape[1])  # an illustrative input-feature norm, growing left to right
    masks = {
        f"magnitude, layer ({sparsity:.0%})": magnitude_mask(w, sparsity),
        f"magnitude, per row ({sparsity:.0%})": magnitude_mask(w, sparsity, scope="row"),
        "Wanda (inputs grow to the right)": wanda_mask(w, norms, sparsity),
        "2:4 (2 of every 4 in a row)": nm_mask(w, 2, 4),
    }
    fig = Figure(figsize=(11, 2.8))
    axes = fig.subplots(1, len(masks))
    for ax, (title, m) in zip(axes, masks.items()):
        ax.imshow((w.abs() * m).numpy(), cmap="Blues", aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Kept weights (|w|, dark = large); white = pruned", fontsize=9)
    fig.tight_layout()
    return fig


def plot_sweep(rows: list[dict]) -> Figure:
    """Validation loss (and fact recall) against sparsity, one line per method; 2:4 is a point."""
    has_recall = "recall" in rows[0]
    fig = Figure(figsize=(9 if has_recall else 5, 3.4))
    axes = fig.subplots(1, 2 if has_recall else 1, squeeze=False)[0]
    dense = rows[0]
    for key, ax, label in (("val_loss", axes[0], "validation loss (nats/token)"), ("recall", axes[-1], "fact recall")):
        if key not in dense:
            continue
        for method in dict.fromkeys(r["method"] for r in rows[1:]):
            pts = [(0.0, dense[key])] + [(r["sparsity"], r[key]) for r in rows if r["method"] == method]
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=method)
        ax.set_xlabel("sparsity (share of linear weights removed)")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    axes[0].legend(frameon=False, fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_sensitivity(losses: np.ndarray, sparsities: Sequence[float], dense_loss: float) -> Figure:
    """Loss when one block at a time is pruned: a bar group per block."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    L, S = losses.shape
    width = 0.8 / S
    for j, s in enumerate(sparsities):
        ax.bar(np.arange(L) + (j - (S - 1) / 2) * width, losses[:, j] - dense_loss, width, label=f"{s:.0%} of that block")
    ax.set_xticks(range(L), [f"block {l}" for l in range(L)])
    ax.set_ylabel("loss increase (nats/token)")
    ax.set_title("Which blocks tolerate pruning? (one block pruned at a time, magnitude)", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_sparse_timing(rows: list[dict]) -> Figure:
    """Sparse over dense time against sparsity: where (if anywhere) a sparse kernel wins on this CPU."""
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    s = [r["sparsity"] for r in rows]
    ax.plot(s, [r["csr_s"] / r["dense_s"] for r in rows], marker="o", label="our CSR (tensor ops)")
    ax.plot(s, [r["torch_sparse_s"] / r["dense_s"] for r in rows], marker="o", label="torch.sparse CSR")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.text(s[0], 1.05, "dense float32", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("time / dense time (lower is faster)")
    ax.set_title("Unstructured sparsity on a CPU: below the dashed line a sparse kernel beats dense", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _plot_quality(dense: dict, pruned: dict, label: str) -> Figure:
    """Dense against pruned: validation loss (and fact recall) as bars."""
    keys = [k for k in ("val_loss", "recall") if k in dense]
    fig = Figure(figsize=(3.2 * len(keys), 2.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, k in zip(axes, keys):
        ax.bar(["dense", label], [dense[k], pruned[k]], color=["#8c8c8c", "#4c72b0"])
        ax.set_ylabel({"val_loss": "validation loss (nats/token)", "recall": "fact recall"}[k])
    fig.tight_layout()
    return fig


def prune_widget(model: GPT, val_ids: Tensor, calibration_ids: Tensor, tokenizer=None, questions=None):
    """A method dropdown and a sparsity slider over the pruned teacher's loss and recall."""
    import ipywidgets as w
    from IPython.display import display

    style = {"description_width": "initial"}
    dense = _quality(model, val_ids, tokenizer, questions)

    def show(method, sparsity):
        s = 0.5 if method == "2:4" else sparsity
        pruned, _ = prune_model(copy.deepcopy(model), method, s, calibration_ids if method == "wanda" else None)
        q = _quality(pruned, val_ids, tokenizer, questions)
        line = f"{method} at {s:.0%}: validation loss {q['val_loss']:.3f} (dense {dense['val_loss']:.3f})"
        if "recall" in q:
            line += f", fact recall {q['recall']:.0%} (dense {dense['recall']:.0%})"
        print(line + (" — 2:4 is always 50%" if method == "2:4" else ""))
        display(_plot_quality(dense, q, f"{method} at {s:.0%}"))
        return q

    return w.interactive(
        show,
        method=w.Dropdown(options=["magnitude", "wanda", "2:4"], value="magnitude", description="criterion", style=style),
        sparsity=w.FloatSlider(value=0.5, min=0.0, max=0.95, step=0.05, description="sparsity", style=style),
    )


def tour_step(out_dir) -> str:
    """The pruning step of ``minillm tour``: unstructured masks save nothing; structured pruning is faster.

    Prunes the teacher 50% by magnitude (same shapes, same speed) and removes half its heads and MLP
    neurons (a smaller dense model); prints and returns loss, size and speed. Saves ``pruning.png``.
    """
    from pathlib import Path

    from minillm import zoo
    from minillm.data import encode_splits, load_corpus
    from minillm.threads import one_thread

    from .structured import prune_heads, prune_neurons

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher, tok = zoo.load("teacher")
    _, val_ids = encode_splits(load_corpus(n_stories=600), tok)
    x = val_ids[: 4 * 256].view(4, 256)
    masked, _ = prune_model(copy.deepcopy(teacher), "magnitude", 0.5)
    small = prune_neurons(prune_heads(teacher, 0.5), 0.5)
    models = {"dense": teacher, "50% masked": masked, "half the heads and neurons": small}
    with one_thread(), torch.no_grad():
        t = interleaved_best({k: (lambda m=m: m(x)) for k, m in models.items()}, rounds=3)
    rows = []
    for name, m in models.items():
        rows.append((name, m.num_params(), evaluate_loss(m, val_ids, 8, n_batches=2), t["dense"] / t[name]))
        print(f"pruning: {name:<27} {rows[-1][1]:>10,} parameters  val loss {rows[-1][2]:.3f}  {rows[-1][3]:.2f}x the dense speed")
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.bar([r[0] for r in rows], [r[3] for r in rows], color=["#8c8c8c", "#dd8452", "#4c72b0"])
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel("forward speed / dense")
    ax.set_title("Zeros cost as much as weights; removing heads and neurons does not", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "pruning.png", dpi=100)
    table = "\n".join(f"| {n} | {p:,} | {l:.3f} | {s:.2f}x |" for n, p, l, s in rows)
    return (
        "## Pruning: masks save nothing, structure does\n\n"
        "| model | parameters (non-zero or not) | validation loss | forward speed / dense |\n|---|---:|---:|---:|\n"
        f"{table}\n\nA 50% magnitude mask keeps every matrix its shape, so a dense kernel does the same work; removing "
        "half the heads and MLP neurons leaves a smaller dense model that is really faster, at a quality cost that "
        "recovery training has to win back (fine-tuning, or distillation from the dense teacher as Minitron does).\n\n![pruning](pruning.png)\n"
    )
