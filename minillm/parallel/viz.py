"""Pictures of a parallel run: per-rank timelines, memory by category, busbw against message size.

Each function takes plain data (a :class:`~minillm.parallel.comm.RunResult`, a
ledger, a dict of bytes, the rows of :func:`~minillm.parallel.collectives.busbw_sweep`)
and returns a matplotlib ``Figure``, so notebooks and widgets can compute once and
plot separately. Sizes use decimal units (1 GB = 1e9 bytes).

Figures are built with ``matplotlib.figure.Figure``, not pyplot: nothing stays open in
a global figure list, and in Jupyter a returned Figure displays itself. Every function
also takes ``ax=`` to draw into a panel of a larger figure.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minillm.units import GB, KB, MB, TB

from .comm import CATEGORIES, Event, MemoryLedger, RunResult
from .costs import SHARDED_FROM_STAGE, STAGES, zero_ownership

__all__ = ["plot_timeline", "plot_memory", "plot_memory_timeline", "memory_phases", "plot_busbw", "plot_zero_shards",
           "KIND_COLORS", "CATEGORY_COLORS", "PHASE_COLORS"]

KIND_COLORS = {"compute": "#4c72b0", "comm": "#dd8452", "idle": "#d9d9d9"}
CATEGORY_COLORS = {"parameters": "#4c72b0", "gradients": "#55a868", "optimizer": "#c44e52",
                   "activations": "#8172b3", "comm": "#dd8452"}


def _new_axes(ax, figsize: tuple[float, float]):
    """(figure, axes): the given axes and its figure, or a new one-panel Figure."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if seconds >= scale:
            return scale, unit
    return 1e-9, "ns"


def _byte_unit(nbytes: float) -> tuple[float, str]:
    for scale, unit in ((TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "kB")):
        if nbytes >= scale:
            return scale, unit
    return 1.0, "bytes"


