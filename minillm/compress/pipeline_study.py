"""Lesson 06's figures and widget over the rows of a compression search (:mod:`minillm.compress.pipeline`).

- :func:`front_data`: the points and the Pareto front of bytes (or latency) against validation loss.
- :func:`plot_pareto`: both fronts side by side, the chosen configuration ringed.
- :func:`budget_choice` and :func:`budget_widget`: pick a size or latency budget and see the
  best configuration found, over precomputed rows (nothing is re-measured).

Figures are ``matplotlib.figure.Figure`` objects (no pyplot).
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from minillm.validate import check_choice

from .pipeline import pareto_front, select

__all__ = ["front_data", "loss_axis_top", "plot_pareto", "budget_choice", "budget_widget"]

_AXES = {"bytes": ("size (MB)", 1e-6), "latency_ms": ("forward latency, 1 thread (ms)", 1.0)}


def front_data(rows: list[dict], cost: str = "bytes") -> dict:
    """{"x": costs (MB or ms), "y": validation losses, "names", "front": Pareto indices sorted by cost}."""
    check_choice("cost", cost, tuple(_AXES))
    if not rows:
        raise ValueError("rows is empty; pass the rows of compress(...)[1].rows or evaluate_plans(...)[0]")
    scale = _AXES[cost][1]
    x = [r[cost] * scale for r in rows]
    y = [r["val_loss"] for r in rows]
    front = sorted(pareto_front(list(zip(x, y))), key=lambda i: (x[i], y[i]))
    return {"x": x, "y": y, "names": [r["name"] for r in rows], "front": front}


def loss_axis_top(losses: list[float], max_loss_increase: float | None = None) -> float | None:
    """Top of the loss axis that keeps the front readable, or None to show every point.

    A configuration that lost most of its quality (pruning without recovery: +190% loss) would
    squash every useful point into a flat line at the bottom. The axis is cut at
    ``losses[0] · (1 + max(0.25, 3 · max_loss_increase))`` when that leaves at most a third of
    the points above it (they are drawn as markers on the top edge); otherwise nothing is cut.
    """
    if not losses:
        raise ValueError("losses is empty; pass the validation losses of the rows, the original first")
    top = losses[0] * (1 + max(0.25, 3 * (max_loss_increase or 0.0)))
    above = sum(y > top for y in losses)
    return top if 0 < above <= len(losses) / 3 else None


def plot_pareto(
    rows: list[dict], chosen: int | None = None, max_loss_increase: float | None = None,
    max_mb: float | None = None, max_latency_ms: float | None = None,
) -> Figure:
    """Size against loss and latency against loss; the front as a step line, ``chosen`` ringed in red.

    ``max_loss_increase`` draws the quality budget as a dashed horizontal line (relative to row 0's
    loss); ``max_mb`` and ``max_latency_ms`` draw the size and latency budgets as dashed vertical lines.
    Configurations far worse than the budget sit on the top edge as triangles (:func:`loss_axis_top`).
    """
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, cost in zip(axes, ("bytes", "latency_ms")):
        d = front_data(rows, cost)
        colors = ["#8c8c8c" if r.get("weights") is None else "#4c72b0" for r in rows]
        ax.scatter(d["x"], d["y"], c=colors, s=30, zorder=3)
        fx, fy = [d["x"][i] for i in d["front"]], [d["y"][i] for i in d["front"]]
        ax.step(fx, fy, where="post", color="#dd8452", linewidth=1.5, label="Pareto front", zorder=2)
        ax.scatter([d["x"][0]], [d["y"][0]], marker="*", s=160, color="black", label="float32 original", zorder=4)
        if chosen is not None:
            ax.scatter([d["x"][chosen]], [d["y"][chosen]], s=220, facecolors="none", edgecolors="red",
                       linewidths=2, label="chosen", zorder=5)
        if max_loss_increase is not None:
            ax.axhline(d["y"][0] * (1 + max_loss_increase), color="red", linestyle="--", linewidth=0.8,
                       label=f"+{max_loss_increase:.0%} loss budget")
        limit = max_mb if cost == "bytes" else max_latency_ms
        if limit is not None:
            unit = "MB" if cost == "bytes" else "ms"
            ax.axvline(limit, color="purple", linestyle=":", linewidth=1.0, label=f"{limit:.3g} {unit} budget")
        top = loss_axis_top(d["y"], max_loss_increase)
        if top is not None:
            off = [i for i, y in enumerate(d["y"]) if y > top]
            ax.set_ylim(top=top)
            ax.scatter([d["x"][i] for i in off], [top] * len(off), marker="^", s=60, clip_on=False, zorder=6,
                       c=[colors[i] for i in off])
            worst = max(d["y"][i] for i in off)
            ax.annotate(f"▲ off scale: {len(off)} with loss up to {worst:.2f}", (0.01, 0.02), xycoords="axes fraction",
                        ha="left", va="bottom", fontsize=7)
        ax.set_xlabel(_AXES[cost][0])
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
    axes[0].set_title("size against quality (blue: quantized)", fontsize=10)
    axes[1].set_title("latency against quality", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper right")
    # the right panel repeats none of the left's entries, only the line it alone has
    extra = [(h, lab) for h, lab in zip(*axes[1].get_legend_handles_labels()) if lab.endswith(" ms budget")]
    if extra:
        axes[1].legend(*zip(*extra), fontsize=8)
    fig.tight_layout()
    return fig


def budget_choice(
    rows: list[dict], max_mb: float | None = None, max_latency_ms: float | None = None,
    max_loss_increase: float | None = 0.05, objective: str = "size",
) -> dict | None:
    """The row :func:`~minillm.compress.pipeline.select` picks under these budgets (None: no limit), or None."""
    i = select(rows, None if max_mb is None else max_mb * 1e6, max_loss_increase, max_latency_ms, objective)
    return None if i is None else {**rows[i], "index": i}


def budget_widget(rows: list[dict]):
    """Sliders for a size budget (MB), a latency budget (ms) and a loss budget; shows the best row and the fronts."""
    import ipywidgets as w
    from IPython.display import display

    style = {"description_width": "initial"}
    up = lambda v, step: round(math.ceil(v / step - 1e-9) * step, 3)  # on the slider grid, at or above v
    lo_mb, hi_mb = up(min(r["bytes"] for r in rows) / 1e6, 0.01), up(max(r["bytes"] for r in rows) / 1e6, 0.01)
    lo_ms, hi_ms = up(min(r["latency_ms"] for r in rows), 0.1), up(max(r["latency_ms"] for r in rows), 0.1)

    def show(max_mb, max_latency_ms, max_loss_pct, objective):
        best = budget_choice(rows, max_mb, max_latency_ms, max_loss_pct / 100, objective)
        if best is None:
            print(f"nothing fits {max_mb:.2f} MB, {max_latency_ms:.1f} ms and +{max_loss_pct:.0f}% loss; loosen a budget")
        else:
            print(
                f"best ({objective}): {best['name']}: {best['bytes'] / 1e6:.2f} MB, {best['latency_ms']:.1f} ms, "
                f"loss {best['val_loss']:.3f} ({best['loss_increase']:+.1%})"
            )
        display(plot_pareto(rows, None if best is None else best["index"], max_loss_pct / 100, max_mb, max_latency_ms))
        return best

    return w.interactive(
        show,
        max_mb=w.FloatSlider(value=hi_mb, min=lo_mb, max=hi_mb, step=0.01, description="size budget (MB)", style=style),
        max_latency_ms=w.FloatSlider(value=hi_ms, min=lo_ms, max=hi_ms, step=0.1, description="latency budget (ms)", style=style),
        max_loss_pct=w.FloatSlider(value=5.0, min=0.0, max=20.0, step=0.5, description="loss budget (%)", style=style),
        objective=w.Dropdown(options=["size", "latency"], value="size", description="pick the", style=style),
    )
