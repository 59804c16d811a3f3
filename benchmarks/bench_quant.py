"""Quantization benchmarks (issue 4): int8 speed, the quantized teacher against torch.ao, sizes, quality (int8 overhead and a wide model: bench_int8.py).

Every value is a ratio measured in this run. Timings run on one CPU thread (a
core-for-core kernel comparison that stays stable when other programs share the
machine), best of several interleaved repeats.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from minillm.compress.int8_gemm import cpu_int8_features
from minillm.compress.int8_linear import Int8Linear
from minillm.compress.model_quant import quality_table, quantize_model, size_report
from minillm.evaluate import evaluate_loss
from minillm.compress.tour import load_teacher_and_data
from minillm.timing import interleaved_best
from minillm.threads import num_threads
from minillm.model import Linear


def _cpu_note() -> str:
    f = cpu_int8_features()
    if not f["known"]:
        return "CPU flags unknown"
    return f"CPU: VNNI={'yes' if f['vnni'] else 'no'}, AMX={'yes' if f['amx'] else 'no'}"


def _torch_ao():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated; it is the reference here
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    return default_dynamic_qconfig, quantize_dynamic


@torch.no_grad()
def int8_linear_speed(quick: bool) -> list[dict]:
    """Int8Linear against a float32 Linear at batch 64, 1024x1024; torch.ao's int8 linear as a peer."""
    torch.manual_seed(0)
    K = N = 1024
    fp = Linear(K, N)
    q = Int8Linear.from_float(fp.weight, fp.bias)
    x = torch.randn(64, K)
    q(x)  # sets q.kernel: the kernel "auto" picks for this shape
    # The other exact kernels, forced, as peers: every one gives the same integers.
    peers = {}
    for choice in ("fp32-exact", "fallback", "torch._int_mm"):
        layer = Int8Linear.from_float(fp.weight, fp.bias)
        layer.kernel_choice = choice
        try:
            layer(x)
        except (ValueError, RuntimeError):
            continue  # not available for this shape/torch/device
        if layer.kernel != q.kernel:
            peers[layer.kernel] = layer
    qconfig, quantize_dynamic = _torch_ao()
    ref = nn.Linear(K, N)
    ref.load_state_dict({"weight": fp.weight.detach(), "bias": fp.bias.detach()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao = quantize_dynamic(nn.Sequential(ref), {nn.Linear: qconfig}, dtype=torch.qint8)
    fns = {"fp": lambda: fp(x), "q": lambda: q(x), "ao": lambda: ao(x), "ref": lambda: ref(x)}
    slow = {k: (lambda m=m: m(x)) for k, m in peers.items()}
    with num_threads(1):
        t = interleaved_best(fns, 5 if quick else 20)
        t.update(interleaved_best(slow, 2 if quick else 3))  # torch._int_mm without VNNI takes ~0.1 s a call
    f = cpu_int8_features()
    has_dot = f["vnni"] or f["amx"]
    ratio = t["fp"] / t["q"]
    note = f"kernel {q.kernel}; {_cpu_note()}; 1 thread"
    for k in peers:
        note += f"; {k} forced: {t['fp'] / t[k]:.3f}x"
    if not has_dot:
        note += "; the >= 3x target applies to CPUs with int8 dot-product instructions only"
    rows = [
        {
            "name": "Int8Linear / float32 Linear speed-up (64x1024 @ 1024x1024)",
            "value": ratio,
            "target": ">= 3",
            "passed": (ratio >= 3) if has_dot and not quick else None,
            "note": note,
        },
        {
            "name": "torch.ao dynamic int8 nn.Linear / float32 nn.Linear speed-up (peer)",
            "value": t["ref"] / t["ao"],
            "target": "report",
            "passed": None,
            "note": f"fbgemm/onednn with 7-bit activations (reduce_range); engine {torch.backends.quantized.engine}",
        },
    ]
    return rows


@torch.no_grad()
def teacher_rows(quick: bool) -> list[dict]:
    """The int8 teacher against a torch.ao dynamic-quantized torch.nn copy; sizes; quality targets."""
    from benchmarks.torch_gpt import TorchGPT

    data = load_teacher_and_data()
    model, val_ids, calib = data["model"], data["val_ids"], data["calibration"]
    ours = quantize_model(model, "int8", "int8")  # W8A8, per-token dynamic, round to nearest
    qconfig, quantize_dynamic = _torch_ao()
    ref = TorchGPT.from_minillm(model).eval()
    # Same layers as ours: every Linear of the blocks; the tied output layer stays float in both.
    names = {n: qconfig for n, m in ref.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao = quantize_dynamic(ref, names, dtype=torch.qint8)
    T = model.config.block_size
    idx = val_ids[: 2 * T].view(2, T)
    max_batches = 1 if quick else 4
    with num_threads(1):
        t = interleaved_best(
            {"ours": lambda: ours(idx), "ao": lambda: ao(idx), "fp": lambda: model(idx), "ref": lambda: ref(idx)},
            2 if quick else 10,  # ~70 ms forwards on a shared CPU: more repeats, steadier minima
        )
        loss_ours = evaluate_loss(ours, val_ids, batch_size=8, n_batches=max_batches)
        loss_ao = evaluate_loss(ao, val_ids, batch_size=8, n_batches=max_batches)
        kernel = next(m.kernel for m in ours.modules() if isinstance(m, Int8Linear))
        table = quality_table(
            model, val_ids,
            {"w8a8-smoothquant": dict(weights="int8", activations="int8", method="smoothquant"),
             "w4-g32": dict(weights="int4", activations=None, group_size=32)},
            calibration=calib, max_batches=max_batches,
        )
    lat = t["ours"] / t["ao"]
    loss_gap = abs(loss_ours - loss_ao) / loss_ao
    int8_ratio = size_report(ours)["linear_weight_ratio"]
    int4_ratio = table[2]["linear_weight_ratio"]
    fp, sq, w4 = (r["val_loss"] for r in table)
    blocks = f"{8 * max_batches} val blocks of {T}"
    return [
        {
            "name": "int8 teacher / torch.ao dynamic int8 copy: forward latency",
            "value": lat,
            "target": "report",
            "passed": None,
            "note": "a report, not a target: the teacher's 128-wide GEMMs are too small for int8 to pay "
            f"(bench_int8 compares at 1024 wide); ours: kernel {kernel}, per-token activations; torch.ao: fbgemm/onednn; batch 2x{T}, 1 thread; {_cpu_note()}",
        },
        {
            "name": "float32 teacher (minillm) / float32 torch.nn copy: forward latency (peer)",
            "value": t["fp"] / t["ref"],
            "target": "report",
            "passed": None,
            "note": "same weights, no quantization: minillm's from-scratch attention and LayerNorm against "
            "F.scaled_dot_product_attention and nn.LayerNorm; this gap is part of the row above",
        },
        {
            "name": "int8 teacher / float32 teacher (same minillm code): forward latency",
            "value": t["ours"] / t["fp"],
            "target": "report",
            "passed": None,
            "note": f"what W8A8 itself costs or saves here: kernel {kernel}, per-token activations; {_cpu_note()}",
        },
        {
            "name": "int8 teacher vs torch.ao copy: |val loss difference| / loss",
            "value": loss_gap,
            "target": "<= 0.01",
            "passed": loss_gap <= 0.01,
            "note": f"ours {loss_ours:.4f}, torch.ao {loss_ao:.4f}; {blocks}",
        },
        {
            "name": "size: int8 linear weights / float32",
            "value": int8_ratio,
            "target": "<= 0.26",
            "passed": int8_ratio <= 0.26,
            "note": "1 byte per weight + a float32 scale per output channel; teacher shape",
        },
        {
            "name": "size: int4 group-32 linear weights / float32",
            "value": int4_ratio,
            "target": "<= 0.16",
            "passed": int4_ratio <= 0.16,
            "note": "4 bits packed two per byte + a float32 scale per 32 weights",
        },
        {
            "name": "quality: W8A8 SmoothQuant val loss / float32",
            "value": sq / fp,
            "target": "<= 1.02",
            "passed": sq / fp <= 1.02,
            "note": f"float32 {fp:.4f}, W8A8-SQ {sq:.4f} (alpha 0.5, calibrated on training text); {blocks}",
        },
        {
            "name": "quality: int4 group-32 weight-only val loss / float32",
            "value": w4 / fp,
            "target": "<= 1.10",
            "passed": w4 / fp <= 1.10,
            "note": f"float32 {fp:.4f}, W4-g32 {w4:.4f}; {blocks}",
        },
    ]


def run(quick: bool = False) -> list[dict]:
    return int8_linear_speed(quick) + teacher_rows(quick)


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
