"""this_machine(): a DeviceSpec from microbenchmarks (quick mode only, to keep tests fast)."""

import time

import pytest
import torch

from minillm.hardware import DeviceSpec
from minillm.hardware.measure import (
    copy_bandwidth,
    default_cases,
    gemm_case,
    gemm_rate,
    num_threads,
    predict_vs_measure,
    scale_case,
    this_machine,
    triad_bandwidth,
)
from minillm.hardware.roofline import attainable_flops, gemm_flops_bytes, op_time, ridge_point

pytestmark = pytest.mark.lesson07


@pytest.fixture(scope="module")
def me():
    t0 = time.perf_counter()
    spec = this_machine(quick=True, progress=False, refresh=True)
    # Quick mode aims at ~2 s; 15 s allows for a heavily shared CI machine.
    assert time.perf_counter() - t0 < 15
    return spec


def test_this_machine_is_a_cpu_devicespec(me):
    assert isinstance(me, DeviceSpec)
    assert me.name == "this machine" and me.kind == "cpu"
    # Any machine that runs torch manages 100 MFLOP/s and 100 MB/s; anything less is a broken measurement.
    assert me.peak("fp32") > 1e8 and me.mem_bw > 1e8 and me.mem_bytes > 1e8
    for dtype in me.peak_flops:
        assert me.sources[f"peak_flops.{dtype}"].startswith("measured")
    assert me.sources["mem_bw"].startswith("measured")


def test_this_machine_works_with_the_roofline(me):
    ridge = ridge_point(me, "fp32")
    assert ridge > 0
    assert attainable_flops(me, ridge * 10, "fp32") == me.peak("fp32")
    assert op_time(1e6, 1e9, me, "fp32")[1] == "memory"


def test_this_machine_is_cached(me):
    assert this_machine(quick=True, progress=False) is me


def test_microbenchmark_helpers_are_positive():
    assert gemm_rate(64, budget_s=0.01) > 0
    assert copy_bandwidth(1 << 16, repeats=2) > 0 and triad_bandwidth(1 << 16, repeats=2) > 0


def test_num_threads_restores_the_setting():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- predict, then measure

#: A toy machine: 10 GFLOP/s and 1 GB/s, ridge 10 FLOP/byte.
TOY = DeviceSpec("toy", "cpu", {"fp32": 1e10}, 1e9, 1e9, None, None)


class FakeClock:
    """A clock that only moves when a fake operation runs: each call of ``op(s)()`` takes ``s`` seconds."""

    def __init__(self):
        self.now, self.calls = 0.0, 0

    def __call__(self) -> float:
        return self.now

    def op(self, seconds: float):
        def run():
            self.now += seconds
            self.calls += 1

        return run


def test_predict_vs_measure_is_the_roofline_against_the_clock():
    clock = FakeClock()
    cases = [
        ("compute-bound", 1e8, 1e6, clock.op(0.02)),  # 1e8 / 1e10 = 10 ms > 1e6 / 1e9 = 1 ms; runs 2x the roof
        ("memory-bound", 1e3, 1e6, clock.op(0.004)),  # 1 ms of bytes; runs 4x the roof
    ]
    rows = predict_vs_measure(TOY, cases, threads=None, clock=clock, budget_s=0.1)
    assert [r["name"] for r in rows] == ["compute-bound", "memory-bound"]
    for r, (_, flops, nbytes, _) in zip(rows, cases):
        # The prediction is exactly the roofline formula, max(FLOPs / peak, bytes / bandwidth).
        assert (r["predicted_s"], r["bound"]) == op_time(flops, nbytes, TOY, "fp32")
        assert (r["flops"], r["bytes"], r["intensity"]) == (flops, nbytes, flops / nbytes)
        assert r["ratio"] == r["measured_s"] / r["predicted_s"]
    assert [r["bound"] for r in rows] == ["compute", "memory"]
    assert rows[0]["predicted_s"] == pytest.approx(0.01) and rows[1]["predicted_s"] == pytest.approx(0.001)
    # The measurement is what the clock saw: one call's duration. Tolerance: float rounding of clock sums.
    assert rows[0]["measured_s"] == pytest.approx(0.02, rel=1e-9) and rows[0]["ratio"] == pytest.approx(2.0, rel=1e-9)
    assert rows[1]["measured_s"] == pytest.approx(0.004, rel=1e-9) and rows[1]["ratio"] == pytest.approx(4.0, rel=1e-9)
    # One warm-up call each, then as many repeats as fit the 0.1 s budget (5 and 20, the cap).
    assert clock.calls == (1 + 5) + (1 + 20)


def test_predict_vs_measure_sets_and_restores_threads():
    seen = []
    before = torch.get_num_threads()
    predict_vs_measure(TOY, [("probe", 1.0, 1.0, lambda: seen.append(torch.get_num_threads()))], threads=1, budget_s=1e-3)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_cases_count_the_roofline_flops_and_bytes():
    g = torch.Generator().manual_seed(0)
    name, flops, nbytes, fn = gemm_case("qkv", 4, 8, 12, generator=g)
    assert name == "qkv" and (flops, nbytes) == gemm_flops_bytes(4, 8, 12, 4)
    assert fn().shape == (4, 12)
    name, flops, nbytes, fn = scale_case("scale", 3, 5, generator=g)
    assert (flops, nbytes) == (15.0, 120.0) and fn().shape == (3, 5)
    quick = default_cases(quick=True)
    assert [c[0] for c in quick] == ["gemm_128", "gemm_256", "gemm_512", "gemm_1024", "gemv_4096x4096", "scale_4096x4096"]
    for _, flops, nbytes, fn in quick:
        assert flops > 0 and nbytes > 0 and callable(fn)
    assert op_time(*quick[-2][1:3], TOY)[1] == "memory"  # the GEMV is memory-bound on any machine


def test_predict_vs_measure_on_this_machine_gives_positive_times():
    rows = predict_vs_measure(TOY, [gemm_case("small", 16, 16, 16)], budget_s=0.01)
    assert rows[0]["measured_s"] > 0 and rows[0]["predicted_s"] > 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: gemm_rate(0), "n=0"),
        (lambda: copy_bandwidth(-5), "n_elems=-5"),
        (lambda: gemm_case("bad", 0, 4, 4), "M=0"),
        (lambda: predict_vs_measure(TOY, [], budget_s=0.0), "budget_s"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
