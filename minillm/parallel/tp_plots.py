"""Pictures and a widget for tensor parallelism (lesson 12).

- :func:`weight_owners` / :func:`plot_weight_ownership`: which rank holds each row or column of a
  block's four weight matrices (whole heads of Q, K and V; contiguous MLP slices).
- :func:`plot_activation_memory`: Korthikanti et al.'s activation memory with no TP, TP, TP with
  sequence parallelism, and recomputation.
- :func:`tp_view` (pure data) and :func:`plot_tp_view`, joined by :func:`tp_widget`: the TP degree,
  sequence length and width against memory per device, bytes per layer and the time of a layer on
  a link inside a node (NVLink) or between nodes (InfiniBand), which shows why TP stays in a node.

Units: bytes (GB = 1e9), seconds. Figures are built with ``matplotlib.figure.Figure`` (no pyplot).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from minillm.units import GB, format_bytes, format_seconds
from minillm.validate import check_choice, check_int

from .cluster import ClusterSpec
from .costs import collective_time
from .tp_costs import activation_memory_bytes, tp_comm_bytes

__all__ = [
    "weight_owners",
    "plot_weight_ownership",
    "plot_activation_memory",
    "plot_fg_diagram",
    "TP_CLUSTERS",
    "tp_view",
    "plot_tp_view",
    "tp_widget",
]

RANK_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def weight_owners(n_embd: int, n_head: int, tp: int) -> dict[str, np.ndarray]:
    """Owner rank of every row (column-parallel) or column (row-parallel) of a block's weights.

    Returns {"attn.c_attn": [3C] (rows: Q, K, V), "attn.c_proj": [C] (columns),
    "mlp.c_fc": [4C] (rows), "mlp.c_proj": [4C] (columns)}.
    """
    C, H, t = check_int("n_embd", n_embd), check_int("n_head", n_head), check_int("tp", tp)
    if H % t or C % H:
        raise ValueError(f"n_head={H} must divide by tp={t} and n_embd={C} by n_head")
    head_of_col = np.arange(C) // (C // H)
    heads = head_of_col // (H // t)  # rank owning each of Q's (and K's, V's) columns
    return {
        "attn.c_attn": np.concatenate([heads, heads, heads]),
        "attn.c_proj": heads,
        "mlp.c_fc": np.arange(4 * C) // (4 * C // t),
        "mlp.c_proj": np.arange(4 * C) // (4 * C // t),
    }


def plot_weight_ownership(n_embd: int = 32, n_head: int = 4, tp: int = 2) -> Figure:
    """Each of a block's weight matrices [out, in], coloured by the rank that stores that part."""
    owners = weight_owners(n_embd, n_head, tp)
    C = n_embd
    cmap = ListedColormap(RANK_COLORS[:tp])
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.2, 1.2, 1.2, 4]})
    panels = [
        ("attn.c_attn", (3 * C, C), "rows", "attn.c_attn [3C, C]\nrows: Q | K | V"),
        ("attn.c_proj", (C, C), "cols", "attn.c_proj [C, C]\ncolumns"),
        ("mlp.c_fc", (4 * C, C), "rows", "mlp.c_fc [4C, C]\nrows"),
        ("mlp.c_proj", (C, 4 * C), "cols", "mlp.c_proj [C, 4C]\ncolumns"),
    ]
    for ax, (name, shape, axis, title) in zip(axes, panels):
        own = owners[name]
        grid = np.broadcast_to(own[:, None], shape) if axis == "rows" else np.broadcast_to(own[None, :], shape)
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=tp - 0.5, aspect="auto", interpolation="nearest")
        if name == "attn.c_attn":
            for y in (C - 0.5, 2 * C - 0.5):
                ax.axhline(y, color="white", linewidth=2)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=RANK_COLORS[r], label=f"rank {r}") for r in range(tp)]
    fig.legend(handles=handles, loc="lower center", ncol=tp, frameon=False, fontsize=8)
    fig.suptitle(f"Where each weight lives: {n_head} heads over tp={tp} ranks", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.93))
    return fig


