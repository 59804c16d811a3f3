"""The hardware step of ``minillm tour``: this machine on the roofline, and what the teacher costs to serve."""

from __future__ import annotations

import pathlib
import time

from minillm.presets import TEACHER
from minillm.units import format_rate, format_seconds

from .block_ops import layer_ops
from .devices import get_device
from .economics import cost_per_million_tokens
from .measure import this_machine
from .plots import plot_roofline
from .roofline import ridge_point
from .shapes import from_config, param_count

__all__ = ["tour_step"]

def _or_na(x: float | None, fmt) -> str:
    """``fmt(x)``, or "n/a" where the catalog has no figure (no price, no TDP)."""
    return "n/a" if x is None else fmt(x)


def _dollars(x: float) -> str:
    return f"${x:.2g}"


def _kwh(x: float) -> str:
    return f"{x:.2g} kWh"


def tour_step(out_dir: pathlib.Path, quick: bool = True) -> str:
    """Measure this machine, save ``roofline.png`` into ``out_dir``, and return a markdown section.

    Takes a few seconds: the measurement runs in quick mode unless ``quick=False``.
    """
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
    measured = (
        f"fp32 GEMM {format_rate(me.peak('fp32'))}"
        + (f", int8 GEMM {format_rate(int8, 'OP/s')}" if int8 else "")
        + f", memory {format_rate(me.mem_bw, 'B/s')} (GB = 1e9 bytes), so the ridge point is "
        f"{ridge_point(me, 'fp32'):.1f} FLOP/byte. An H100 (dense bf16) has its ridge at "
        f"{ridge_point(h100, 'bf16'):.0f} and a TPU v5e at {ridge_point(tpu, 'bf16'):.0f}."
    )
    header = ("device", "dtype", "bound", "tokens/s", "time per 1M", "$ per 1M", "kWh per 1M")
    table = [
        (
            r["device"],
            r["dtype"],
            r["bound"],
            format_rate(r["tokens_per_s"], "").strip(),
            format_seconds(r["seconds_per_million"]),
            _or_na(r["usd_per_million"], _dollars),
            _or_na(r["kwh_per_million"], _kwh),
        )
        for r in rows
    ]
    teacher = (
        f"Teacher ({config.n_layer} layers, width {config.n_embd}, {param_count(shape, non_embedding=True):,} "
        f"non-embedding parameters): cost to generate one million tokens by decoding, batch {batch}, context {context}."
    )
    # The terminal gets the key figures too, not only the progress bar.
    print(f"hardware: measured in {measured_s:.1f} s: {measured}")
    print(f"hardware: {teacher}")
    for row in table:
        print("  " + "  ".join(f"{c:<12}" for c in row).rstrip())
    lines = [
        "## Hardware: this machine on the roofline",
        "",
        f"Measured in {measured_s:.1f} s: {measured}",
        "",
        f"![roofline]({png.name})",
        "",
        f"{teacher} Roofline lower bounds; a model this small is really limited by kernel-launch overhead. "
        "Dollars use *illustrative* rental prices from the device catalog.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines) + "\n"
