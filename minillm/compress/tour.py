"""The quantization step of ``minillm tour``: size, loss and speed before and after int8.

``tour_step(out_dir)`` quantizes the zoo teacher three ways, measures what each
costs and gains on this machine, and returns a markdown section. The helpers
(:func:`load_teacher_and_data`, :func:`measure_configs`, :func:`kernel_speed_table`,
:func:`plot_error_histograms`) are pure data-in/data-out so the lesson and the
benchmark reuse them.

Timing on a shared machine: :func:`minillm.timing.interleaved_best` calls
every candidate once per round, in turn, and keeps each one's fastest call, so a burst
of load from another process slows all candidates alike instead of whichever happened
to run during it, and no candidate is the cold first one.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from minillm.compress.int4 import WeightOnlyLinear
from minillm.compress.int8_gemm import cpu_int8_features
from minillm.compress.int8_linear import Int8Linear
from minillm.compress.model_quant import quantize_model, size_report
from minillm.compress.qat import FakeQuantLinear
from minillm.compress.quant_core import quant_error
from minillm.evaluate import evaluate_loss
from minillm.timing import interleaved_best
from minillm.threads import num_threads
from minillm.units import MB
from minillm.validate import check_int

__all__ = [
    "load_teacher_and_data",
    "time_forward",
    "time_forwards",
    "speedup_runs",
    "kernel_speed_table",
    "measure_configs",
    "plot_error_histograms",
    "tour_step",
]

TOUR_CONFIGS = {
    "W8A8 int8 (per-token, RTN)": dict(weights="int8", activations="int8"),
    "W8A8 int8 + SmoothQuant": dict(weights="int8", activations="int8", method="smoothquant"),
    "W4 int4 weight-only, group 32": dict(weights="int4", activations=None, group_size=32),
}


def load_teacher_and_data(n_calib_tokens: int = 8 * 256, val_chars: int | None = None) -> dict:
    """The zoo teacher, its validation ids and a calibration batch from the training text.

    ``val_chars`` keeps only the start of the validation text (None: all of it),
    to save tokenizing time when only a few blocks are evaluated.

    Returns {"model", "val_ids" [N], "calibration" [B, T], "note"}.
    """
    from minillm import zoo
    from minillm.data import load_corpus

    model, tok = zoo.load("teacher", train_if_missing=False)
    corpus = load_corpus()
    val_ids = torch.tensor(tok.encode(corpus.val_text[:val_chars]), dtype=torch.long)
    train_ids = torch.tensor(tok.encode(corpus.train_text[: 40 * n_calib_tokens]), dtype=torch.long)
    note = "zoo teacher on the embedded validation set"
    T = model.config.block_size
    n = max(1, min(n_calib_tokens, train_ids.numel() - 1) // T)
    calibration = train_ids[: n * T].view(n, T)
    return {"model": model, "val_ids": val_ids, "calibration": calibration, "note": note}


@torch.no_grad()
def time_forwards(models: dict[str, nn.Module], idx: Tensor, rounds: int = 5) -> dict[str, float]:
    """Best seconds for one forward pass of each model on idx [B, T], timed interleaved.

    Each model runs one untimed warm-up forward, then ``rounds`` rounds of one forward
    per model in turn (:func:`interleaved_best`). Returns {name: seconds}.
    """
    for m in models.values():
        m.eval()
    return interleaved_best({name: (lambda m=m: m(idx)) for name, m in models.items()}, rounds)


def speedup_runs(models: dict[str, nn.Module], idx: Tensor, rounds: int = 5, runs: int = 3) -> dict[str, dict]:
    """How fast each model's forward on idx [B, T] is against the first one, and how noisy that is.

    ``runs`` independent :func:`time_forwards` measurements of ``rounds`` interleaved
    rounds each. Returns {name: {"seconds": median best seconds, "speedup": median of
    the per-run speed-ups against the first model, "low"/"high": the smallest and
    largest per-run speed-up}}. The lesson and the tour both report this, so their
    figures are measured the same way.
    """
    per_run = [time_forwards(models, idx, rounds) for _ in range(check_int("runs", runs))]
    first = next(iter(models))
    out = {}
    for name in models:
        ratios = sorted(t[first] / t[name] for t in per_run)
        out[name] = {
            "seconds": statistics.median(t[name] for t in per_run),
            "speedup": statistics.median(ratios),
            "low": ratios[0],
            "high": ratios[-1],
        }
    return out


def time_forward(model: nn.Module, idx: Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds for one forward pass on idx [B, T] (after a warm-up).

    For comparing models, time them together with :func:`time_forwards`.
    """
    return time_forwards({"model": model}, idx, repeats)["model"]


def _verdict(speedup: float, tolerance: float) -> str:
    if speedup > 1.0 + tolerance:
        return "faster"
    if speedup < 1.0 / (1.0 + tolerance):
        return "slower"
    return "about as fast"


