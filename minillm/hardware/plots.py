"""Figures for the hardware lessons. Each function takes data and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing is
left open in a global figure list and no GUI backend is needed; in Jupyter a returned
Figure displays itself, and ``fig.savefig(path)`` writes a PNG anywhere.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .devices import DTYPE_BYTES, DeviceSpec, as_device
from .roofline import Op, attainable_flops, ridge_point, roofline_curve

__all__ = ["plot_roofline", "plot_workload", "plot_systolic_frame", "plot_systolic_frames", "plot_costs", "format_seconds"]


def format_seconds(s: float) -> str:
    """A duration with a readable unit: "3.2 ms", "41 µs", "2.5 s", "3.1 h"."""
    units = (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("µs", 1e-6))
    unit, scale = next(((u, k) for u, k in units if s >= k), ("ns", 1e-9))
    return f"{s / scale:.3g} {unit}"


def _device_and_dtype(entry, dtype):
    if isinstance(entry, tuple):
        device, dt = entry
        return as_device(device), dt
    device = as_device(entry)
    if dtype is not None and dtype in device.peak_flops:
        return device, dtype
    return device, device.default_dtype()


def _entries(devices, dtype) -> list[tuple[DeviceSpec, str]]:
    """Normalise the ``devices`` argument to a list of (DeviceSpec, dtype)."""
    single_pair = isinstance(devices, tuple) and len(devices) == 2 and devices[1] in DTYPE_BYTES
    if isinstance(devices, (DeviceSpec, str)) or single_pair:
        devices = [devices]
    return [_device_and_dtype(d, dtype) for d in devices]


def plot_roofline(
    devices,
    ops: list[Op] | None = None,
    dtype: str | None = None,
    title: str | None = None,
    intensity_range: tuple[float, float] | None = None,
    figsize: tuple[float, float] = (7.0, 4.5),
) -> Figure:
    """Rooflines of one or more devices on log-log axes, with operations placed on the first.

    ``devices``: a list of DeviceSpecs, catalog names, or ``(device, dtype)`` pairs (a
    bare device uses ``dtype`` if it has it, else its usual dtype). ``ops``: Ops drawn at
    their intensity on the *first* device's roof, plus a hollow marker at their measured
    rate when ``measured_flops_per_s`` is set.
    """
    entries = _entries(devices, dtype)
    if not entries:
        raise ValueError("plot_roofline needs at least one device")
    ops = list(ops or [])
    if intensity_range is None:
        xs = [ridge_point(d, dt) for d, dt in entries] + [op.intensity for op in ops if op.intensity > 0]
        lo, hi = min(xs) / 30, max(xs) * 30
    else:
        lo, hi = intensity_range
    x = np.logspace(np.log10(lo), np.log10(hi), 300)
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(10)]
    for i, (device, dt) in enumerate(entries):
        _, y = roofline_curve(device, dt, x)
        ridge = ridge_point(device, dt)
        ax.loglog(x, y, color=colors[i % 10], lw=2, label=f"{device.name} {dt} (ridge {ridge:.0f} FLOP/B)")
        ax.axvline(ridge, color=colors[i % 10], lw=0.8, ls=":")
    if ops:
        # Number the operations in order of intensity and list the names in a box:
        # labels written beside the points would collide where intensities are close.
        first, dt0 = entries[0]
        order = sorted(range(len(ops)), key=lambda j: ops[j].intensity)
        legend = []
        for rank, j in enumerate(order, start=1):
            op = ops[j]
            xi = max(op.intensity, lo)
            yi = attainable_flops(first, xi, dt0)
            ax.plot([xi], [yi], "o", color="k", ms=4)
            dy = 6 if rank % 2 else -12
            ax.annotate(str(rank), (xi, yi), textcoords="offset points", xytext=(2, dy), fontsize=7)
            if op.measured_flops_per_s:
                ax.plot([xi], [op.measured_flops_per_s], "o", mfc="none", color="k", ms=6)
            legend.append(f"{rank} {op.name} ({op.intensity:.3g})")
        ax.text(
            0.01, 0.99, "ops (FLOP/byte):\n" + "\n".join(legend), transform=ax.transAxes, va="top", ha="left",
            fontsize=6.5, bbox=dict(boxstyle="round", fc="w", alpha=0.8, lw=0.3),
        )
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attainable FLOP/s")
    ax.set_title(title or "Roofline")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_workload(point: dict, sweep: list[dict] | None = None, figsize: tuple[float, float] = (7.0, 4.5)) -> Figure:
    """A :func:`~minillm.hardware.roofline.workload_point` on its device's roofline.

    ``sweep`` (points of the same device, e.g. over batch sizes) is drawn as a grey trail
    labelled by batch, so you can watch a step slide along the roof as the batch grows.
    """
    sweep = list(sweep or [])
    xs = [point["intensity"], point["ridge"]] + [p["intensity"] for p in sweep]
    lo, hi = min(xs) / 10, max(xs) * 10
    title = f"{point['model'] or 'model'} on {point['device']} ({point['dtype']}, {point['n_devices']} device(s))"
    fig = plot_roofline([(point["spec"], point["dtype"])], intensity_range=(lo, hi), title=title, figsize=figsize)
    ax = fig.axes[0]
    if sweep:
        ax.plot([p["intensity"] for p in sweep], [p["attainable_flops"] for p in sweep], "o-", color="0.6", ms=3, lw=0.8,
                label="other batch sizes")
        for p in sweep:
            ax.annotate(str(p["batch"]), (p["intensity"], p["attainable_flops"]), textcoords="offset points",
                        xytext=(0, -10), fontsize=6, color="0.4", ha="center")
    label = (f"{point['phase']}, batch {point['batch']}, context {point['context']}: "
             f"{format_seconds(point['step_s'])} per step, {point['bound']}-bound")
    ax.plot([point["intensity"]], [point["attainable_flops"]], "o", color="C3", ms=9, label=label)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_systolic_frame(frame, roles: dict | None = None, figsize: tuple[float, float] = (9.0, 3.2)) -> Figure:
    """One cycle of a :class:`~minillm.hardware.systolic.Frame`: three grids side by side.

    Left: what each PE holds still; middle: the operand moving right; right: the value
    moving down. PEs that did a useful MAC this cycle are outlined. Numbers are printed
    in the cells of arrays up to 8 x 8.
    """
    roles = roles or {"stationary": "stationary", "horizontal": "moving right", "vertical": "moving down"}
    fig = Figure(figsize=figsize)
    grids = [("stationary", frame.stationary), ("horizontal", frame.horizontal), ("vertical", frame.vertical)]
    R, C = frame.stationary.shape
    for k, (key, grid) in enumerate(grids):
        ax = fig.add_subplot(1, 3, k + 1)
        shown = np.ma.masked_invalid(grid)
        ax.imshow(shown, cmap="viridis")
        rows, cols = np.nonzero(frame.active)
        ax.scatter(cols, rows, s=300, facecolors="none", edgecolors="r", linewidths=1.2, marker="s")
        if R <= 8 and C <= 8:
            for i in range(R):
                for j in range(C):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:g}", ha="center", va="center", fontsize=6, color="w")
        ax.set_title(roles.get(key, key), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"cycle {frame.cycle} | fold {frame.fold} | {frame.phase}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_systolic_frames(frames, which: str = "vertical", max_frames: int = 12, cols: int = 6) -> Figure:
    """A strip of up to ``max_frames`` evenly spaced frames of one grid (``which``), for a printed page."""
    if not frames:
        raise ValueError("no frames to plot; run SystolicArray.matmul(..., record_frames=True)")
    if which not in ("stationary", "horizontal", "vertical"):
        raise ValueError(f"which={which!r} must be 'stationary', 'horizontal' or 'vertical'")
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    rows = int(np.ceil(len(idx) / cols))
    fig = Figure(figsize=(1.6 * cols, 1.7 * rows))
    finite = [f for f in (getattr(frames[i], which) for i in idx) if np.isfinite(f).any()]
    vmin = min((np.nanmin(f) for f in finite), default=0.0)
    vmax = max((np.nanmax(f) for f in finite), default=1.0)
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        fr = frames[i]
        ax.imshow(np.ma.masked_invalid(getattr(fr, which)), cmap="viridis", vmin=vmin, vmax=vmax)
        r, c = np.nonzero(fr.active)
        ax.scatter(c, r, s=40, facecolors="none", edgecolors="r", linewidths=0.8, marker="s")
        ax.set_title(f"c{fr.cycle} {fr.phase}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_costs(rows: list[dict], key: str = "usd_per_million", title: str | None = None) -> Figure:
    """Horizontal bars of one column of :func:`~minillm.hardware.costs.catalog_costs` rows (log scale).

    Rows whose value is None (no price or no TDP) are left out.
    """
    kept = [r for r in rows if r.get(key) is not None]
    if not kept:
        raise ValueError(f"no row has a value for {key!r}")
    fig = Figure(figsize=(6.5, 0.35 * len(kept) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['device']} x{r['n_devices']} ({r['dtype']})" for r in kept]
    ax.barh(names, [r[key] for r in kept], color=[f"C{i % 10}" for i in range(len(kept))])
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short log range
    ax.set_xlabel(key.replace("_", " "))
    ax.set_title(title or key.replace("_", " "))
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
