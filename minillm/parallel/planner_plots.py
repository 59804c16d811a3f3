"""Lesson 14's pictures and widget: the planner's ranked layouts, their time and memory terms.

Data first (:func:`planner_view`, a pure function of the controls), pictures second
(:func:`plot_plans`, :func:`plot_published`), the widget last (:func:`planner_widget`,
``interactive`` over :func:`planner_view`). Memory in GB = 1e9 bytes, time in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from minillm.units import GB
from minillm.validate import check_int

from .planner import Plan, plan

__all__ = ["TIME_COLORS", "planner_view", "planner_summary", "format_plans", "plot_plans", "plot_published",
           "planner_widget"]

TIME_COLORS = {"compute": "#4c72b0", "tp_comm": "#dd8452", "bubble": "#bbbbbb", "pp_comm": "#937860",
               "dp_comm": "#55a868", "optimizer": "#c44e52"}
MEMORY_COLORS = {"parameters": "#4c72b0", "gradients": "#8172b3", "optimizer": "#c44e52", "activations": "#ccb974"}
WIDGET_MODELS = ("gpt3-175b", "llama2-7b", "llama2-13b", "llama2-70b", "llama3-70b")
WIDGET_DEVICES = ("a100", "h100", "h200")
WIDGET_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)


#: How a layout's x-axis label abbreviates the recompute policy; LAYOUT_KEY spells the label out.
RECOMPUTE_SHORT = {"none": "none", "selective": "sel", "full": "full"}
LAYOUT_KEY = "d t p = dp tp pp;  b = micro-batch, z = ZeRO stage, then recompute (none, sel[ective], full)"


def _label(p: Plan) -> str:
    return f"d{p.dp} t{p.tp} p{p.pp}\nb{p.micro_batch} z{p.zero_stage} {RECOMPUTE_SHORT.get(p.recompute, p.recompute)}"


def planner_view(model: str = "llama2-70b", n_devices: int = 64, device: str = "h100", global_batch: int = 256,
                 seq_len: int = 4096, top: int = 6, mfu: float = 0.5) -> dict:
    """The widget's data: the ``top`` fastest layouts that fit, and how many were tried and dropped.

    Returns {"plans": [Plan], "n_fit": int, "n_tried": int, plus the inputs}.
    """
    everything = plan(model, n_devices, device, global_batch=global_batch, seq_len=seq_len, mfu=mfu, include_unfit=True)
    fit = [p for p in everything if p.fits]
    return {"model": model, "n_devices": n_devices, "device": device, "global_batch": global_batch, "seq_len": seq_len,
            "plans": fit[: check_int("top", top)], "n_fit": len(fit), "n_tried": len(everything)}


def format_plans(plans: Sequence[Plan]) -> str:
    """A ranked text table: layout, memory (GB), step time, tokens/s, MFU and the bubble."""
    head = f"{'#':>2} {'dp':>4} {'tp':>3} {'pp':>3} {'b':>3} {'ZeRO':>4} {'recompute':>9} {'GB/device':>9} " \
           f"{'step s':>7} {'tokens/s':>10} {'MFU':>5} {'bubble':>6}"
    lines = [head]
    for i, p in enumerate(plans, start=1):
        lines.append(f"{i:>2} {p.dp:>4} {p.tp:>3} {p.pp:>3} {p.micro_batch:>3} {p.zero_stage:>4} {p.recompute:>9} "
                     f"{p.memory_bytes / GB:>9.1f} {p.step_time:>7.2f} {p.tokens_per_s:>10,.0f} {p.mfu:>5.1%} "
                     f"{p.bubble_fraction:>6.1%}")
    return "\n".join(lines)


def planner_summary(view: dict) -> str:
    """One line: how many layouts were tried, how many fit, and the winner."""
    if not view["plans"]:
        return f"{view['n_tried']} layouts tried, none fits: add devices or shrink the model, batch or sequence"
    best = view["plans"][0]
    return (f"{view['n_tried']} layouts tried, {view['n_fit']} fit; fastest: dp={best.dp} tp={best.tp} pp={best.pp}, "
            f"{best.tokens_per_s:,.0f} tokens/s, {best.memory_bytes / GB:.1f} GB per device")


def plot_plans(plans: Sequence[Plan], title: str = "") -> Figure:
    """Two panels: each plan's step time split into its terms, and its memory per device split likewise."""
    fig = Figure(figsize=(11, 3.8))
    ax_t, ax_m = fig.subplots(1, 2)
    labels = [_label(p) for p in plans]
    for ax, terms, colors, scale, unit in ((ax_t, "time_terms", TIME_COLORS, 1.0, "step time (s)"),
                                           (ax_m, "memory_terms", MEMORY_COLORS, GB, "memory per device (GB = 1e9 bytes)")):
        bottom = [0.0] * len(plans)
        for key, color in colors.items():
            vals = [getattr(p, terms).get(key, 0.0) / scale for p in plans]
            if any(vals):
                ax.bar(range(len(plans)), vals, bottom=bottom, color=color, label=key.replace("_", " "))
                bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(plans)), labels, fontsize=7)
        ax.set_xlabel(LAYOUT_KEY, fontsize=7)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if plans:
        ax_m.axhline(plans[0].capacity_bytes / GB, color="black", linestyle="--", linewidth=1)
        ax_m.text(-0.4, plans[0].capacity_bytes / GB, "device memory", ha="left", va="top", fontsize=7)
    ax_t.set_title("Where a step's time goes (fastest first)")
    ax_m.set_title("What each device holds")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_published(rows: Sequence[dict]) -> Figure:
    """Published against predicted TFLOP/s per GPU, one pair of bars per run, the error printed above."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["published_TFLOPs"] for r in rows], width=0.4, color="#4c72b0", label="published")
    ax.bar([i + 0.2 for i in x], [r["predicted_TFLOPs"] for r in rows], width=0.4, color="#dd8452", label="planner")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r["predicted_TFLOPs"] + 3, f"{r['error']:+.0%}", ha="center", fontsize=8)
    ax.set_xticks(list(x), [f"{r['run']}\nTP{r['tp']} PP{r['pp']} DP{r['dp']}" for r in rows], fontsize=8)
    ax.set_ylabel("TFLOP/s per GPU (counting recomputation)")
    ax.set_title("The planner against published runs (A100)")
    ax.set_ylim(0, 1.2 * max(r["published_TFLOPs"] for r in rows))
    ax.legend(frameon=False, fontsize=8, loc="upper left", ncols=2)
    fig.tight_layout()
    return fig


def planner_widget(draw: bool = True):
    """Lesson 14's widget: ``interactive`` over :func:`planner_view`: the ranked table and the terms."""
    from ipywidgets import Dropdown, SelectionSlider

    from .widgets import interactive_view

    def show(view):
        fig = plot_plans(view["plans"], title=f"{view['model']} on {view['n_devices']} × {view['device']}")
        return fig

    def summary(view):
        return planner_summary(view) + "\n" + format_plans(view["plans"])

    return interactive_view(
        planner_view, show, summary, draw,
        model=Dropdown(options=WIDGET_MODELS, value="llama2-70b", description="model"),
        n_devices=SelectionSlider(options=WIDGET_SIZES, value=64, description="devices"),
        device=Dropdown(options=WIDGET_DEVICES, value="h100", description="device"),
        global_batch=SelectionSlider(options=(64, 128, 256, 512, 1024, 2048), value=256, description="global batch (sequences)"),
        seq_len=SelectionSlider(options=(1024, 2048, 4096, 8192), value=4096, description="sequence length"),
    )
