"""The FPGA pipeline model against the U280 datasheet and AMD's DPU, and the HLS loop formula."""

import math

import pytest

from minillm.hardware import get_device
from minillm.hardware.costs import get_model
from minillm.hardware.fpga import FPGADesign, gemm, transformer_layer, u280_dpu, u280_peak

pytestmark = pytest.mark.lesson08


def test_u280_datasheet_peak():
    # AMD DS963: 9,024 DSPs, INT8 peak 24.5 TOPS; the catalog entry carries the same figure. 1e-9: exact by construction.
    design = u280_peak()
    assert design.peak_ops == pytest.approx(24.5e12, rel=1e-9)
    assert design.peak_ops == pytest.approx(get_device("u280").peak("int8"), rel=1e-9)


def test_u280_dpu_reproduces_pg367():
    # AMD PG367, Performance table: DPUCAHX8H on U280, 3 cores, 300 MHz -> 17,203 GOPS peak.
    # Tolerance 0.01%: the table rounds to whole GOPS.
    dpu = u280_dpu()
    assert dpu.design_ops == pytest.approx(17_203e9, rel=1e-4)
    assert dpu.design_ops < dpu.peak_ops  # a real design uses fewer lanes than the DSP peak allows


def test_gemm_latency_is_the_pipelined_loop_formula():
    # Vitis HLS (UG1399): latency = depth + (iterations - 1) * II.
    d = FPGADesign("toy", dsp=64, clock_hz=100e6, parallelism=64, pipeline_depth=10, initiation_interval=1)
    r = gemm(d, 16, 32, 8)
    iters = math.ceil(16 * 32 * 8 / 64)
    assert r.cycles == 10 + (iters - 1) * 1
    assert r.seconds == pytest.approx(r.cycles / 100e6)
    slow = gemm(FPGADesign("toy", dsp=64, clock_hz=100e6, parallelism=64, pipeline_depth=10, initiation_interval=2), 16, 32, 8)
    assert slow.cycles == 10 + (iters - 1) * 2  # II = 2 halves the throughput


def test_gemm_can_be_memory_bound():
    d = FPGADesign("starved", dsp=9024, clock_hz=300e6, ops_per_dsp_per_cycle=4, mem_bw=1e9)
    r = gemm(d, 1, 4096, 4096)  # a GEMV streams 16 MB of weights at 1 GB/s
    assert r.bound == "memory" and r.seconds == pytest.approx((4096 + 4096 * 4096 + 4096) / 1e9)


def test_transformer_layer_dataflow():
    shape = get_model("llama2-7b")
    dpu = u280_dpu()
    one = transformer_layer(dpu, shape, tokens=1, context=512)
    many = transformer_layer(dpu, shape, tokens=256, context=512)
    assert {s["stage"] for s in one.stages} == {"qkv", "scores", "values", "proj", "mlp up", "mlp down"}
    assert sum(s["lanes"] for s in one.stages) <= dpu.lanes
    # A 7B layer's 400 MB of int8 weights exceed 41 MB on chip: every token re-reads them, so decode
    # through the pipeline is memory-bound, as on a GPU.
    assert one.bound == "memory" and many.bound == "memory"
    tiny = get_model("gpt2-124m")
    small = transformer_layer(dpu, tiny, tokens=256, context=256)
    assert small.bound == "compute"  # 7 MB of weights stay on chip
    assert small.tokens_per_s > transformer_layer(dpu, tiny, tokens=1, context=256).tokens_per_s


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dsp=100, clock_hz=1e8, parallelism=1000), "parallelism"),
        (dict(dsp=100, clock_hz=-1.0), "clock_hz"),
        (dict(dsp=0, clock_hz=1e8), "dsp"),
        (dict(dsp=100, clock_hz=1e8, initiation_interval=0), "initiation_interval"),
    ],
)
def test_bad_designs_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FPGADesign("bad", **kwargs)


def test_bad_gemm_sizes():
    with pytest.raises(ValueError, match="K=-3"):
        gemm(u280_dpu(), 4, -3, 4)
