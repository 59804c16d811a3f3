"""this_machine(): a DeviceSpec from microbenchmarks (quick mode only, to keep tests fast)."""

import time

import pytest
import torch

from minillm.hardware import DeviceSpec
from minillm.hardware.measure import (
    best_time,
    copy_bandwidth,
    gemm_rate,
    num_threads,
    this_machine,
    triad_bandwidth,
)
from minillm.hardware.roofline import attainable_flops, op_time, ridge_point

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
    assert best_time(lambda: None, repeats=3) >= 0


def test_num_threads_restores_the_setting():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: gemm_rate(0), "n=0"),
        (lambda: copy_bandwidth(-5), "n_elems=-5"),
        (lambda: best_time(lambda: None, repeats=0), "repeats=0"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
