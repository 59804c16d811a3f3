"""The quantization step of ``minillm tour``: size, loss and speed before and after int8.

``tour_step(out_dir)`` quantizes the zoo teacher three ways, measures what each
costs and gains on this machine, and returns a markdown section. The helpers
(:func:`load_teacher_and_data`, :func:`measure_configs`, :func:`plot_error_histograms`)
are pure data-in/data-out so the lesson and the benchmark reuse them.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor, nn

from minillm.compress.int8_gemm import cpu_int8_features
from minillm.compress.int8_ops import Int8Linear
from minillm.compress.qmodel import eval_loss, quantize_model, size_report
from minillm.compress.quantize import quant_error
from minillm.model import GPT, GPTConfig
from minillm.threads import num_threads

__all__ = ["load_teacher_and_data", "measure_configs", "time_forward", "plot_error_histograms", "tour_step"]

TOUR_CONFIGS = {
    "W8A8 int8 (per-token, RTN)": dict(weights="int8", activations="int8"),
    "W8A8 int8 + SmoothQuant": dict(weights="int8", activations="int8", method="smoothquant"),
    "W4 int4 weight-only, group 32": dict(weights="int4", activations=None, group_size=32),
}


def load_teacher_and_data(n_calib_tokens: int = 8 * 256, val_chars: int | None = None) -> dict:
    """The zoo teacher, its validation ids and a calibration batch from the training text.

    ``val_chars`` keeps only the start of the validation text (None: all of it),
    to save tokenizing time when only a few blocks are evaluated.

    Returns {"model", "val_ids" [N], "calibration" [B, T], "note"}. If the teacher's
    weights are not built yet (``python -m minillm.zoo build teacher``) or the data
    module is missing, falls back to an *untrained* GPT of the teacher's shape on
    random tokens and says so in "note" (sizes and speeds stay meaningful; losses do not).
    """
    try:
        from minillm import zoo
        from minillm.data import load_corpus

        model, tok = zoo.load("teacher", train_if_missing=False)
        corpus = load_corpus()
        val_ids = torch.tensor(tok.encode(corpus.val_text[:val_chars]), dtype=torch.long)
        train_ids = torch.tensor(tok.encode(corpus.train_text[: 40 * n_calib_tokens]), dtype=torch.long)
        note = "zoo teacher on the embedded validation set"
    except (ImportError, ValueError, FileNotFoundError, AttributeError) as e:
        cfg = GPTConfig(vocab_size=512, block_size=256, n_layer=6, n_head=4, n_embd=128)
        try:
            from minillm.zoo import MODELS

            cfg = MODELS["teacher"].config
        except (ImportError, KeyError, AttributeError):
            pass
        torch.manual_seed(0)
        model = GPT(cfg).eval()
        g = torch.Generator().manual_seed(0)
        val_ids = torch.randint(0, cfg.vocab_size, (40 * cfg.block_size,), generator=g)
        train_ids = torch.randint(0, cfg.vocab_size, (2 * n_calib_tokens,), generator=g)
        note = (
            f"STAND-IN: the zoo teacher is not available ({type(e).__name__}: {e}); an untrained GPT of the "
            "teacher's shape on random tokens. Build the teacher with `python -m minillm.zoo build teacher`."
        )
    T = model.config.block_size
    n = max(1, min(n_calib_tokens, train_ids.numel() - 1) // T)
    calibration = train_ids[: n * T].view(n, T)
    return {"model": model, "val_ids": val_ids, "calibration": calibration, "note": note}


@torch.no_grad()
def time_forward(model: nn.Module, idx: Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds for one forward pass on idx [B, T] (after a warm-up)."""
    model.eval()
    model(idx)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        model(idx)
        best = min(best, time.perf_counter() - t)
    return best


def measure_configs(
    model: nn.Module,
    val_ids: Tensor,
    calibration: Tensor,
    configs: dict = TOUR_CONFIGS,
    max_batches: int = 1,
    timing_batch: tuple[int, int] = (2, 256),
    repeats: int = 2,
    progress: bool = True,
    threads: int | None = 1,
) -> list[dict]:
    """Size, validation loss and forward latency of the float model and each quantized copy.

    Loss: ``max_batches`` batches of 8 validation blocks. Latency: best of ``repeats``
    forwards of a ``timing_batch`` on ``threads`` CPU threads. Returns rows {name,
    linear_MB, total_MB (MB = 1e6 bytes), linear_ratio, val_loss, rel_loss,
    latency_s, speedup (float latency / this latency), kernel}.
    """
    from tqdm.auto import tqdm

    B, T = timing_batch[0], min(timing_batch[1], model.config.block_size)
    idx = val_ids[: B * T].view(B, T)
    rows: list[dict] = []
    items = [("float32", None)] + list(configs.items())
    with num_threads(threads):
        for name, kw in tqdm(items, desc="  quantize, evaluate, time", leave=False, disable=not progress):
            rows.append(_measure_one(model, name, kw, val_ids, calibration, idx, max_batches, repeats))
    base = rows[0]
    for r in rows:
        r["rel_loss"] = (r["val_loss"] - base["val_loss"]) / base["val_loss"]
        r["speedup"] = base["latency_s"] / r["latency_s"]
    return rows


