"""Lesson 02's experiments: transfer learning and LoRA on the "who had it?" task, measured.

Data functions return plain rows (lists of dicts) and plotting functions draw them on a
``matplotlib.figure.Figure``, so the lesson, the benchmark and the tour share one code path.

- :func:`sample_efficiency`: accuracy against the number of labelled examples, the
  pre-trained teacher fine-tuned against the same architecture from scratch.
- :func:`method_table`: linear probe, full fine-tuning and LoRA at several ranks: accuracy,
  trainable parameters, optimizer-state bytes and median seconds per step.
- :func:`forgetting`: the loss on the original stories before and after fine-tuning.
- :func:`adapter_file_bytes`: an adapter saved as a file.
- :func:`qlora`: LoRA on a frozen int4 copy of the teacher (the QLoRA idea).
- :func:`lora_budget` and :func:`lora_widget`: rank and alpha against parameters, bytes and
  how much of the full fine-tuning update a rank-r matrix can hold.
"""

from __future__ import annotations

import copy
import io
from typing import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from minillm.compress.lora import LoRALinear, lora_state_dict, trainable_parameters
from minillm.transfer import ADAM_STATE_BYTES_PER_PARAM, finetune, optimizer_state_bytes, prepare
from minillm.units import format_bytes
from minillm.validate import check_int, check_number

__all__ = [
    "LR",
    "sample_efficiency",
    "plot_sample_efficiency",
    "method_table",
    "plot_methods",
    "forgetting",
    "adapter_file_bytes",
    "qlora",
    "lora_budget",
    "update_spectrum",
    "plot_budget",
    "lora_widget",
    "tour_step",
]

#: Learning rates that train each method well in 30 steps of 8 examples (tried on the task).
LR = {"full": 1e-3, "scratch": 1e-3, "head": 1e-2, "lora": 1e-2}


def _accuracy(model, tokenizer, questions) -> float:
    from minillm.evaluate import accuracy

    return accuracy(model, tokenizer, questions)


def _train(model, method, tokenizer, train, steps, seed=0, **kw) -> tuple[nn.Module, dict]:
    m = prepare(model, method, **kw)
    hist = finetune(m, tokenizer, train, steps=steps, lr=LR[method], seed=seed, progress=False)
    return m, hist


def sample_efficiency(
    model: nn.Module,
    tokenizer,
    train: Sequence,
    test: Sequence,
    sizes: Sequence[int] = (16, 64, 256),
    steps: int = 30,
    progress: bool = True,
) -> list[dict]:
    """For each n in ``sizes``: fine-tune the pre-trained ``model`` and a fresh copy of its
    architecture on the first n of ``train`` (``steps`` steps each), and score both on ``test``.

    Returns rows ``{"n", "pretrained", "scratch"}`` (accuracies in [0, 1]).
    """
    from tqdm.auto import tqdm

    steps = check_int("steps", steps)
    if max(sizes) > len(train):
        raise ValueError(f"sizes go up to {max(sizes)} but train has {len(train)} questions; pass more")
    rows = []
    for n in tqdm(sizes, desc="sample efficiency", disable=not progress, leave=False):
        row = {"n": check_int("size", n)}
        for name, method in (("pretrained", "full"), ("scratch", "scratch")):
            m, _ = _train(model, method, tokenizer, train[:n], steps)
            row[name] = _accuracy(m, tokenizer, test)
        rows.append(row)
    return rows


