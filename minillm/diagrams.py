"""Diagrams for lesson 01 where prose struggles: the transformer block and the KV cache.

Each diagram is a pure data function (what to draw: boxes, arrows, cells) and a
plotting function that draws it on a ``matplotlib.figure.Figure`` (no pyplot), so the
tests can check what is drawn without looking at pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from minillm.model import GPTConfig
from minillm.validate import check_int

__all__ = ["Box", "block_boxes", "block_figure", "kv_cache_steps", "kv_cache_figure"]


@dataclass(frozen=True)
class Box:
    """One box of the block diagram: its label, the tensor shape it outputs, and its row (0 = bottom)."""

    label: str
    shape: str
    row: int
    kind: str  # "tensor", "norm", "attention", "mlp" or "add"


def block_boxes(config: GPTConfig) -> list[Box]:
    """The pre-norm block ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``, bottom to top.

    Shapes use B (batch), T (tokens), C = ``n_embd``, H = ``n_head`` and D = C / H, with
    the config's numbers filled in.
    """
    C, H, D = config.n_embd, config.n_head, config.head_dim
    return [
        Box("x (residual stream)", f"[B, T, {C}]", 0, "tensor"),
        Box("ln_1", f"[B, T, {C}]", 1, "norm"),
        Box(f"c_attn → Q, K, V; {H} heads of D = {D}", f"3 × [B, {H}, T, {D}]", 2, "attention"),
        Box("softmax(QKᵀ/√D + mask) V, then c_proj", f"[B, T, {C}]", 3, "attention"),
        Box("x + attn", f"[B, T, {C}]", 4, "add"),
        Box("ln_2", f"[B, T, {C}]", 5, "norm"),
        Box(f"c_fc ({C} → {4 * C}), GELU, c_proj ({4 * C} → {C})", f"[B, T, {C}]", 6, "mlp"),
        Box("x + mlp", f"[B, T, {C}]", 7, "add"),
    ]


_COLORS = {"tensor": "#e8e8e8", "norm": "#fde7b0", "attention": "#bcd7f5", "mlp": "#c9ecc4", "add": "#f4c7c3"}


def block_figure(config: GPTConfig) -> Figure:
    """Draw :func:`block_boxes` bottom to top, with the two residual connections as side arrows."""
    boxes = block_boxes(config)
    fig = Figure(figsize=(6.4, 6.0))
    ax = fig.add_subplot()
    height, gap = 0.62, 1.0
    for b in boxes:
        y = b.row * gap
        ax.add_patch(Rectangle((0.0, y), 4.2, height, facecolor=_COLORS[b.kind], edgecolor="black", lw=0.8))
        ax.text(2.1, y + height / 2, b.label, ha="center", va="center", fontsize=8.5)
        ax.text(4.35, y + height / 2, b.shape, ha="left", va="center", fontsize=8, color="dimgray", family="monospace")
        if b.row:
            ax.add_patch(FancyArrowPatch((2.1, y - gap + height), (2.1, y), arrowstyle="-|>", mutation_scale=10, lw=0.8))
    # Residual connections: x skips around each sub-layer and is added back.
    for start, end in ((0, 4), (4, 7)):
        ax.add_patch(
            FancyArrowPatch(
                (0.0, start * gap + height / 2), (0.0, end * gap + height / 2),
                connectionstyle="arc3,rad=-0.35", arrowstyle="-|>", mutation_scale=10, lw=1.0, color="firebrick",
            )
        )
    ax.text(-1.0, 2.2 * gap, "residual", rotation=90, ha="center", va="center", fontsize=8, color="firebrick")
    ax.text(-1.0, 5.7 * gap, "residual", rotation=90, ha="center", va="center", fontsize=8, color="firebrick")
    ax.set_xlim(-1.5, 6.3)
    ax.set_ylim(-0.3, len(boxes) * gap)
    ax.axis("off")
    ax.set_title(f"One block (pre-norm, as GPT-2): C = {config.n_embd}, H = {config.n_head}, D = {config.head_dim}")
    fig.tight_layout()
    return fig


def kv_cache_steps(prompt_len: int, n_new: int, use_cache: bool) -> list[dict]:
    """What each decoding step does, as ``GPT.generate`` runs it (no sliding window).

    One dict per step i = 0..n_new-1: ``computed`` (positions whose Q, K, V and MLP run
    this step), ``cached`` (positions whose K and V are read from the cache) and
    ``length`` (the sequence length the step attends over, p + i).
    """
    p = check_int("prompt_len", prompt_len)
    n = check_int("n_new", n_new, minimum=0)
    steps = []
    for i in range(n):
        length = p + i
        if use_cache and i > 0:
            computed, cached = [length - 1], list(range(length - 1))
        else:
            computed, cached = list(range(length)), []
        steps.append({"step": i, "computed": computed, "cached": cached, "length": length})
    return steps


def kv_cache_figure(prompt_len: int = 4, n_new: int = 5) -> Figure:
    """Two grids, without and with a cache: one row per step, one cell per position.

    Dark cells run through the weights this step; light cells are keys and values read
    from the cache; blank cells do not exist yet. Each panel's title gives its total.
    """
    fig = Figure(figsize=(9.0, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    width = prompt_len + n_new - 1
    for ax, use_cache in zip(axes, (False, True)):
        steps = kv_cache_steps(prompt_len, n_new, use_cache)
        for s in steps:
            for j in s["computed"]:
                ax.add_patch(Rectangle((j, s["step"]), 0.9, 0.8, facecolor="tab:blue", edgecolor="none"))
            for j in s["cached"]:
                ax.add_patch(Rectangle((j, s["step"]), 0.9, 0.8, facecolor="#c6dbef", edgecolor="none"))
        total = sum(len(s["computed"]) for s in steps)
        ax.set_title(f"{'with' if use_cache else 'without'} a KV cache: {total} positions computed")
        ax.set_xlim(-0.2, width + 0.1)
        ax.set_ylim(n_new, -0.2)  # step 0 at the top
        ax.set_xlabel("position (prompt, then generated tokens)")
        ax.axvline(prompt_len - 0.05, color="gray", lw=0.8, ls=":")
    axes[0].set_ylabel("decoding step")
    fig.legend(
        handles=[Rectangle((0, 0), 1, 1, color="tab:blue"), Rectangle((0, 0), 1, 1, color="#c6dbef")],
        labels=["runs through the weights", "K, V read from the cache"],
        loc="lower center", ncol=2, fontsize=8, frameon=False,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
