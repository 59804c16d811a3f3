"""The data behind lessons 10 and 11's widgets, and their plots.

Each widget is ``ipywidgets.interactive`` over a *pure* function that returns plain
data (:func:`collective_view`, :func:`zero_view`), with plotting split out
(:func:`plot_collective_view`, :func:`plot_zero_view`), so tests can sweep the
controls without a browser. The controls' options live here too, so the lessons
and ``tests/parallel/test_par_widgets.py`` use the very same ranges.

Units: seconds, bytes, bytes/s; GB = 1e9 bytes.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from .collectives import bus_bandwidth, busbw_sweep, bytes_sent_per_rank, collective_time
from .sim import CPU_ETHERNET, ClusterSpec
from .zero import STAGES, zero_memory_bytes, zero_step_estimate

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
]

GB = 1e9  # bytes

#: Device names of :meth:`ClusterSpec.from_device` offered by the widgets, plus the
#: illustrative CPU cluster on 10 Gb/s Ethernet (:data:`~minillm.parallel.sim.CPU_ETHERNET`).
CLUSTERS = ("h100", "a100", "b200", "tpu-v5p", "cpu-ethernet")
WIDGET_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
WORLD_SIZES = tuple(2**k for k in range(1, 11))  # 2 .. 1024 ranks
MESSAGE_SIZES = tuple(4**k for k in range(5, 17))  # 1 KiB .. 4 GiB, bytes
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


def ring_steps(op: str, world_size: int) -> int:
    """Messages each rank sends one after another: the number of α terms (latency) in the cost.

    Ring all-reduce 2(p-1), ring reduce-scatter and all-gather p-1, binomial-tree
    broadcast ⌈log2 p⌉ (Thakur, Rabenseifner & Gropp 2005).
    """
    if op not in WIDGET_OPS:
        raise ValueError(f"op={op!r} is not one of {WIDGET_OPS}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive int")
    p = world_size
    if op == "all_reduce":
        return 2 * (p - 1)
    if op == "broadcast":
        return math.ceil(math.log2(p)) if p > 1 else 0
    return p - 1


def one_root_all_reduce_time(nbytes: float, world_size: int, bandwidth: float, latency: float = 0.0) -> float:
    """All-reduce through one root: p-1 ranks send n bytes to it in turn, it sends the sum back in turn.

    2(p-1)·(α + n/B) seconds: every byte crosses the root's one link twice per rank,
    so the time grows with p, while the ring's stays near 2·n/B.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive int")
    return 2 * (world_size - 1) * collective_time("send", nbytes, 2, bandwidth, latency)


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
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)) or not nbytes > 0:
        raise ValueError(f"nbytes={nbytes!r} must be a positive number of bytes")
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


def _fmt_bytes(n: float) -> str:
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _fmt_seconds(s: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def plot_collective_view(view: Mapping):
    """Left: the collective's time split into latency (α) and bandwidth (β) parts; right: busbw sweep."""
    import matplotlib.pyplot as plt

    from .viz import plot_busbw

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    bars = {"ring" if view["op"] != "broadcast" else "tree": (view["latency_s"], view["bandwidth_s"])}
    if view["one_root_s"] is not None:
        lat = 2 * (view["world_size"] - 1) * view["latency"]
        bars["one root"] = (lat, view["one_root_s"] - lat)
    labels = list(bars)
    scale = max(sum(v) for v in bars.values()) or 1.0
    unit_scale, unit = next(((s, u) for s, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")) if scale >= s), (1e-9, "ns"))
    ax0.bar(labels, [bars[l][0] / unit_scale for l in labels], color="#c44e52", label="latency: steps × α")
    ax0.bar(labels, [bars[l][1] / unit_scale for l in labels], bottom=[bars[l][0] / unit_scale for l in labels],
            color="#4c72b0", label="bandwidth: bytes sent / B")
    ax0.set_ylabel(f"time ({unit})")
    ax0.legend(fontsize=8, frameon=False)
    ax0.set_title(f"{view['op']} of {_fmt_bytes(view['nbytes'])} on {view['world_size']} ranks", fontsize=10)
    if view["sweep"]:
        plot_busbw({f"p = {view['world_size']}": view["sweep"]}, link_bw=view["link_bw"], ax=ax1,
                   title=f"busbw of {view['op']} on {view['cluster']}")
        ax1.plot([view["nbytes"]], [view["busbw"] / GB], "r*", markersize=14, label="this message")
        ax1.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_zero_view(view: Mapping):
    """Left: model-state memory per device for every ZeRO stage; right: step time against world size."""
    import matplotlib.pyplot as plt

    from .viz import plot_memory

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    plot_memory(view["by_stage"], capacity=view["capacity"], ax=ax0,
                title=f"{view['n_params'] / 1e9:.3g}B parameters, {view['world_size']} ranks (this job: stage {view['stage']})")
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
    ax1.legend(fontsize=8, frameon=False, loc="lower left")
    fig.tight_layout()
    return fig