def plot_sample_efficiency(rows: list[dict], chance: float = 0.2) -> Figure:
    """Accuracy against labelled examples (log x), pre-trained and from scratch, with chance."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    n = [r["n"] for r in rows]
    ax.plot(n, [r["pretrained"] for r in rows], "o-", label="pre-trained teacher, fine-tuned")
    ax.plot(n, [r["scratch"] for r in rows], "s-", label="same architecture, from scratch")
    ax.axhline(chance, color="gray", ls=":", label=f"chance ({chance:.0%})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("Who had the object? Pre-training pays for itself in labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def method_table(
    model: nn.Module,
    tokenizer,
    train: Sequence,
    test: Sequence,
    ranks: Sequence[int] = (1, 4, 16),
    steps: int = 30,
    targets: tuple[str, ...] = ("c_attn",),
    progress: bool = True,
) -> list[dict]:
    """Linear probe, full fine-tuning and LoRA (r in ``ranks`` on ``targets``), same data and steps.

    Rows ``{"method", "accuracy", "trainable", "share", "optimizer_bytes", "seconds_per_step",
    "model"}``; ``share`` is trainable / all parameters of ``model``; ``model`` is the
    fine-tuned copy (for :func:`forgetting`).
    """
    from tqdm.auto import tqdm

    total = sum(p.numel() for p in model.parameters())
    runs = [("head", "head (linear probe)", {}), ("full", "full fine-tuning", {})]
    runs += [("lora", f"LoRA r={r}", {"r": check_int("rank", r), "targets": targets}) for r in ranks]
    rows = []
    for method, label, kw in tqdm(runs, desc="methods", disable=not progress, leave=False):
        m, hist = _train(model, method, tokenizer, train, steps, **kw)
        n = trainable_parameters(m)
        rows.append({
            "method": label, "accuracy": _accuracy(m, tokenizer, test), "trainable": n, "share": n / total,
            "optimizer_bytes": optimizer_state_bytes(m), "seconds_per_step": hist["seconds_per_step"], "model": m,
        })
    return rows


def plot_methods(rows: list[dict], chance: float = 0.2) -> Figure:
    """Accuracy (bars) and trainable parameters (dots, log scale) per method."""
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    names = [r["method"] for r in rows]
    ax.bar(names, [r["accuracy"] for r in rows], color="tab:blue", alpha=0.8)
    ax.axhline(chance, color="gray", ls=":", label=f"chance ({chance:.0%})")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_ylabel("test accuracy (bars)")
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax2 = ax.twinx()
    ax2.plot(names, [r["trainable"] for r in rows], "o", color="tab:red")
    ax2.set_yscale("log")
    ax2.set_ylabel("trainable parameters (dots)", color="tab:red")
    ax.set_title("Same data, same steps: how much must train?")
    fig.tight_layout()
    return fig


def forgetting(base: nn.Module, tuned: dict[str, nn.Module], val_ids: Tensor, n_batches: int = 4) -> dict[str, float]:
    """Validation loss (nats/token) on the original stories: ``"before"`` for ``base`` and one
    entry per fine-tuned model in ``tuned`` (same blocks for all)."""
    from minillm.evaluate import evaluate_loss

    out = {"before": evaluate_loss(base, val_ids, 8, n_batches=n_batches)}
    for name, m in tuned.items():
        out[name] = evaluate_loss(m, val_ids, 8, n_batches=n_batches)
    return out


def adapter_file_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(lora_state_dict(model))``: what an adapter file weighs."""
    buf = io.BytesIO()
    torch.save(lora_state_dict(model), buf)
    return buf.getbuffer().nbytes


def _weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (the frozen base included), as stored in memory."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def qlora(
    model: nn.Module, tokenizer, train: Sequence, test: Sequence, r: int = 8, steps: int = 30,
    targets: tuple[str, ...] = ("c_attn",),
) -> dict:
    """LoRA on a float base and on a frozen int4 (group 32) copy of it, same data and steps.

    Returns ``{"float": {...}, "int4": {...}}``, each with ``accuracy``, ``weight_bytes`` (all
    parameters and buffers in memory), ``optimizer_bytes`` and ``trainable``.
    """
    from minillm.compress.lora import add_lora
    from minillm.compress.model_quant import quantize_model

    out = {}
    for name in ("float", "int4"):
        base = quantize_model(model, weights="int4", activations=None) if name == "int4" else copy.deepcopy(model)
        add_lora(base, r, targets=targets)
        finetune(base, tokenizer, train, steps=steps, lr=LR["lora"], progress=False)
        out[name] = {
            "accuracy": _accuracy(base, tokenizer, test), "weight_bytes": _weight_bytes(base),
            "optimizer_bytes": optimizer_state_bytes(base), "trainable": trainable_parameters(base),
        }
    return out


# --------------------------------------------------------------------------- the widget


def update_spectrum(before: nn.Module, after: nn.Module, layer: str = "h.0.attn.c_attn") -> Tensor:
    """Singular values [min(out, in)] of the update ΔW = W_after − W_before of one Linear."""
    w0 = before.get_submodule(layer).weight.detach()
    mod = after.get_submodule(layer)
    w1 = (mod.base.weight + mod.delta_weight()) if isinstance(mod, LoRALinear) else mod.weight
    return torch.linalg.svdvals((w1.detach() - w0).double()).float()


def lora_budget(
    model: nn.Module, r: int, alpha: float | None = None, targets: Sequence[str] = ("c_attn",),
    spectrum: Tensor | None = None,
) -> dict:
    """What LoRA at rank ``r`` costs on ``model``, without training it.

    ``trainable`` = sum over adapted matrices of r·(in + out); ``share`` of all parameters;
    ``adapter_bytes`` (float32); ``optimizer_bytes`` (AdamW: 8 per trainable) against
    ``full_optimizer_bytes``; ``scaling`` = alpha / r. With ``spectrum`` (singular values of
    a full fine-tuning update, :func:`update_spectrum`), ``energy`` is the share of
    ‖ΔW‖² the best rank-r matrix holds (Eckart–Young).
    """
    from minillm.model import Linear

    r = check_int("r", r)
    alpha = float(r) if alpha is None else check_number("alpha", alpha, strict=True)
    mats = [m for n, m in model.named_modules() if isinstance(m, Linear) and n.rsplit(".", 1)[-1] in tuple(targets)]
    if not mats:
        raise ValueError(f"no Linear named {tuple(targets)} in the model; try ('c_attn',)")
    total = sum(p.numel() for p in model.parameters())
    n = sum(r * (m.in_features + m.out_features) for m in mats)
    out = {
        "r": r, "alpha": alpha, "scaling": alpha / r, "matrices": len(mats), "trainable": n, "share": n / total,
        "adapter_bytes": 4 * n, "optimizer_bytes": ADAM_STATE_BYTES_PER_PARAM * n,
        "full_optimizer_bytes": ADAM_STATE_BYTES_PER_PARAM * total,
    }
    if spectrum is not None:
        e = spectrum.double() ** 2
        out["energy"] = float(e[:r].sum() / e.sum())
    return out