def plot_activation_memory(seq_len: int, batch: int, hidden: int, n_heads: int, n_layers: int, tps=(1, 2, 4, 8)) -> Figure:
    """Activation bytes per device (GB) against the TP degree: TP, TP + SP, and each with recomputation."""
    variants = [
        ("TP", False, "none"),
        ("TP + SP", True, "none"),
        ("TP + SP, selective recompute", True, "selective"),
        ("full recompute", False, "full"),
    ]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(variants)
    for k, (label, sp, rc) in enumerate(variants):
        vals = [activation_memory_bytes(seq_len, batch, hidden, n_heads, n_layers, t, sp, rc) / GB for t in tps]
        ax.bar(np.arange(len(tps)) + (k - (len(variants) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(range(len(tps)), [f"tp={t}" for t in tps])
    ax.set_ylabel("activations per device (GB)")
    ax.set_title(f"Korthikanti et al. 2022: s={seq_len}, b={batch}, h={hidden}, a={n_heads}, L={n_layers}, 16-bit", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _h100(link_bw: float, latency: float, name: str) -> ClusterSpec:
    return replace(ClusterSpec.from_device("h100"), name=name, link_bw=link_bw, latency=latency)


#: Inside a node: NVLink 4, 900 GB/s total = 450 GB/s per direction (H100 SXM datasheet).
#: Across nodes: one 400 Gb/s InfiniBand NDR port per GPU = 50 GB/s per direction (the DGX H100
#: layout); latencies are assumed orders of magnitude, not datasheet figures.
TP_CLUSTERS = {
    "H100, NVLink (inside a node)": lambda: _h100(450e9, 5e-6, "h100 nvlink"),
    "H100, InfiniBand (across nodes)": lambda: _h100(50e9, 10e-6, "h100 infiniband"),
}


def tp_view(
    tp: int = 8,
    seq_len: int = 2048,
    hidden: int = 12288,
    cluster: str = "H100, NVLink (inside a node)",
    n_heads: int = 96,
    batch: int = 1,
    sequence_parallel: bool = True,
    mfu: float = 0.5,
) -> dict:
    """One transformer layer's training step under tp-way TP, per device (bf16).

    Returns weights and activation bytes per device, bytes sent per layer (forward +
    backward), the time of the four all-reduces on the cluster's link, the compute time
    (3 × the forward's 24bsh² + 4bs²h FLOPs over tp, at ``mfu`` of the peak), and
    ``comm_share`` = comm / (comm + compute), without overlap.
    """
    t = check_int("tp", tp)
    check_choice("cluster", cluster, tuple(TP_CLUSTERS))
    spec = TP_CLUSTERS[cluster]()
    s, b, h = check_int("seq_len", seq_len), check_int("batch", batch), check_int("hidden", hidden)
    weights = 12 * h * h * 2 / t  # c_attn 3h², c_proj h², c_fc and mlp c_proj 4h² each; bf16
    acts = activation_memory_bytes(s, b, h, n_heads, 1, t, sequence_parallel)
    sent = tp_comm_bytes((b, s, h), t, sequence_parallel, bytes_per_elem=2)["total"]
    act_bytes = b * s * h * 2
    comm = 0.0 if t == 1 else 4 * collective_time("all_reduce", act_bytes, t, spec.link_bw, spec.latency)
    compute = 3 * (24 * b * s * h * h + 4 * b * s * s * h) / t / (mfu * spec.peak_flops)
    return {
        "tp": t, "cluster": cluster, "weights_bytes": weights, "activation_bytes": acts, "sent_bytes": sent,
        "comm_s": comm, "compute_s": compute, "comm_share": comm / (comm + compute),
    }


def plot_tp_view(rows: list[dict]) -> Figure:
    """Compute and communication time of a layer against tp, for the rows of :func:`tp_view`."""
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    tps = [r["tp"] for r in rows]
    x = np.arange(len(rows))
    ax.bar(x, [r["compute_s"] * 1e3 for r in rows], 0.6, label="compute", color=RANK_COLORS[0])
    ax.bar(x, [r["comm_s"] * 1e3 for r in rows], 0.6, bottom=[r["compute_s"] * 1e3 for r in rows], label="all-reduces", color=RANK_COLORS[1])
    for xi, r in zip(x, rows):
        ax.text(xi, (r["compute_s"] + r["comm_s"]) * 1e3, f"{r['comm_share']:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"tp={t}" for t in tps])
    ax.set_ylim(0, 1.2 * max((r["compute_s"] + r["comm_s"]) * 1e3 for r in rows))  # room for the labels above the bars
    ax.set_ylabel("one layer, forward + backward (ms)")
    ax.set_title(f"{rows[0]['cluster']}: communication share on top of each bar", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def tp_widget():
    """Controls for the cluster, sequence length, width and sequence parallelism over :func:`tp_view`."""
    import ipywidgets as w
    from IPython.display import display

    style = {"description_width": "initial"}

    def show(cluster, seq_len, hidden, sequence_parallel):
        rows = [tp_view(t, seq_len, hidden, cluster, n_heads=max(8, hidden // 128), sequence_parallel=sequence_parallel) for t in (1, 2, 4, 8)]
        for r in rows:
            print(f"tp={r['tp']}: weights {format_bytes(r['weights_bytes'])}/layer, activations {format_bytes(r['activation_bytes'])}/layer, "
                  f"each rank sends {format_bytes(r['sent_bytes'])}; compute {format_seconds(r['compute_s'])}, "
                  + (f"all-reduces {format_seconds(r['comm_s'])} ({r['comm_share']:.0%})" if r["tp"] > 1 else "no all-reduces"))
        display(plot_tp_view(rows))

    return w.interactive(
        show,
        cluster=w.Dropdown(options=list(TP_CLUSTERS), description="link", style=style, layout=w.Layout(width="420px")),
        seq_len=w.SelectionSlider(options=[512, 1024, 2048, 4096, 8192], value=2048, description="sequence length", style=style),
        hidden=w.SelectionSlider(options=[1024, 2048, 4096, 8192, 12288, 16384], value=12288, description="hidden size", style=style),
        sequence_parallel=w.Checkbox(value=True, description="sequence parallelism", style=style),
    )


def plot_fg_diagram(sequence_parallel: bool = False) -> Figure:
    """A transformer block as boxes, with Megatron's communication points marked.

    Without sequence parallelism: f (identity forward, all-reduce backward) before each
    column-parallel part, g (all-reduce forward, identity backward) after each row-parallel
    one. With it: an all-gather and a reduce-scatter along the sequence in their places.
    """
    comm_color, work_color, plain = "#dd8452", "#4c72b0", "#eeeeee"
    f_label, g_label = ("all-gather\n(sequence)", "reduce-\nscatter") if sequence_parallel else ("f", "g")
    boxes = [
        ("x [b, s/t, h]" if sequence_parallel else "x [b, s, h]", plain),
        ("LayerNorm", plain),
        (f_label, comm_color),
        ("attention\n(H/t heads)", work_color),
        (g_label, comm_color),
        ("LayerNorm", plain),
        (f_label, comm_color),
        ("MLP\n(4h/t wide)", work_color),
        (g_label, comm_color),
    ]
    step, width = 2.3, 1.9
    fig = Figure(figsize=(11, 2.8))
    ax = fig.subplots()
    ax.set_xlim(-0.2, len(boxes) * step)
    ax.set_ylim(0, 4)
    ax.axis("off")
    for i, (text, color) in enumerate(boxes):
        x = i * step
        ax.add_patch(FancyBboxPatch((x, 1.6), width, 1.2, boxstyle="round,pad=0.05", facecolor=color, edgecolor="black", linewidth=0.6))
        ax.text(x + width / 2, 2.2, text, ha="center", va="center", fontsize=8, color="black" if color == plain else "white")
        if i:
            ax.annotate("", xy=(x - 0.05, 2.2), xytext=(x - step + width + 0.05, 2.2), arrowprops=dict(arrowstyle="->", linewidth=0.7))
    if sequence_parallel:
        note = ("LayerNorm, dropout and the residual stream hold s/t positions per rank. All-gather before each parallel part,\n"
                "reduce-scatter after it (and the reverse backward): the bytes of two all-reduces, the activations divided by t.")
    else:
        note = ("Forward: g all-reduces after attention and after the MLP. Backward: f all-reduces before them.\n"
                "LayerNorm and the residual stream are computed, and stored, on every rank.")
    ax.text(len(boxes) * step / 2, 0.7, note, ha="center", va="center", fontsize=8)
    ax.set_title("One transformer block under tensor parallelism" + (" with sequence parallelism" if sequence_parallel else ""), fontsize=9)
    return fig