def plot_timeline(run: RunResult | Sequence[Sequence[Event]], title: str | None = None, ax=None) -> Figure:
    """A Gantt chart: one row per rank, bars for compute, communication and idle time."""
    traces = run.traces if isinstance(run, RunResult) else run
    if traces is None:
        raise ValueError("this run has no traces; timelines come from backend='sim'")
    end = max((e.end for tr in traces for e in tr), default=0.0)
    scale, unit = _time_unit(end or 1.0)
    fig, ax = _new_axes(ax, (9, 1.2 + 0.4 * len(traces)))
    for r, trace in enumerate(traces):
        for kind in ("idle", "comm", "compute"):
            bars = [(e.start / scale, e.duration / scale) for e in trace if e.kind == kind]
            if bars:
                ax.broken_barh(bars, (r - 0.35, 0.7), facecolors=KIND_COLORS[kind], edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(traces)), [f"rank {r}" for r in range(len(traces))])
    ax.invert_yaxis()
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_xlim(0, end / scale if end else 1)
    handles = [Patch(color=c, label=k) for k, c in KIND_COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title(title or "Per-rank timeline")
    fig.tight_layout()
    return fig


def plot_memory(data: Mapping[str, Mapping[str, float]], title: str | None = None, capacity: float | None = None, ax=None) -> Figure:
    """Stacked bars of bytes per device by category, one bar per setting (e.g. per ZeRO stage).

    data: {label: {category: bytes}}, e.g. ``{"stage 1": zero_memory_bytes(...).as_dict()}``
    or a ledger's ``current``/``peak_by_category``. ``capacity`` draws the device's memory.
    """
    if not data:
        raise ValueError("data is empty; pass {label: {category: bytes}}")
    top = max(sum(v.values()) for v in data.values())
    scale, unit = _byte_unit(max(top, capacity or 0.0) or 1.0)
    fig, ax = _new_axes(ax, (2.6 + 1.3 * len(data), 4))
    labels = list(data)
    bottom = [0.0] * len(labels)
    for cat in CATEGORIES:
        vals = [data[l].get(cat, 0.0) / scale for l in labels]
        if any(vals):
            ax.bar(labels, vals, bottom=bottom, color=CATEGORY_COLORS[cat], label=cat)
            bottom = [b + v for b, v in zip(bottom, vals)]
    if capacity is not None:
        ax.axhline(capacity / scale, color="black", linestyle="--", linewidth=1, label="device memory")
    ax.set_ylabel(f"memory per device ({unit} = {scale:.0e} bytes)".replace("e+", "e") if unit != "bytes" else "memory per device (bytes)")
    ax.set_title(title or "Memory per device by category")
    # Right of the bars, outside the axes: stacked bars fill the plot's top-left corner.
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


PHASE_COLORS = {"forward": "#c6dbef", "backward": "#c7e9c0", "forward+backward": "#d9d9d9", "optimizer step": "#fcbba1"}


def memory_phases(ledger: MemoryLedger, trace: Sequence[Event] = ()) -> list[tuple[str, float, float]]:
    """The phases of a training run on one rank, as ``(label, start, end)`` in simulated seconds.

    From the ledger: 'forward' runs from the end of the previous phase to the moment the
    activations are saved (the ledger's 'forward' allocation), 'backward' from there to
    their release ('backward done'). From the trace: every compute event
    ('forward+backward', the compute the DP step charges in one block after backward,
    and 'optimizer step'). Sorted by start time.
    """
    phases = [(e.op, e.start, e.end) for e in trace if e.kind == "compute" and e.op in PHASE_COLORS]
    saved_at = None
    for t, cat, label, delta, *_ in ledger.timeline:
        if cat != "activations":
            continue
        if label == "forward" and delta > 0:
            start = max([0.0] + [end for _, _, end in phases if end <= t])  # where the step before ended
            phases.append(("forward", start, t))
            saved_at = t
        elif label == "backward done" and saved_at is not None:
            phases.append(("backward", saved_at, t))
            saved_at = None
    return sorted(phases, key=lambda ph: (ph[1], ph[2]))


def plot_memory_timeline(ledger: MemoryLedger, title: str | None = None, ax=None, trace: Sequence[Event] = ()) -> Figure:
    """Bytes held over (simulated) time, stacked by category, from a :class:`MemoryLedger`.

    With the rank's ``trace`` (``RunResult.traces[r]``) the phases of
    :func:`memory_phases` are shaded behind the data and named above the axes.
    """
    if not ledger.timeline:
        raise ValueError("the ledger recorded nothing; allocate with comm.memory.alloc(...) first")
    times = [t for t, *_ in ledger.timeline]
    cur = {c: 0 for c in CATEGORIES}
    series = {c: [] for c in CATEGORIES}
    for _, cat, _, _, cat_total, _ in ledger.timeline:
        cur[cat] = cat_total
        for c in CATEGORIES:
            series[c].append(cur[c])
    phases = memory_phases(ledger, trace) if trace else []
    end = max([max(times)] + [b for _, _, b in phases])
    scale, unit = _byte_unit(max(ledger.peak, 1))
    tscale, tunit = _time_unit(end or 1.0)
    fig, ax = _new_axes(ax, (10, 3.8))
    used = [c for c in CATEGORIES if any(series[c])]
    ax.stackplot([t / tscale for t in times], *[[v / scale for v in series[c]] for c in used],
                 labels=used, colors=[CATEGORY_COLORS[c] for c in used], step="post")
    for label, a, b in phases:
        span = ax.axvspan(a / tscale, b / tscale, color=PHASE_COLORS[label], alpha=0.5, zorder=0, lw=0)
        span.set_gid(f"phase|{label}")
        if b - a >= 0.03 * end:  # name the phases wide enough to read; a thin compute block stays a shade
            ax.text((a + b) / 2 / tscale, 1.01, label, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8)
    if phases and end - phases[-1][2] >= 0.03 * end:
        ax.text((phases[-1][2] + end) / 2 / tscale, 1.01, "after the last step", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8)
    ax.set_xlim(0, end / tscale)
    ax.set_xlabel(f"simulated time ({tunit})")
    ax.set_ylabel(f"memory ({unit})")
    ax.set_title(title or f"Memory over time (peak {ledger.peak / scale:.3g} {unit})", pad=16 if phases else 6)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_busbw(
    rows: Sequence[Mapping[str, float]] | Mapping[str, Sequence[Mapping[str, float]]], link_bw: float | None = None, title: str | None = None, ax=None
) -> Figure:
    """Bus bandwidth against message size (log-log); rows from :func:`busbw_sweep` (or {label: rows})."""
    curves = rows if isinstance(rows, Mapping) else {"busbw": rows}
    fig, ax = _new_axes(ax, (7, 4))
    for label, rs in curves.items():
        ax.plot([r["nbytes"] for r in rs], [r["busbw"] / GB for r in rs], marker="o", markersize=3, label=label)
    if link_bw is not None:
        ax.axhline(link_bw / GB, color="black", linestyle="--", linewidth=1, label="link bandwidth")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s, 1 GB = 1e9 bytes)")
    ax.set_title(title or "Bus bandwidth against message size")
    ax.legend(frameon=False, fontsize=8, loc="lower right")  # busbw rises to the right: the lower right is empty
    fig.tight_layout()
    return fig


