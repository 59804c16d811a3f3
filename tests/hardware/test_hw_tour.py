"""The hardware step of `minillm tour`: a roofline PNG and a markdown section."""

import pytest

from minillm.hardware.tour import tour_step

pytestmark = pytest.mark.lesson07


def test_tour_step_writes_a_roofline_and_a_table(tmp_path):
    md = tour_step(tmp_path)
    png = tmp_path / "roofline.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert md.startswith("## Hardware") and "roofline.png" in md
    for device in ("this machine", "h100-sxm", "tpu-v5e", "xeon-8480"):
        assert f"| {device} |" in md


def test_benchmark_module_exposes_run():
    bench = pytest.importorskip("benchmarks.bench_hardware")
    assert callable(bench.run) and bench.TARGET == 0.25
