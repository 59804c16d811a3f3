"""The FPGA pipeline model against the U280 datasheet and AMD's DPU, and the HLS loop formula."""

import math

import pytest

from minillm.hardware import get_device
from minillm.hardware.shapes import get_model
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


def test_token_latency_is_never_shorter_than_its_memory_traffic():
    dpu = u280_dpu()
    llama = get_model("llama2-7b")
    # Decode of a 7B layer: ~200 MB of int8 weights stream in from HBM for every token, so a token
    # cannot leave the layer sooner than that stream; with one token, latency is the layer's time.
    one = transformer_layer(dpu, llama, tokens=1, context=1024)
    assert one.bound == "memory" and one.memory_s > one.compute_s
    assert one.token_latency_s == pytest.approx(one.seconds, rel=1e-12) and one.seconds == one.memory_s
    # With more tokens the first still waits for its bytes, and never for longer than the whole stream.
    many = transformer_layer(dpu, llama, tokens=64, context=1024)
    assert many.memory_s / 64 <= many.token_latency_s <= many.seconds
    # A small model's weights live on chip, loaded once before serving: latency is the pipeline's
    # fill-to-drain time, or the time to bring in the context's K and V, not the weights' load.
    tiny = transformer_layer(dpu, get_model("gpt2-124m"), tokens=256, context=256)
    cycles = sum(dpu.pipeline_depth + s["cycles_per_token"] for s in tiny.stages)
    assert tiny.bound == "compute" and tiny.memory_s < tiny.compute_s
    assert cycles / dpu.clock_hz <= tiny.token_latency_s < max(cycles / dpu.clock_hz, tiny.memory_s) + 1e-15
    assert tiny.token_latency_s < tiny.seconds
    # Ignoring memory (mem_bw=None) leaves only the pipeline: one token's latency is its compute time.
    no_mem = FPGADesign("no memory", dsp=9024, clock_hz=300e6, ops_per_dsp_per_cycle=8.0, parallelism=28672, pipeline_depth=16)
    r = transformer_layer(no_mem, llama, tokens=1, context=1024)
    assert r.memory_s == 0.0 and r.bound == "compute" and r.token_latency_s == pytest.approx(r.compute_s, rel=1e-12)
