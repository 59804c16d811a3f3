"""Diagrams where prose struggles (lesson 08): how SIMD, SIMT and a systolic array keep their lanes busy, and an FPGA pipeline's initiation interval.

Data functions return plain arrays (:func:`lane_timeline`) or come from
:func:`minillm.hardware.fpga.pipeline_schedule`; the plotting functions draw them as
``matplotlib.figure.Figure`` (no pyplot), like :mod:`minillm.hardware.plots`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from minillm.validate import check_choice, check_int

__all__ = ["STYLES", "lane_timeline", "plot_feeding_styles", "plot_pipeline"]

#: The three ways lesson 08 contrasts of feeding multiply-accumulate lanes.
STYLES = ("SIMD", "SIMT", "systolic")


def lane_timeline(style: str, cycles: int = 12, lanes: int = 16, warps: int = 4, stream: int = 5) -> np.ndarray:
    """Which work each lane does at each cycle: an int array [lanes, cycles], -1 where a lane is idle.

    - ``"SIMD"``: one core issues one vector instruction per cycle and it drives all ``lanes``
      lanes at once; entry = the instruction's number (the cycle).
    - ``"SIMT"``: ``warps`` warps of ``lanes`` threads share one SM's lanes and take turns, one warp
      per cycle, so a warp waiting on memory costs nothing while the others run; entry = the warp.
    - ``"systolic"``: a square array of ``lanes`` cells (a perfect square) with no instruction per
      MAC: ``stream`` rows of inputs enter skewed, so cell (i, j) works from cycle i + j for
      ``stream`` cycles, a wavefront; lanes are the cells in row-major order, entry = the input row.
    """
    check_choice("style", style, STYLES)
    T, n = check_int("cycles", cycles), check_int("lanes", lanes)
    out = np.full((n, T), -1, dtype=int)
    t = np.arange(T)
    if style == "SIMD":
        out[:] = t
    elif style == "SIMT":
        w = check_int("warps", warps)
        out[:] = t % w
    else:
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"lanes={n} must be a perfect square for a systolic array (e.g. 16 for 4 x 4)")
        rows = check_int("stream", stream)
        for cell in range(n):
            i, j = divmod(cell, side)
            k = t - (i + j)
            ok = (k >= 0) & (k < rows)
            out[cell, ok] = k[ok]
    return out


def plot_feeding_styles(cycles: int = 12, lanes: int = 16, warps: int = 4, stream: int = 5) -> Figure:
    """Three panels, lanes down and cycles across, one per style of :func:`lane_timeline`.

    Colour says what a lane works on (an instruction, a warp or an input row); white is idle.
    SIMD: every lane always busy on the same instruction. SIMT: warps take turns on the lanes.
    Systolic: a diagonal wavefront, and idle cells while it fills and drains.
    """
    fig = Figure(figsize=(11.0, 3.6))
    titles = {
        "SIMD": f"SIMD: 1 instruction per cycle\ndrives all {lanes} lanes",
        "SIMT": f"SIMT: {warps} warps take turns; each waits\n{warps - 1} cycles (memory) between instructions",
        "systolic": f"systolic {int(round(lanes ** 0.5))}x{int(round(lanes ** 0.5))}: no instructions,\n"
        f"a wavefront of {stream} input rows",
    }
    for k, style in enumerate(STYLES):
        ax = fig.add_subplot(1, 3, k + 1)
        grid = lane_timeline(style, cycles, lanes, warps, stream)
        shown = np.ma.masked_less(grid, 0)
        n_colors = max(int(grid.max()) + 1, 1)
        cmap = ListedColormap([f"C{i % 10}" for i in range(n_colors)])
        cmap = cmap.with_extremes(bad="white")
        ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=n_colors - 0.5, aspect="auto", interpolation="nearest")
        ax.set_title(titles[style], fontsize=9)
        ax.set_xlabel("cycle")
        ax.set_ylabel("lane" if style != "systolic" else "cell (row-major)")
        busy = (grid >= 0).mean()
        ax.text(0.98, 0.02, f"busy {busy:.0%}", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox=dict(boxstyle="round", fc="w", alpha=0.8, lw=0.3))
    fig.suptitle("Three ways to feed the multipliers: lanes (down) against clock cycles (across)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_pipeline(schedules: dict[str, list[tuple[int, int]]], title: str = "") -> Figure:
    """One panel per schedule of :func:`~minillm.hardware.fpga.pipeline_schedule`: a bar per iteration, from entry to exit.

    The dashed line marks the loop's latency (the last exit): depth + (n - 1) x II cycles.
    """
    if not schedules:
        raise ValueError("plot_pipeline needs at least one schedule, e.g. {'II = 1': pipeline_schedule(8, 4, 1)}")
    end = max(e for s in schedules.values() for _, e in s)
    fig = Figure(figsize=(9.0, 1.2 + 0.9 * len(schedules) + 0.12 * max(len(s) for s in schedules.values())))
    axes = [fig.add_subplot(len(schedules), 1, k + 1) for k in range(len(schedules))]
    for ax, (label, sched) in zip(axes, schedules.items()):
        for k, (start, stop) in enumerate(sched):
            ax.broken_barh([(start, stop - start)], (k - 0.4, 0.8), facecolors=f"C{k % 10}", edgecolor="k", lw=0.4)
        last = max(e for _, e in sched)
        ax.axvline(last, color="k", ls="--", lw=1)
        ax.text(last, len(sched) - 0.5, f" {last} cycles", va="top", fontsize=8)
        ax.set_xlim(0, end * 1.12)
        ax.set_ylim(len(sched) - 0.5, -0.5)
        ax.set_ylabel("iteration")
        ax.set_title(label, fontsize=9, loc="left")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("cycle")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