_STAGE_TITLES = {0: "plain DP, all replicated", 1: "P_os, optimizer sharded", 2: "P_os+g, + gradients",
                 3: "P_os+g+p, + parameters"}


def plot_zero_shards(world_size: int = 4, stages=STAGES) -> Figure:
    """Who holds what under each ZeRO stage: one panel per stage, one row per rank and model state.

    The model's parameters are cut into ``world_size`` slices (the columns). A filled
    cell means the rank keeps that slice of the parameters, gradients or optimizer
    state (colours as :data:`CATEGORY_COLORS`); an empty outline means it does not.
    Data from :func:`~minillm.parallel.costs.zero_ownership`. Each filled
    collection carries ``gid = "stage s|category|rank r"`` so tests can read it.
    """
    stages = list(stages)
    cats = list(SHARDED_FROM_STAGE)  # parameters, gradients, optimizer
    p = world_size
    fig = Figure(figsize=(3.1 * len(stages), 0.9 + 0.55 * p * len(cats) / 1.6))
    axes = fig.subplots(1, len(stages), sharey=True, squeeze=False)[0]
    row = lambda r, k: r * (len(cats) + 1) + k  # noqa: E731 - a blank row between ranks
    for ax, stage in zip(axes, stages):
        held = zero_ownership(stage, p)
        for r in range(p):
            for k, c in enumerate(cats):
                y = row(r, k)
                ax.broken_barh([(j, 0.92) for j in range(p)], (y, 0.8), facecolors="none", edgecolors="0.8", linewidth=0.5)
                mine = [(j, 0.92) for j in range(p) if held[c][r][j]]
                bars = ax.broken_barh(mine, (y, 0.8), facecolors=CATEGORY_COLORS[c])
                bars.set_gid(f"stage {stage}|{c}|rank {r}")
        kept = {c: sum(held[c][0]) for c in cats}
        ax.set_title(f"stage {stage}: {_STAGE_TITLES.get(stage, '')}", fontsize=9)
        ax.set_xlim(0, p)
        ax.set_xticks([j + 0.46 for j in range(p)], [str(j) for j in range(p)], fontsize=8)
        ax.set_xlabel(f"slice of the model (1/{p} each)", fontsize=8)
        ax.text(0.5, -0.2, "rank 0 keeps " + ", ".join(f"{kept[c]}/{p} {c[:5]}." for c in cats),
                transform=ax.transAxes, ha="center", fontsize=7.5)
    centre = [row(r, 0) + len(cats) / 2 for r in range(p)]
    axes[0].set_yticks(centre, [f"rank {r}" for r in range(p)])
    axes[0].invert_yaxis()
    handles = [Patch(color=CATEGORY_COLORS[c], label=c) for c in cats]
    fig.legend(handles=handles, loc="upper center", ncol=len(cats), frameon=False, fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig
