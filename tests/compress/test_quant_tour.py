"""The quantization tour step and its helpers (lesson 04)."""

import pytest
import torch

from minillm.compress.int8_gemm import cpu_int8_features, int8_kernel
from minillm.compress.int8_linear import Int8Linear
from minillm.compress.tour import (
    kernel_speed_table,
    measure_configs,
    plot_error_histograms,
    time_forwards,
    tour_step,
)
from minillm.model import GPT, GPTConfig

pytestmark = pytest.mark.lesson04


def test_star_import_gives_the_whole_api():
    ns = {}
    exec("from minillm.compress.quantize import *", ns)
    import minillm.compress.quantize as mod

    missing = [n for n in mod.__all__ if n not in ns]
    assert not missing


def test_auto_kernel_follows_cpu_features():
    f = cpu_int8_features()
    assert set(f) == {"known", "vnni", "amx", "avx2"}
    if f["known"] and not (f["vnni"] or f["amx"]):
        # measured: torch._int_mm is ~20x slower than an int32 matmul without VNNI/AMX,
        # and an int32 matmul ~3x slower than the exact float32 path (K <= 1024)
        assert int8_kernel() == "fp32-exact (K<=1024)"
        assert int8_kernel(K=2048).startswith("fallback")
    elif hasattr(torch, "_int_mm"):
        assert int8_kernel() == "torch._int_mm"


def test_measure_configs_and_plot_on_a_tiny_model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32)).eval()
    val = torch.randint(0, 32, (400,), generator=torch.Generator().manual_seed(0))
    rows = measure_configs(m, val, val[:64].view(4, 16), timing_batch=(2, 16), repeats=1, progress=False, runs=3)
    assert [r["name"] for r in rows][0] == "float32" and len(rows) == 4
    assert rows[0]["speedup"] == 1.0 and rows[0]["rel_loss"] == 0.0
    assert rows[0]["speedup_low"] == rows[0]["speedup_high"] == 1.0  # the baseline against itself, every run
    assert all(r["speedup_low"] <= r["speedup"] <= r["speedup_high"] for r in rows)
    assert rows[3]["linear_ratio"] == pytest.approx(5 / 32)  # int4 group 32: 5 bits per weight
    assert all(r["latency_s"] > 0 for r in rows) and torch.get_num_threads() >= 1


def test_error_histograms_draw_each_error_tensor():
    a, b = torch.randn(100), torch.randn(100) * 0.1
    fig = plot_error_histograms({"a": a, "b": b}, "my title")
    (ax,) = fig.axes
    assert ax.get_title() == "my title" and ax.get_xlabel() == "dequantized - original"
    assert ax.get_ylabel() == "density" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    # one step outline per tensor, spanning its data: the narrow one ends inside the wide one
    xs = [p.get_xy()[:, 0] for p in ax.patches]
    assert len(xs) == 2
    assert xs[0].min() == pytest.approx(float(a.min()), abs=1e-6) and xs[0].max() == pytest.approx(float(a.max()), abs=1e-6)
    assert xs[1].max() - xs[1].min() < xs[0].max() - xs[0].min()


def test_time_forwards_times_every_model():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32)
    models = {"a": GPT(cfg), "b": GPT(cfg)}
    t = time_forwards(models, torch.zeros(1, 16, dtype=torch.long), rounds=2)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    assert not models["a"].training


def test_kernel_speed_table_structure():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(24, 64)
    rows = kernel_speed_table(layer, x, rounds=2, tolerance=0.05)
    names = [r["name"] for r in rows]
    assert names[:3] == ["float32 Linear", "fake-quant int8 (QAT forward)", "weight-only int4, group 32"]
    assert rows[0]["speedup"] == 1.0 and rows[0]["verdict"] == "baseline"
    assert len(set(names)) == len(names)
    for r in rows:
        assert set(r) == {"name", "seconds", "speedup", "verdict", "kernel", "auto"}
        assert r["seconds"] > 0
        assert r["speedup"] == pytest.approx(rows[0]["seconds"] / r["seconds"])
        if r is not rows[0]:
            expected = "faster" if r["speedup"] > 1.05 else "slower" if r["speedup"] < 1 / 1.05 else "about as fast"
            assert r["verdict"] == expected
    int8_rows = [r for r in rows if r["name"].startswith("Int8Linear")]
    assert "Int8Linear, fallback" in names  # the int32 fallback runs everywhere
    # exactly one Int8Linear row is the kernel the layer picks by itself here
    auto = Int8Linear.from_float(layer.weight.detach(), layer.bias.detach())
    auto(x)
    assert [r["kernel"] for r in int8_rows if r["auto"]] == [auto.kernel]
    assert not any(r["auto"] for r in rows if r not in int8_rows)
    with pytest.raises(ValueError, match=r"\[M, 64\]"):
        kernel_speed_table(layer, torch.randn(4, 32))


@pytest.mark.slow
def test_tour_step_writes_markdown_and_plot(tmp_path):
    """10-20 s: loads the zoo teacher (or a stand-in), quantizes it three ways."""
    md = tour_step(tmp_path)
    assert md.startswith("## Quantization") and "| float32 |" in md and "W8A8" in md
    assert (tmp_path / "quantization_error.png").stat().st_size > 0


def test_speedup_runs_reports_median_and_range():
    from minillm.compress.tour import speedup_runs

    torch.manual_seed(0)
    small = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=32))
    big = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=4, n_head=2, n_embd=256))
    out = speedup_runs({"small": small, "big": big}, torch.zeros(2, 16, dtype=torch.long), rounds=2, runs=3)
    assert out["small"]["speedup"] == out["small"]["low"] == out["small"]["high"] == 1.0
    b = out["big"]
    assert b["low"] <= b["speedup"] <= b["high"]
    # about 50x the arithmetic of the small model: well below 1x whatever the load
    assert b["high"] < 0.8 and b["seconds"] > out["small"]["seconds"]