def _measure_one(model, name, kw, val_ids, calibration, idx, max_batches, repeats) -> dict:
    """Quantize with ``kw`` (None: the float model) and measure size, loss and latency."""
    if kw is None:
        m = model
    else:
        calib = calibration if kw.get("method") == "smoothquant" or kw.get("activations") == "int8_static" else None
        m = quantize_model(model, calibration=calib, **kw)
    size = size_report(m)
    row = {
        "name": name,
        "linear_MB": size["linear_weight_bytes"] / 1e6,
        "total_MB": size["total_bytes"] / 1e6,
        "linear_ratio": size["linear_weight_ratio"],
        "val_loss": eval_loss(m, val_ids, batch_size=8, max_batches=max_batches),
        "latency_s": time_forward(m, idx, repeats),
    }
    kernels = {mod.kernel for mod in m.modules() if isinstance(mod, Int8Linear)}
    row["kernel"] = ", ".join(sorted(kernels)) if kernels else "float32 matmul"
    return row


def plot_error_histograms(errors: dict[str, Tensor], title: str = "Quantization error of one weight matrix"):
    """One histogram per label of the error tensors (e.g. from :func:`quant_error`); returns a Figure.

    Built without pyplot, so it never switches a notebook's backend and needs no close().
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for label, err in errors.items():
        ax.hist(err.flatten().numpy(), bins=80, histtype="step", label=label, density=True)
    ax.set_xlabel("dequantized - original")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _cpu_line() -> str:
    f = cpu_int8_features()
    if not f["known"]:
        return "CPU int8 instructions: unknown (flags not readable)"
    have = [n for n in ("vnni", "amx") if f[n]]
    return f"CPU int8 dot-product instructions: {', '.join(have).upper() if have else 'none (no VNNI, no AMX)'}"


def tour_step(out_dir: Path) -> str:
    """Quantize the teacher (int8 W8A8, with and without SmoothQuant; int4 weight-only) and report."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_teacher_and_data(val_chars=60_000)  # ~15k tokens: plenty for 8 blocks + timing
    model = data["model"]
    rows = measure_configs(model, data["val_ids"], data["calibration"])
    w = model.h[0].mlp.c_fc.weight.detach()
    errors = {
        "int8, per channel": quant_error(w, 8, granularity="channel")["error"],
        "int4, group 32": quant_error(w, 4, granularity="group", group_size=32)["error"],
        "int4, per tensor": quant_error(w, 4)["error"],
    }
    fig = plot_error_histograms(errors, "Error of h.0.mlp.c_fc.weight")
    fig.savefig(out_dir / "quantization_error.png", dpi=100)

    int8 = rows[1]
    lines = [
        f"{data['note']}",
        f"int8 GEMM kernel: {int8['kernel']}; {_cpu_line()}",
        f"int8 linear weights: {int8['linear_ratio']:.3f}x of float32; "
        f"val loss {rows[0]['val_loss']:.3f} -> {int8['val_loss']:.3f} ({int8['rel_loss']:+.1%}); "
        f"forward {int8['speedup']:.2f}x the float speed",
    ]
    for line in lines:
        print("  " + line)
    table = [
        "| model | linear weights (MB) | total (MB) | val loss | change | forward (ms) | speed vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['name']} | {r['linear_MB']:.2f} | {r['total_MB']:.2f} | {r['val_loss']:.3f} | "
            f"{r['rel_loss']:+.1%} | {1e3 * r['latency_s']:.0f} | {r['speedup']:.2f}x |"
        )
    why = (
        "Smaller is not automatically faster: int8 pays off only when the matrix multiply runs on int8 "
        "dot-product hardware (VNNI/AMX on CPUs, tensor cores on GPUs). Without it the fastest exact int8 "
        "GEMM is a float32 GEMM on the integer codes (exact for K <= 1024), so W8A8 runs at float speed at "
        "best, minus the cost of quantizing activations; weight-only int4 adds a dequantization step to "
        "every forward; its win is memory, which matters when decoding is memory-bound."
    )
    md = [
        "## Quantization: smaller, and faster only with int8 kernels",
        "",
        *[f"- {x}" for x in lines],
        "",
        *table,
        "",
        "MB = 1e6 bytes. Embeddings, LayerNorms and the tied output layer stay float32. "
        f"Loss over 8 validation blocks of {model.config.block_size} tokens; latency is the best of 2 forwards "
        f"of a 2x{model.config.block_size} batch on one CPU thread (a core-for-core comparison).",
        "",
        why,
        "",
        "![quantization error](quantization_error.png)",
        "",
        f"_{time.perf_counter() - t0:.1f} s_",
        "",
    ]
    return "\n".join(md)
