"""The data behind lessons 10 and 11's widgets, and their plots.

Each widget (:func:`collective_widget`, :func:`zero_widget`) is ``ipywidgets.interactive``
over a *pure* function that returns plain data (:func:`collective_view`, :func:`zero_view`),
with plotting split out (:func:`plot_collective_view`, :func:`plot_zero_view`, Figures built
without pyplot), so tests can sweep the controls without a browser. Both widgets share
one control layout (:data:`CONTROL_STYLE`), wide enough that no description is cut off. The controls' options live here too, so the lessons
and ``tests/parallel/test_par_widgets.py`` use the very same ranges.

Units: seconds, bytes, bytes/s; GB = 1e9 bytes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure

from minillm.units import GB, format_bytes, format_seconds
from minillm.validate import check_number

from .cluster import CPU_ETHERNET, ClusterSpec
# ring_steps and one_root_all_reduce_time moved to .costs; importable from here as before.
from .costs import (
    RING_OPS,
    STAGES,
    bus_bandwidth,
    busbw_sweep,
    bytes_sent_per_rank,
    collective_time,
    one_root_all_reduce_time,
    ring_steps,
    zero_memory_bytes,
    zero_step_estimate,
)
from .viz import plot_busbw, plot_memory

__all__ = [
    "CLUSTERS",
    "cluster",
    "WIDGET_OPS",
    "WORLD_SIZES",
    "MESSAGE_SIZES",
    "MODEL_SIZES",
    "DP_WORLD_SIZES",
    "ring_steps",
    "one_root_all_reduce_time",
    "collective_view",
    "zero_view",
    "plot_collective_view",
    "plot_zero_view",
    "collective_widget",
    "zero_widget",
    "collective_summary",
    "zero_summary",
    "CONTROL_STYLE",
]

#: Device names of :meth:`ClusterSpec.from_device` offered by the widgets, plus the
#: illustrative CPU cluster on 10 Gb/s Ethernet (:data:`~minillm.parallel.sim.CPU_ETHERNET`).
CLUSTERS = ("h100", "a100", "b200", "tpu-v5p", "cpu-ethernet")
WIDGET_OPS = RING_OPS
WORLD_SIZES = tuple(2**k for k in range(1, 11))  # 2 .. 1024 ranks
#: Message sizes in bytes, decimal as the lesson counts (GB = 1e9): 1, 4, 16, 64, 250 kB, then
#: 1, 4, 16, 64, 250 MB, 1 GB and 4 GB, so "1 GB" on the slider is 1e9 bytes.
MESSAGE_SIZES = tuple(int(m * s) for s in (1e3, 1e6) for m in (1, 4, 16, 64, 250)) + (int(1e9), int(4e9))
#: Parameter counts for lesson 11's widget: 125M (GPT-3 Small), 1.3B, 7.5B (ZeRO's Figure 1),
#: 13B, 70B (Llama 2), 175B (GPT-3), 1T (ZeRO's trillion-parameter goal).
MODEL_SIZES = (125e6, 1.3e9, 7.5e9, 13e9, 70e9, 175e9, 1e12)
DP_WORLD_SIZES = tuple(2**k for k in range(0, 11))  # 1 .. 1024 data-parallel ranks


def cluster(name: str | ClusterSpec) -> ClusterSpec:
    """A :class:`ClusterSpec` from one of :data:`CLUSTERS` (or a spec, returned as is)."""
    if isinstance(name, ClusterSpec):
        return name
    if name == "cpu-ethernet":
        return CPU_ETHERNET
    if name not in CLUSTERS:
        raise ValueError(f"cluster={name!r} is not offered; use one of {CLUSTERS} or pass a ClusterSpec")
    return ClusterSpec.from_device(name)


def collective_view(op: str, world_size: int, nbytes: float, cluster_name: str | ClusterSpec = "h100") -> dict:
    """Everything lesson 10's widget shows for one collective: its α-β time, split, and busbw.

    Returns a dict: ``op``, ``world_size``, ``nbytes``, ``cluster`` (name), ``link_bw``,
    ``latency``; ``seconds`` (the ring or tree time), ``latency_s`` and ``bandwidth_s``
    (its α and β parts), ``steps`` (messages in sequence), ``bytes_sent`` (per rank),
    ``algbw`` and ``busbw`` (bytes/s, NCCL-tests convention), ``one_root_s`` (all-reduce
    through one root, for comparison; None for other ops), and ``sweep``: the
    :func:`busbw_sweep` rows over :data:`MESSAGE_SIZES`.
    """
    spec = cluster(cluster_name)
    steps = ring_steps(op, world_size)
    check_number("nbytes", nbytes, strict=True)
    seconds = collective_time(op, nbytes, world_size, spec.link_bw, spec.latency)
    latency_s = steps * spec.latency
    return {
        "op": op,
        "world_size": world_size,
        "nbytes": float(nbytes),
        "cluster": spec.name,
        "link_bw": spec.link_bw,
        "latency": spec.latency,
        "seconds": seconds,
        "latency_s": latency_s,
        "bandwidth_s": seconds - latency_s,
        "steps": steps,
        "bytes_sent": bytes_sent_per_rank(op, nbytes, world_size),
        "algbw": nbytes / seconds if seconds > 0 else float("nan"),
        "busbw": bus_bandwidth(op, nbytes, world_size, seconds) if seconds > 0 else float("nan"),
        "one_root_s": one_root_all_reduce_time(nbytes, world_size, spec.link_bw, spec.latency) if op == "all_reduce" else None,
        "sweep": busbw_sweep(op, MESSAGE_SIZES, world_size, spec.link_bw, spec.latency) if world_size > 1 else [],
    }


def zero_view(
    n_params: float,
    world_size: int,
    stage: int,
    cluster_name: str | ClusterSpec = "a100",
    tokens_per_step: float = 4e6,
    world_sizes: Sequence[int] = DP_WORLD_SIZES,
) -> dict:
    """Everything lesson 11's widget shows: memory per device and step time of a DP/ZeRO job.

    Returns a dict: ``estimate`` (:func:`zero_step_estimate` at this world size and
    stage), ``by_stage`` ({"stage s": model-state bytes by category} for every stage
    at this world size), ``capacity`` (device bytes), ``cluster`` (name) and ``sweep``
    (one row per world size in ``world_sizes``: ``world_size``, ``memory_gb``,
    ``compute_s``, ``comm_s``, ``step_s``, ``fits``) for this stage. Model states only
    (2-byte parameters and gradients, K = 12): activations come on top.
    """
    spec = cluster(cluster_name)
    est = zero_step_estimate(n_params, world_size, stage, tokens_per_step, spec)
    sweep = []
    for w in world_sizes:
        e = zero_step_estimate(n_params, w, stage, tokens_per_step, spec)
        sweep.append({"world_size": w, "memory_gb": e["memory_gb"], "compute_s": e["compute_s"],
                      "comm_s": e["comm_s"], "step_s": e["step_s"], "fits": e["fits"]})
    return {
        "n_params": float(n_params),
        "world_size": world_size,
        "stage": stage,
        "tokens_per_step": float(tokens_per_step),
        "cluster": spec.name,
        "capacity": spec.mem_bytes,
        "estimate": est,
        "by_stage": {f"stage {s}": zero_memory_bytes(n_params, world_size, s).as_dict() for s in STAGES},
        "sweep": sweep,
    }


# --------------------------------------------------------------------------- plots


def plot_collective_view(view: Mapping) -> Figure:
    """Left: the collective's time split into latency (α) and bandwidth (β) parts; right: busbw sweep."""
    fig = Figure(figsize=(11, 3.8))
    ax0, ax1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    bars = {"ring" if view["op"] != "broadcast" else "tree": (view["latency_s"], view["bandwidth_s"])}
    if view["one_root_s"] is not None:
        lat = 2 * (view["world_size"] - 1) * view["latency"]
        bars["one root"] = (lat, view["one_root_s"] - lat)
    labels = list(bars)
    top = max(sum(v) for v in bars.values()) or 1.0
    unit_scale, unit = next(((s, u) for s, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")) if top >= s), (1e-9, "ns"))
    ax0.bar(labels, [bars[k][0] / unit_scale for k in labels], color="#c44e52", label="latency: steps × α")
    ax0.bar(labels, [bars[k][1] / unit_scale for k in labels], bottom=[bars[k][0] / unit_scale for k in labels],
            color="#4c72b0", label="bandwidth: bytes sent / B")
    ax0.set_ylabel(f"time ({unit})")
    ax0.set_ylim(0, top / unit_scale * 1.35)  # headroom: the legend sits above the bars, not on them
    ax0.legend(fontsize=8, frameon=False, loc="upper left")
    ax0.set_title(f"{view['op']} of {format_bytes(view['nbytes'])} on {view['world_size']} ranks", fontsize=10)
    if view["sweep"]:
        plot_busbw({f"p = {view['world_size']}": view["sweep"]}, link_bw=view["link_bw"], ax=ax1,
                   title=f"busbw of {view['op']} on {view['cluster']}")
        ax1.plot([view["nbytes"]], [view["busbw"] / GB], "r*", markersize=14, label="this message")
        ax1.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_zero_view(view: Mapping) -> Figure:
    """Left: model-state memory per device for every ZeRO stage; right: step time against world size."""
    fig = Figure(figsize=(11, 4.2))
    ax0, ax1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    plot_memory(view["by_stage"], capacity=view["capacity"], ax=ax0,
                title=f"{view['n_params'] / 1e9:.3g}B parameters on {view['world_size']} ranks")
    ax0.title.set_fontsize(10)
    rows = view["sweep"]
    w = [r["world_size"] for r in rows]
    ax1.plot(w, [r["step_s"] for r in rows], "k-", lw=2, label="step = compute + communication")
    ax1.plot(w, [r["compute_s"] for r in rows], "--", color="#4c72b0", label="compute: 6Ψ·tokens / N_d at the MFU")
    ax1.plot(w, [r["comm_s"] for r in rows], "--", color="#dd8452", label="communication (not overlapped)")
    bad = [r["world_size"] for r in rows if not r["fits"]]
    if bad:
        ax1.axvspan(min(bad) / 1.4, max(bad) * 1.4, color="0.85", zorder=0, label="model states do not fit")
    ax1.plot([view["world_size"]], [view["estimate"]["step_s"]], "r*", markersize=14, label="this job")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlim(w[0] / 1.4, w[-1] * 1.4)
    ax1.set_xlabel("data-parallel ranks N_d")
    ax1.set_ylabel("step time (s)")
    ax1.set_title(f"ZeRO stage {view['stage']} on {view['cluster']}, {view['tokens_per_step']:.3g} tokens per step", fontsize=10)
    # Outside the axes, on the right: the curves fill the plot's corners at one setting or another.
    ax1.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def collective_summary(view: Mapping) -> str:
    """One line of numbers under lesson 10's widget."""
    one_root = "" if view["one_root_s"] is None else f"; through one root {format_seconds(view['one_root_s'])}"
    return (f"{view['op']} of {format_bytes(view['nbytes'])} on {view['world_size']} x {view['cluster']}: "
            f"{format_seconds(view['seconds'])} ({view['steps']} steps: latency {format_seconds(view['latency_s'])} + "
            f"bandwidth {format_seconds(view['bandwidth_s'])}), busbw {view['busbw'] / GB:.3g} GB/s of a "
            f"{view['link_bw'] / GB:.3g} GB/s link{one_root}")


def zero_summary(view: Mapping) -> str:
    """One line of numbers under lesson 11's widget."""
    e = view["estimate"]
    fits = "fits" if e["fits"] else "does NOT fit"
    return (f"{view['n_params'] / 1e9:g}B parameters, ZeRO stage {view['stage']}, {view['world_size']} x {view['cluster']}: "
            f"model states {format_bytes(e['memory_total'])} per device ({fits} in {format_bytes(view['capacity'])}); "
            f"step {format_seconds(e['step_s'])} = compute {format_seconds(e['compute_s'])} + "
            f"communication {format_seconds(e['comm_s'])}")


# --------------------------------------------------------------------------- the widgets

#: One layout for every control of these widgets: the description gets the room it needs
#: (ipywidgets' default cuts a long description such as "cluster_name" off at about 10 characters).
CONTROL_STYLE = {"description_width": "initial"}
CONTROL_LAYOUT = {"width": "480px"}


def interactive_view(view_fn, plot_fn, summary_fn, draw: bool, **controls):
    """``interactive`` over ``view_fn`` with the shared control layout.

    With ``draw`` (the lessons) the figure and the summary line are shown and the
    function returns None; without it (tests) it returns the view, as ``widget.result``.
    """
    from IPython.display import display
    from ipywidgets import interactive

    def update(**kwargs):
        view = view_fn(**kwargs)
        if not draw:
            return view
        display(plot_fn(view))
        print(summary_fn(view))
        return None

    for c in controls.values():
        c.style = CONTROL_STYLE
        c.layout.width = CONTROL_LAYOUT["width"]
    return interactive(update, **controls)


def collective_widget(op: str = "all_reduce", world_size: int = 8, nbytes: int = 64_000_000, cluster_name: str = "h100",
                      draw: bool = True):
    """Lesson 10's widget: ``interactive`` over :func:`collective_view`, drawn by :func:`plot_collective_view`."""
    from ipywidgets import Dropdown, SelectionSlider

    return interactive_view(
        collective_view, plot_collective_view, collective_summary, draw,
        op=Dropdown(options=WIDGET_OPS, value=op, description="collective"),
        world_size=SelectionSlider(options=WORLD_SIZES, value=world_size, description="ranks p"),
        nbytes=SelectionSlider(options=[(format_bytes(n), n) for n in MESSAGE_SIZES], value=nbytes, description="message size"),
        cluster_name=Dropdown(options=CLUSTERS, value=cluster_name, description="cluster"),
    )


def zero_widget(n_params: float = 7.5e9, world_size: int = 64, stage: int = 1, cluster_name: str = "a100",
                draw: bool = True):
    """Lesson 11's widget: ``interactive`` over :func:`zero_view`, drawn by :func:`plot_zero_view`."""
    from ipywidgets import Dropdown, SelectionSlider

    return interactive_view(
        zero_view, plot_zero_view, zero_summary, draw,
        n_params=SelectionSlider(options=[(f"{p / 1e9:g}B", p) for p in MODEL_SIZES], value=n_params, description="parameters Ψ"),
        world_size=SelectionSlider(options=DP_WORLD_SIZES, value=world_size, description="DP ranks N_d"),
        stage=SelectionSlider(options=list(STAGES), value=stage, description="ZeRO stage"),
        cluster_name=Dropdown(options=CLUSTERS, value=cluster_name, description="cluster"),
    )
