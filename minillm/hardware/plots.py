"""Figures for the hardware lessons. Each function takes data and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing is
left open in a global figure list and no GUI backend is needed; in Jupyter a returned
Figure displays itself, and ``fig.savefig(path)`` writes a PNG anywhere.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from minillm.units import GB, format_seconds

from .devices import DTYPE_BYTES, DeviceSpec, as_device
from .roofline import Op, attainable_flops, ridge_point, roofline_curve

__all__ = [
    "plot_roofline",
    "plot_workload",
    "plot_systolic_frame",
    "plot_systolic_frames",
    "plot_costs",
    "plot_decode_sweep",
    "plot_max_batch",
    "plot_memory",
    "plot_serving",
]


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


def _spaced(points: list[dict], xlim: tuple[float, float], ylim: tuple[float, float], min_gap: float = 0.045) -> list[dict]:
    """The points of a batch sweep that get a label: each at least ``min_gap`` of the axes (log-log) from every labelled one.

    Where the KV cache takes over, a sweep's points pile up at one intensity; labelling them all
    would print the batch sizes on top of each other. The first point and the last are preferred.
    """
    span_x, span_y = np.log10(xlim[1] / xlim[0]), np.log10(ylim[1] / ylim[0])

    def pos(p):
        return np.log10(p["intensity"] / xlim[0]) / span_x, np.log10(p["attainable_flops"] / ylim[0]) / span_y

    chosen: list[dict] = []
    for p in [points[-1], *points[:-1]] if points else []:
        x, y = pos(p)
        if all(max(abs(x - cx), abs(y - cy)) >= min_gap for cx, cy in map(pos, chosen)):
            chosen.append(p)
    return sorted(chosen, key=lambda p: p["batch"])


def plot_workload(point: dict, sweep: list[dict] | None = None, figsize: tuple[float, float] = (7.0, 4.5)) -> Figure:
    """A :func:`~minillm.hardware.serving.workload_point` on its device's roofline.

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
        ylo, yhi = ax.get_ylim()
        for p in _spaced(sweep, (lo, hi), (ylo, yhi)):
            ax.annotate(str(p["batch"]), (p["intensity"], p["attainable_flops"]), textcoords="offset points",
                        xytext=(0, -10), fontsize=6, color="0.4", ha="center", gid="batch-label")
    label = (f"{point['phase']}, batch {point['batch']}, context {point['context']}: "
             f"{format_seconds(point['step_s'])} per step, {point['bound']}-bound")
    ax.plot([point["intensity"]], [point["attainable_flops"]], "o", color="C3", ms=9, label=label)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_systolic_frame(frame, roles: dict | None = None, figsize: tuple[float, float] = (9.0, 3.2)) -> Figure:
    """One cycle of a :class:`~minillm.hardware.systolic.Frame`: three grids side by side.

    Left: what each PE holds still; middle: the operand moving right; right: the value
    moving down. PEs that did a useful MAC this cycle are outlined. Numbers are printed
    in the cells of arrays up to 8 x 8; each non-empty grid has its colour bar, and an
    empty one says so.
    """
    roles = roles or {"stationary": "stationary", "horizontal": "moving right", "vertical": "moving down"}
    fig = Figure(figsize=figsize)
    grids = [("stationary", frame.stationary), ("horizontal", frame.horizontal), ("vertical", frame.vertical)]
    R, C = frame.stationary.shape
    for k, (key, grid) in enumerate(grids):
        ax = fig.add_subplot(1, 3, k + 1)
        shown = np.ma.masked_invalid(grid)
        im = ax.imshow(shown, cmap="viridis")
        if shown.count():
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        else:
            ax.text(0.5, 0.5, "empty this cycle", transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4")
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


def _frame_grid(frame, which: str) -> tuple[np.ndarray, str]:
    """The grid a strip shows for one frame: ``which``, or while it is still empty during the load, the stationary tile being shifted in."""
    grid = getattr(frame, which)
    if frame.phase == "load" and not np.isfinite(grid).any():
        return frame.stationary, "stationary"
    return grid, which


def plot_systolic_frames(frames, which: str = "vertical", max_frames: int = 16, cols: int = 6, roles: dict | None = None) -> Figure:
    """A strip of frames of one grid (``which``), each titled with its cycle, with a colour bar.

    At most ``max_frames`` evenly spaced frames are drawn; when that skips cycles, the title
    says how many and which. During the load phase the moving grid is still empty, so those
    frames show the stationary tile being shifted in (with its own colour bar) instead of a
    blank square. ``roles`` (from :class:`~minillm.hardware.systolic.SystolicStats`) names the grids.
    """
    if not frames:
        raise ValueError("no frames to plot; run SystolicArray.matmul(..., record_frames=True)")
    if which not in ("stationary", "horizontal", "vertical"):
        raise ValueError(f"which={which!r} must be 'stationary', 'horizontal' or 'vertical'")
    roles = roles or {"stationary": "stationary values", "horizontal": "moving right", "vertical": "moving down"}
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    rows = int(np.ceil(len(idx) / cols))
    fig = Figure(figsize=(1.6 * cols + 1.4, 1.7 * rows + 0.6))
    shown = [_frame_grid(frames[i], which) for i in idx]
    limits = {}
    for grid, kind in shown:
        if np.isfinite(grid).any():
            lo, hi = limits.get(kind, (np.inf, -np.inf))
            limits[kind] = (min(lo, np.nanmin(grid)), max(hi, np.nanmax(grid)))
    images, axes = {}, []
    for k, (i, (grid, kind)) in enumerate(zip(idx, shown)):
        ax = fig.add_subplot(rows, cols, k + 1)
        axes.append(ax)
        fr = frames[i]
        vmin, vmax = limits.get(kind, (0.0, 1.0))
        cmap = "viridis" if kind == which else "cividis"
        images[kind] = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax)
        r, c = np.nonzero(fr.active)
        ax.scatter(c, r, s=40, facecolors="none", edgecolors="r", linewidths=0.8, marker="s")
        ax.set_title(f"c{fr.cycle} {fr.phase}" + (" (loading)" if kind != which else ""), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for k, (kind, im) in enumerate(images.items()):
        fig.colorbar(im, ax=axes, fraction=0.025, pad=0.02 + 0.07 * k, label=roles.get(kind, kind))
    skipped = [frames[i].cycle for i in range(len(frames)) if i not in set(idx)]
    if skipped:
        listed = ", ".join(map(str, skipped[:8])) + (", ..." if len(skipped) > 8 else "")
        note = f"{len(idx)} of {len(frames)} cycles shown, evenly spaced; skipped: {listed}"
    else:
        note = f"all {len(frames)} cycles"
    fig.suptitle(f"{roles.get(which, which)}: {note} (red: a useful MAC this cycle)", fontsize=8)
    return fig


def plot_costs(rows: list[dict], key: str = "usd_per_million", title: str | None = None) -> Figure:
    """Horizontal bars of one column of :func:`~minillm.hardware.economics.catalog_costs` rows (log scale).

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


# --------------------------------------------------------------------------- lesson 09: serving and memory


def _legend_right(ax, **kw) -> None:
    """A legend outside the axes, to the right, so that it never covers the data (issue 11)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


def _legend_below(ax, ncol: int = 3) -> None:
    """A legend outside the axes, under the x label, for panels with a neighbour on the right."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), borderaxespad=0.0, ncol=ncol)


def plot_decode_sweep(sweeps: dict[str, list[dict]], knees: dict[str, int | None], title: str = "") -> Figure:
    """Decode step time (left) and throughput (right) against the batch, one curve per label.

    ``sweeps``: label -> the rows of :func:`~minillm.hardware.serving.decode_batch_sweep`;
    ``knees``: label -> :func:`~minillm.hardware.inference.decode_knee_batch` (None: no knee).
    The part of each curve where the job fits in memory (``fits``) is drawn thick, the
    knee as a dotted vertical line.
    """
    if not sweeps:
        raise ValueError("plot_decode_sweep needs at least one sweep")
    fig = Figure(figsize=(11, 3.8))
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for i, (label, rows) in enumerate(sweeps.items()):
        color = f"C{i % 10}"
        b = [r["batch"] for r in rows]
        for ax, key, scale in [(axes[0], "step_s", 1e3), (axes[1], "tokens_per_s", 1.0)]:
            y = [r[key] * scale for r in rows]
            ax.plot(b, y, color=color, lw=1, label=label)
            fit = [(bb, yy) for bb, yy, r in zip(b, y, rows) if r["fits"]]
            if fit:
                ax.plot(*zip(*fit), color=color, lw=3)
            if knees.get(label) is not None:
                ax.axvline(knees[label], color=color, ls=":", lw=1)
    axes[0].set_ylabel("decode step (ms, roofline bound)")
    axes[1].set_ylabel("tokens / s")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences decoded together)")
    _legend_right(axes[1], title="thick: fits\ndotted: knee")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_max_batch(contexts: list[int], max_batches: dict[str, list[int]], knees: list[int | None], title: str = "") -> Figure:
    """The largest batch that fits against the knee batch, over context lengths (log-log, base 2).

    ``max_batches``: label (e.g. a device count) -> :attr:`MemoryPlan.max_batch` at each
    context (0, nothing fits, is drawn at 0.5); ``knees``: the knee batch at each context
    (None where decode never turns compute-bound: no point drawn).
    """
    if not contexts:
        raise ValueError("plot_max_batch needs at least one context")
    fig = Figure(figsize=(7, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for label, mb in max_batches.items():
        ax.plot(contexts, [max(m, 0.5) for m in mb], "o-", label=f"largest batch, {label}")
    kc = [(c, k) for c, k in zip(contexts, knees) if k is not None]
    if kc:
        ax.plot(*zip(*kc), "k--", label="knee (compute-bound above)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("context (tokens per sequence)")
    ax.set_ylabel("batch")
    ax.set_title(title)
    _legend_right(ax)
    fig.tight_layout()
    return fig


def plot_memory(plans: dict, title: str = "") -> Figure:
    """Stacked horizontal bars of each :class:`~minillm.hardware.memory.MemoryPlan` against its capacity.

    ``plans``: label -> MemoryPlan. Bars split weights, optimizer states, KV cache and
    activations; a black tick marks the capacity (GB = 1e9 bytes).
    """
    if not plans:
        raise ValueError("plot_memory needs at least one plan")
    parts = ["weights", "optimizer", "kv_cache", "activations"]
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    labels = list(plans)
    left = [0.0] * len(labels)
    for i, part in enumerate(parts):
        vals = [plans[k].as_gb()[part] for k in labels]
        ax.barh(labels, vals, left=left, color=f"C{i}", label=part.replace("_", " "))
        left = [a + b for a, b in zip(left, vals)]
    ax.scatter([plans[k].capacity / GB for k in labels], labels, marker="|", s=400, color="k", label="capacity", zorder=3)
    ax.set_xlabel("GB (1e9 bytes)")
    ax.set_title(title)
    ax.invert_yaxis()
    _legend_right(ax)
    fig.tight_layout()
    return fig


def plot_serving(view: dict) -> Figure:
    """Lesson 09's serving widget: a :func:`~minillm.hardware.serving.serving_view` in two panels.

    Left: generated tokens/s against the batch (the roofline bound over ``view["sweep"]``),
    the chosen batch as a star, the knee as a dotted line and the batches that do not fit
    shaded. Right: the memory the job needs (weights, KV cache, activations) against the
    capacity of its devices (GB = 1e9 bytes).
    """
    s, mem = view["summary"], view["memory_gb"]
    fig = Figure(figsize=(11, 3.6))
    grid = fig.add_gridspec(1, 2, width_ratios=[2, 1])
    ax0, ax1 = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    b = [r["batch"] for r in view["sweep"]]
    ax0.plot(b, [r["tokens_per_s"] for r in view["sweep"]], "o-", ms=3, label="roofline bound")
    ax0.plot([s["batch"]], [s["tokens_per_s"]], "r*", ms=14, label="this batch")
    if view["knee"] is not None:
        ax0.axvline(view["knee"], color="k", ls=":", label=f"knee: batch {view['knee']}")
    if s["max_batch"] < b[-1]:  # shade the batches that do not fit, if any on this axis
        ax0.axvspan(max(s["max_batch"], 0.5) + 0.5, b[-1] * 1.5, color="0.85", label="does not fit")
    ax0.set_xscale("log", base=2)
    ax0.set_yscale("log")
    ax0.set_xlim(b[0] / 1.5, b[-1] * 1.5)
    ax0.set_xlabel("batch")
    ax0.set_ylabel("generated tokens / s")
    _legend_below(ax0, ncol=4)
    left = 0.0
    for i, part in enumerate(["weights", "kv_cache", "activations"]):
        ax1.barh([0], [mem[part]], left=left, color=f"C{i}", label=part.replace("_", " "))
        left += mem[part]
    ax1.axvline(mem["capacity"], color="k", label="capacity")
    ax1.set_yticks([])
    ax1.set_xlabel("GB (1e9 bytes)")
    _legend_below(ax1, ncol=2)
    fig.suptitle(f"{s['model']} on {s['n_devices']} x {s['device']} ({s['dtype']}), context {s['context']}")
    fig.tight_layout()
    return fig