def plot_budget(budget: dict, spectrum: Tensor | None = None) -> Figure:
    """Left: the share of ΔW's energy a rank-r update can hold. Right: optimizer bytes, LoRA vs full."""
    fig = Figure(figsize=(8, 3))
    ax1, ax2 = fig.subplots(1, 2)
    if spectrum is not None:
        e = spectrum.double() ** 2
        cum = (e.cumsum(0) / e.sum()).numpy()
        ax1.plot(range(1, len(cum) + 1), cum, color="tab:blue")
        ax1.axvline(budget["r"], color="tab:red", ls="--")
        ax1.set_xscale("log")
        ax1.set_xlabel("rank")
        ax1.set_ylabel("share of ‖ΔW‖² kept")
        ax1.set_title(f"full fine-tuning's update, rank {budget['r']}: {budget.get('energy', 0):.0%}", fontsize=9)
    else:  # say why the panel is empty instead of leaving blank axes
        ax1.set_axis_off()
        ax1.text(0.5, 0.5, "no spectrum for this choice:\nthe update's spectrum is measured\nfor one c_attn matrix only",
                 ha="center", va="center", fontsize=9, transform=ax1.transAxes)
    sizes = [budget["optimizer_bytes"], budget["full_optimizer_bytes"]]
    ax2.bar(["LoRA", "full"], sizes, color=["tab:red", "tab:gray"])
    ax2.set_yscale("log")
    ax2.set_ylim(min(sizes) / 100, 10 * max(sizes))  # a log axis needs a floor well below both bars to compare them
    for i, b in enumerate(sizes):
        ax2.annotate(format_bytes(b), (i, b), ha="center", va="bottom", fontsize=8)
    ax2.set_ylabel("AdamW state, bytes (1 kB = 1e3 B)")
    ax2.set_title(f"{budget['trainable']:,} trainable ({budget['share']:.2%})", fontsize=9)
    fig.tight_layout()
    return fig


def lora_widget(model: nn.Module, spectrum: Tensor | None = None):
    """Sliders for rank and alpha and a target choice over :func:`lora_budget` (no training)."""
    import ipywidgets as w
    from IPython.display import display

    from minillm.units import format_bytes

    style = {"description_width": "initial"}
    choices = {"c_attn": ("c_attn",), "c_attn + c_proj + c_fc": ("c_attn", "c_proj", "c_fc")}

    def show(r, alpha, targets):
        b = lora_budget(model, r, alpha, choices[targets], spectrum if targets == "c_attn" else None)
        print(f"r={r}, alpha={alpha:g}: update scaled by alpha/r = {b['scaling']:.3g}; {b['matrices']} matrices, "
              f"{b['trainable']:,} trainable ({b['share']:.2%}); adapter {format_bytes(b['adapter_bytes'])}, "
              f"AdamW state {format_bytes(b['optimizer_bytes'])} vs {format_bytes(b['full_optimizer_bytes'])} full"
              + (f"; rank {r} holds {b['energy']:.0%} of full fine-tuning's update" if "energy" in b else ""))
        display(plot_budget(b, spectrum if targets == "c_attn" else None))
        return b

    return w.interactive(
        show,
        r=w.IntSlider(value=8, min=1, max=128, description="rank r", style=style),
        alpha=w.FloatSlider(value=8.0, min=1.0, max=64.0, step=1.0, description="alpha", style=style),
        targets=w.Dropdown(options=list(choices), value="c_attn", description="adapted layers", style=style),
    )


def tour_step(out_dir) -> str:
    """The LoRA step of ``minillm tour``: LoRA r=8 on c_attn against full fine-tuning on 64 examples.

    Saves ``lora.png`` (accuracy and trainable parameters per method) and returns markdown.
    """
    from pathlib import Path

    from minillm import zoo
    from minillm.data import chance_accuracy
    from minillm.threads import one_thread
    from minillm.transfer import transfer_task

    out_dir = Path(out_dir)
    with one_thread():
        teacher, tok = zoo.load("teacher")
        train, test = transfer_task(64, "train"), transfer_task(100, "test")
        zero = _accuracy(teacher, tok, test)
        rows = method_table(teacher, tok, train, test, ranks=(8,), steps=20, progress=False)
    plot_methods(rows, chance_accuracy(test)).savefig(out_dir / "lora.png", dpi=100)
    lines = [f"- zero-shot teacher: {zero:.0%} (chance {chance_accuracy(test):.0%})"]
    lines += [f"- {r['method']}: {r['accuracy']:.0%} with {r['trainable']:,} trainable ({r['share']:.2%})" for r in rows]
    text = "\n".join(lines)
    print("LoRA: 'Who had the red key?' from 64 examples, 20 steps\n" + text)
    return "## Transfer learning and LoRA\n\n'Who had the red key?' from 64 labelled examples, 20 steps of 8.\n\n" + text + "\n\n![](lora.png)\n"
