"""Pictures and a widget for pipeline parallelism (lesson 13).

- :func:`plot_schedules`: the classic figure, GPipe, 1F1B and interleaved 1F1B one above
  the other for the same p and m, drawn from :func:`~minillm.parallel.pp_schedule.schedule_timeline`.
- :func:`plot_in_flight`: micro-batches of activations each rank holds at its peak.
- :func:`pipeline_view` (pure data) and :func:`plot_pipeline_view`, joined by
  :func:`pipeline_widget`: p, m, v and the backward/forward time ratio against the bubble,
  the makespan and the activation memory.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minillm.validate import check_int, check_number

from .pp_schedule import Timeline, bubble_fraction, schedule_timeline

__all__ = ["plot_schedules", "plot_in_flight", "pipeline_view", "plot_pipeline_view", "pipeline_widget"]

F_COLOR, B_COLOR = "#4c72b0", "#dd8452"
CHUNK_ALPHA = (1.0, 0.6, 0.35, 0.2)  # interleaved chunks: lighter for later chunks


def _draw_timeline(ax, tl: Timeline, label_micro: bool = True) -> None:
    for r, events in enumerate(tl.events):
        for e in events:
            color = F_COLOR if e.op == "F" else B_COLOR
            ax.broken_barh([(e.start, e.end - e.start)], (r - 0.4, 0.8), facecolors=color,
                           alpha=CHUNK_ALPHA[e.chunk % len(CHUNK_ALPHA)], edgecolor="white", linewidth=0.5)
            if label_micro and e.end - e.start >= 0.45:
                ax.text((e.start + e.end) / 2, r, str(e.micro), ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(tl.p), [f"stage {r}" for r in range(tl.p)])
    ax.set_ylim(tl.p - 0.5, -0.5)
    ax.set_xlim(0, tl.makespan)
    v = f", v={tl.n_virtual}" if tl.n_virtual > 1 else ""
    ax.set_title(f"{tl.kind} (p={tl.p}, m={tl.m}{v}): makespan {tl.makespan:.3g}, bubble {tl.bubble:.0%}", fontsize=9)


def plot_schedules(timelines: Sequence[Timeline]) -> Figure:
    """One Gantt chart per schedule, stacked, on one time axis (units of one forward pass)."""
    if not timelines:
        raise ValueError("plot_schedules needs at least one Timeline from schedule_timeline(...)")
    fig = Figure(figsize=(9, 0.6 + sum(0.35 * tl.p + 0.5 for tl in timelines)))
    axes = fig.subplots(len(timelines), 1, sharex=True, squeeze=False)[:, 0]
    for ax, tl in zip(axes, timelines):
        _draw_timeline(ax, tl)
    axes[-1].set_xlim(0, max(tl.makespan for tl in timelines))  # shared: the longest schedule fits
    axes[-1].set_xlabel("time (units of one micro-batch's forward pass through one stage)")
    handles = [Patch(color=F_COLOR, label="forward"), Patch(color=B_COLOR, label="backward")]
    if any(tl.n_virtual > 1 for tl in timelines):
        handles.append(Patch(color=F_COLOR, alpha=CHUNK_ALPHA[1], label="later chunk (interleaved)"))
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def plot_in_flight(timelines: Sequence[Timeline]) -> Figure:
    """Peak micro-batches of activations held by each rank, one group of bars per schedule.

    Interleaved chunks hold 1/v of a micro-batch's activations each, so they count 1/v.
    """
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    width = 0.8 / len(timelines)
    p = max(tl.p for tl in timelines)
    for k, tl in enumerate(timelines):
        held = [n / tl.n_virtual for n in tl.in_flight]
        ax.bar([r + (k - (len(timelines) - 1) / 2) * width for r in range(tl.p)], held, width, label=tl.kind)
    ax.set_xticks(range(p), [f"stage {r}" for r in range(p)])
    ax.set_ylabel("micro-batches of activations held")
    ax.set_ylim(0, 1.3 * max(n / tl.n_virtual for tl in timelines for n in tl.in_flight))  # room for the legend
    ax.set_title("Activation memory at its peak, per stage")
    ax.legend(frameon=False, fontsize=8, loc="upper center", ncol=len(timelines))
    fig.tight_layout()
    return fig


def pipeline_view(p: int = 4, m: int = 8, n_virtual: int = 2, backward_ratio: float = 2.0) -> dict:
    """Bubble, makespan and peak activations of the three schedules for one setting.

    Returns {"p", "m", "n_virtual", "backward_ratio", "rows": [{kind, makespan, bubble,
    formula, peak_in_flight}], "timelines": [Timeline]}; the interleaved row is left out
    when m is not a multiple of p (the schedule needs micro-batches in groups of p).
    """
    p, m, v = check_int("p", p), check_int("m", m), check_int("n_virtual", n_virtual)
    ratio = check_number("backward_ratio", backward_ratio, strict=True)
    kinds = [("gpipe", 1), ("1f1b", 1)] + ([("interleaved-1f1b", v)] if v > 1 and m % p == 0 else [])
    rows, timelines = [], []
    for kind, vv in kinds:
        tl = schedule_timeline(kind, p, m, 1.0, ratio, n_virtual=vv)
        timelines.append(tl)
        rows.append(dict(kind=kind, makespan=tl.makespan, bubble=tl.bubble, formula=bubble_fraction(p, m, vv),
                         peak_in_flight=max(tl.in_flight) / vv))
    return {"p": p, "m": m, "n_virtual": v, "backward_ratio": ratio, "rows": rows, "timelines": timelines}


def plot_pipeline_view(view: dict) -> Figure:
    """The view's timelines, stacked, with a one-line summary per schedule in the titles."""
    return plot_schedules(view["timelines"])


def pipeline_widget():
    """Sliders for p, m, v and the backward/forward ratio over :func:`pipeline_view`."""
    import ipywidgets as w
    from IPython.display import display

    style = {"description_width": "initial"}

    def show(p, m, n_virtual, backward_ratio):
        view = pipeline_view(p, m, n_virtual, backward_ratio)
        for row in view["rows"]:
            print(f"{row['kind']:<17} makespan {row['makespan']:6.2f}   bubble {row['bubble']:5.1%}"
                  f"   peak activations {row['peak_in_flight']:g} micro-batches")
        if n_virtual > 1 and m % p:
            print(f"(interleaved 1F1B needs m to be a multiple of p={p})")
        display(plot_pipeline_view(view))

    return w.interactive(
        show,
        p=w.IntSlider(value=4, min=2, max=8, description="stages p", style=style),
        m=w.IntSlider(value=8, min=1, max=32, description="micro-batches m", style=style),
        n_virtual=w.IntSlider(value=2, min=1, max=4, description="chunks per stage v", style=style),
        backward_ratio=w.FloatSlider(value=2.0, min=0.5, max=4.0, step=0.5, description="backward / forward time", style=style),
    )