@torch.no_grad()
def kernel_speed_table(
    layer: nn.Module,
    x: Tensor,
    rounds: int = 7,
    group_size: int = 32,
    threads: int | None = 1,
    tolerance: float = 0.05,
) -> list[dict]:
    """Time one float linear layer against its quantized versions on the CPU, interleaved.

    layer: a float linear layer with ``weight`` [N, K] and ``bias`` [N] (or None);
    x: float32 input [M, K]. Candidates, in this order: the float layer itself
    ("float32 Linear"); :class:`~minillm.compress.qat.FakeQuantLinear` at 8 bits per
    channel (what QAT runs); :class:`~minillm.compress.int4.WeightOnlyLinear` int4 with
    ``group_size``; :class:`~minillm.compress.int8_linear.Int8Linear` with each exact kernel
    forced ("fp32-exact", "fallback", "torch._int_mm", "onednn"; one that cannot run here,
    or not exactly, is left out); and torch's own dynamic int8 ``nn.Linear`` (``torch.ao`` ``quantize_dynamic``,
    fbgemm/oneDNN kernels) as a peer. All are timed by :func:`interleaved_best` on
    ``threads`` CPU threads (None: leave torch's setting).

    Returns one row per candidate: {name, seconds, speedup (float32 seconds / these
    seconds), verdict ("faster", "slower" or "about as fast": a speed-up within a
    factor 1 + ``tolerance`` of 1; "baseline" for the float32 row), kernel (what ran), auto (True for the Int8Linear
    row whose kernel the layer picks by itself with ``kernel_choice="auto"``)}. The float32 row
    comes first, with speedup 1.
    """
    weight = layer.weight.detach().float()
    bias = None if getattr(layer, "bias", None) is None else layer.bias.detach().float()
    if x.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be [M, {weight.shape[1]}] (the layer's in_features), got {tuple(x.shape)}")
    layer.eval()
    candidates: dict[str, tuple[nn.Module, str]] = {
        "float32 Linear": (layer, "float32 matmul"),
        "fake-quant int8 (QAT forward)": (FakeQuantLinear(weight, bias, bits=8, group_size=None), "float32 matmul"),
        f"weight-only int4, group {group_size}": (
            WeightOnlyLinear.from_float(weight, bias, 4, group_size), "dequantize + float32 matmul"
        ),
    }
    for choice in ("fp32-exact", "fallback", "torch._int_mm", "onednn"):
        q = Int8Linear.from_float(weight, bias)
        q.kernel_choice = choice
        try:
            q(x)  # a forced kernel that cannot run here raises: leave it out
        except (ValueError, RuntimeError):
            continue
        candidates[f"Int8Linear, {choice}"] = (q, q.kernel)
    ao = _torch_ao_linear(weight, bias)
    if ao is not None:
        engine = torch.backends.quantized.engine
        candidates[f"torch.ao dynamic int8 ({engine} engine)"] = (ao, f"torch.ao quantized::linear_dynamic, engine {engine}")
    probe = Int8Linear.from_float(weight, bias)
    probe(x[:1])
    auto = probe.kernel  # what the layer picks by itself here
    with num_threads(threads):
        times = interleaved_best({name: (lambda m=m: m(x)) for name, (m, _) in candidates.items()}, rounds)
    base = times["float32 Linear"]
    rows = []
    for i, (name, (m, kernel)) in enumerate(candidates.items()):
        speedup = base / times[name]
        rows.append({
            "name": name,
            "seconds": times[name],
            "speedup": speedup,
            "verdict": "baseline" if i == 0 else _verdict(speedup, tolerance),
            "kernel": kernel,
            "auto": isinstance(m, Int8Linear) and kernel == auto,
        })
    return rows


def _torch_ao_linear(weight: Tensor, bias: Tensor | None) -> nn.Module | None:
    """torch's dynamic int8 Linear for this weight, or None where torch.ao cannot build one."""
    ref = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        ref.weight.copy_(weight)
        if bias is not None:
            ref.bias.copy_(bias)
    # A genuine capability check, not a guard around our own code: torch.ao's quantized
    # engines (fbgemm, x86, qnnpack) are build options of torch, and the deprecated
    # torch.ao.quantization may be absent from a future torch.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
            from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

            ao = quantize_dynamic(nn.Sequential(ref), {nn.Linear: default_dynamic_qconfig}, dtype=torch.qint8)
            ao(torch.zeros(1, weight.shape[1]))
    except (ImportError, RuntimeError, AssertionError):
        return None
    return ao.eval()


def measure_configs(
    model: nn.Module,
    val_ids: Tensor,
    calibration: Tensor,
    configs: dict = TOUR_CONFIGS,
    max_batches: int = 1,
    timing_batch: tuple[int, int] = (2, 256),
    repeats: int = 5,
    progress: bool = True,
    threads: int | None = 1,
    runs: int = 3,
) -> list[dict]:
    """Size, validation loss and forward latency of the float model and each quantized copy.

    Loss: ``max_batches`` batches of 8 validation blocks. Latency: ``runs`` times the
    best of ``repeats`` forwards of a ``timing_batch`` on ``threads`` CPU threads, all
    models timed in interleaved rounds (:func:`speedup_runs`, as lesson 04 does).
    Returns rows {name, linear_MB, total_MB (MB = 1e6 bytes), linear_ratio, val_loss,
    rel_loss, latency_s (median over runs), speedup (median float latency / this
    latency over runs), speedup_low, speedup_high (its range over runs), kernel}.
    """
    from tqdm.auto import tqdm

    B, T = timing_batch[0], min(timing_batch[1], model.config.block_size)
    idx = val_ids[: B * T].view(B, T)
    rows: list[dict] = []
    models: dict[str, nn.Module] = {}
    items = [("float32", None)] + list(configs.items())
    with num_threads(threads):
        for name, kw in tqdm(items, desc="  quantize, evaluate", leave=False, disable=not progress):
            models[name] = m = _quantized(model, kw, calibration)
            rows.append(_measure_one(m, name, val_ids, max_batches))
        timing = speedup_runs(models, idx, repeats, runs)
    for r in rows:
        t = timing[r["name"]]
        r["latency_s"], r["speedup"], r["speedup_low"], r["speedup_high"] = t["seconds"], t["speedup"], t["low"], t["high"]
        kernels = {mod.kernel for mod in models[r["name"]].modules() if isinstance(mod, Int8Linear)}
        r["kernel"] = ", ".join(sorted(kernels)) if kernels else "float32 matmul"
    base = rows[0]
    for r in rows:
        r["rel_loss"] = (r["val_loss"] - base["val_loss"]) / base["val_loss"]
    return rows


def _quantized(model: nn.Module, kw: dict | None, calibration: Tensor) -> nn.Module:
    """``model`` quantized with ``kw`` (None: the float model itself)."""
    if kw is None:
        return model
    calib = calibration if kw.get("method") == "smoothquant" or kw.get("activations") == "int8_static" else None
    return quantize_model(model, calibration=calib, **kw)


def _measure_one(m: nn.Module, name: str, val_ids: Tensor, max_batches: int) -> dict:
    """Size and validation loss of one (quantized) model."""
    size = size_report(m)
    return {
        "name": name,
        "linear_MB": size["linear_weight_bytes"] / MB,
        "total_MB": size["total_bytes"] / MB,
        "linear_ratio": size["linear_weight_ratio"],
        "val_loss": evaluate_loss(m, val_ids, batch_size=8, n_batches=max_batches),
    }


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
        f"forward {int8['speedup']:.2f}x the float speed (3 runs: {int8['speedup_low']:.2f}-{int8['speedup_high']:.2f}x)",
    ]
    for line in lines:
        print("  " + line)
    table = [
        "| model | linear weights (MB) | total (MB) | val loss | change | forward (ms) | speed vs fp32 (range of 3 runs) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['name']} | {r['linear_MB']:.2f} | {r['total_MB']:.2f} | {r['val_loss']:.3f} | "
            f"{r['rel_loss']:+.1%} | {1e3 * r['latency_s']:.0f} | {r['speedup']:.2f}x ({r['speedup_low']:.2f}-{r['speedup_high']:.2f}) |"
        )
    why = (
        "Smaller is not automatically faster. int8 arithmetic pays off most on int8 dot-product hardware "
        "(VNNI/AMX on CPUs, tensor cores on GPUs). Without it, the fastest exact int8 GEMM written in PyTorch "
        "operations is a float32 GEMM on the integer codes (exact for K <= 1024), so W8A8 runs at float speed "
        "at best, minus the cost of quantizing activations; hand-written kernels such as fbgemm's (torch.ao) "
        "can still win by prepacking the weight and fusing those steps. Weight-only int4 adds a dequantization "
        "step to every forward; its win is memory, which matters when the matmul is memory-bound "
        "(small-batch decoding)."
    )
    md = [
        "## Quantization: smaller, and faster only with int8 kernels",
        "",
        *[f"- {x}" for x in lines],
        "",
        *table,
        "",
        "MB = 1e6 bytes. Embeddings, LayerNorms and the tied output layer stay float32. "
        f"Loss over 8 validation blocks of {model.config.block_size} tokens; latency is the best of 5 forwards "
        f"of a 2x{model.config.block_size} batch on one CPU thread (a core-for-core comparison), the models "
        "timed in interleaved rounds; the speed-up is the median of 3 such runs, its range in brackets "
        "(lesson 04, section 10, measures it the same way).",
        "",
        why,
        "",
        "![quantization error](quantization_error.png)",
        "",
        f"_{time.perf_counter() - t0:.1f} s_",
        "",
    ]
    return "\n".join(md)
