"""The hardware step of ``minillm tour``: this machine on the roofline, and what the teacher costs to serve."""

from __future__ import annotations

import pathlib
import time

from minillm.presets import TEACHER

from .costs import cost_per_million_tokens, from_config, layer_ops, param_count
from .devices import get_device
from .measure import this_machine
from .roofline import ridge_point

__all__ = ["tour_step"]

def _fmt(x, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}{unit}"


def tour_step(out_dir: pathlib.Path, quick: bool = True) -> str:
    """Measure this machine, save ``roofline.png`` into ``out_dir``, and return a markdown section.

    Takes a few seconds: the measurement runs in quick mode unless ``quick=False``.
    """
    from .plots import plot_roofline

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("hardware: measuring this machine (GEMM FLOP/s and memory bandwidth)...")
    me = this_machine(quick=quick, progress=True)
    measured_s = time.perf_counter() - t0
    h100, tpu = get_device("h100"), get_device("tpu-v5e")
    config = TEACHER
    shape = from_config(config)
    ops = layer_ops(shape, batch=1, seq_len=config.block_size, bytes_per_elem=4)  # fp32 on this machine
    fig = plot_roofline([(me, "fp32"), (h100, "bf16"), (tpu, "bf16")], ops=ops, title="This machine, an H100 and a TPU v5e")
    png = out_dir / "roofline.png"
    fig.savefig(png, dpi=110)

    batch, context = 64, config.block_size
    rows = [cost_per_million_tokens(shape, me, batch=batch, context=context, dtype="fp32")]
    for name in ("xeon-8480", "h100", "tpu-v5e"):
        rows.append(cost_per_million_tokens(shape, name, batch=batch, context=context))
    int8 = me.peak_flops.get("int8")
    lines = [
        "## Hardware: this machine on the roofline",
        "",
        f"Measured in {measured_s:.1f} s: fp32 GEMM {me.peak('fp32') / 1e9:.1f} GFLOP/s"
        + (f", int8 GEMM {int8 / 1e9:.1f} GOP/s" if int8 else "")
        + f", memory {me.mem_bw / 1e9:.1f} GB/s (GB = 1e9 bytes), so the ridge point is "
        f"{ridge_point(me, 'fp32'):.1f} FLOP/byte. An H100 (dense bf16) has its ridge at "
        f"{ridge_point(h100, 'bf16'):.0f} and a TPU v5e at {ridge_point(tpu, 'bf16'):.0f}.",
        "",
        f"![roofline]({png.name})",
        "",
        f"Teacher ({config.n_layer} layers, width {config.n_embd}, {param_count(shape, non_embedding=True):,} non-embedding parameters): "
        f"cost to generate one million tokens by decoding, batch {batch}, context {context}. Roofline lower "
        "bounds; a model this small is really limited by kernel-launch overhead. Dollars use *illustrative* "
        "rental prices from the device catalog.",
        "",
        "| device | dtype | bound | tokens/s | seconds per 1M | $ per 1M | kWh per 1M |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['dtype']} | {r['bound']} | {_fmt(r['tokens_per_s'])} | "
            f"{_fmt(r['seconds_per_million'])} | {_fmt(r['usd_per_million'], '', 2)} | {_fmt(r['kwh_per_million'], '', 2)} |"
        )
    return "\n".join(lines) + "\n"
